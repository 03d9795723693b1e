/**
 * A grouped layer's connectivity in the report, and its picture.
 *
 * Encoding (schema.ts `ReportConnectivity`): per cluster its filter indices and its input
 * subset as a hex bitmask, character k holding inputs 4k..4k+3 (input 4k+b in bit b). The
 * size is filters + clusters·inputs/4 characters, never filters × inputs.
 *
 * Picture: rows are filters in cluster order (so a cluster's filters, which all read the same
 * inputs, form one band), columns are input channels in index order. A cell is filled when a
 * filter of its rows reads an input of its columns:
 *
 *   cell[R, C] = OR over filters f in rows R·rb..(R+1)·rb−1 and inputs j in C·cb..(C+1)·cb−1 of mask[f, j]
 *
 * with rb = ⌈filters / maxCells⌉ and cb = ⌈inputs / maxCells⌉ (1 for layers up to maxCells),
 * so a picture has at most maxCells × maxCells cells. The SVG draws the filled cells as
 * horizontal strokes (runs of filled cells, merged over identical consecutive rows), with no
 * external assets.
 */
import type { Connectivity } from '../../compiler/analysis/connectivity.js';
import type { ReportCluster, ReportConnectivity } from './schema.js';

/** The report's encoding of a layer's connectivity. */
export function encodeConnectivity(conn: Connectivity): ReportConnectivity {
  return {
    filters: conn.outChannels,
    inputs: conn.inChannels,
    clusters: conn.clusters.map((c) => ({ filters: [...c.filters], inputs: inputMaskHex(c.inputs, conn.inChannels) })),
  };
}

/** Input indices → the little-endian hex bitmask of `inputs` bits. */
export function inputMaskHex(indices: Iterable<number>, inputs: number): string {
  const nibbles = new Uint8Array(Math.ceil(inputs / 4));
  for (const j of indices) nibbles[j >> 2]! |= 1 << (j & 3);
  return Array.from(nibbles, (n) => n.toString(16)).join('');
}

/** The input indices a cluster reads, ascending (the inverse of inputMaskHex). */
export function clusterInputs(cluster: ReportCluster): number[] {
  const indices: number[] = [];
  for (let k = 0; k < cluster.inputs.length; k++) {
    const nibble = parseInt(cluster.inputs[k]!, 16);
    for (let bit = 0; bit < 4; bit++) if (nibble & (1 << bit)) indices.push(4 * k + bit);
  }
  return indices;
}

/** Fraction of (filter, input) pairs connected: the layer's MACs over its dense MACs. */
export function connectedFraction(conn: ReportConnectivity): number {
  const pairs = conn.clusters.reduce((sum, c) => sum + c.filters.length * clusterInputs(c).length, 0);
  return conn.filters * conn.inputs > 0 ? pairs / (conn.filters * conn.inputs) : 0;
}

/** A downsampled picture: `filled[row · cols + col]` is 1 where the cell is filled. */
export interface ConnectivityCells {
  rows: number;
  cols: number;
  /** Filters per row and inputs per column (1 when not downsampled). */
  filtersPerRow: number;
  inputsPerCol: number;
  filled: Uint8Array;
}

/** The picture's cells: filters in cluster order, blocks OR-ed down to at most maxCells × maxCells. */
export function connectivityCells(conn: ReportConnectivity, maxCells = 128): ConnectivityCells {
  const filtersPerRow = Math.max(1, Math.ceil(conn.filters / maxCells));
  const inputsPerCol = Math.max(1, Math.ceil(conn.inputs / maxCells));
  const rows = Math.ceil(conn.filters / filtersPerRow);
  const cols = Math.ceil(conn.inputs / inputsPerCol);
  const filled = new Uint8Array(rows * cols);
  let position = 0; // the filter's row before downsampling, in cluster order
  for (const cluster of conn.clusters) {
    const columns = [...new Set(clusterInputs(cluster).map((j) => Math.floor(j / inputsPerCol)))];
    for (let k = 0; k < cluster.filters.length; k++, position++) {
      const row = Math.floor(position / filtersPerRow);
      for (const col of columns) filled[row * cols + col] = 1;
    }
  }
  return { rows, cols, filtersPerRow, inputsPerCol, filled };
}

/** Longest side of a picture on the page, in CSS pixels. */
const PICTURE_PX = 160;

/**
 * An inline SVG of a layer's picture (connectivityCells); `title` (plain text, escaped by the
 * caller's `escapeText`) becomes its accessible name.
 */
export function connectivitySvg(cells: ConnectivityCells, title: string, escapeText: (text: string) => string): string {
  const scale = PICTURE_PX / Math.max(cells.rows, cells.cols, 1);
  const [width, height] = [cells.cols, cells.rows].map((n) => Math.max(1, Math.round(n * scale)));
  return [
    `<svg class="connectivity" viewBox="0 0 ${cells.cols} ${cells.rows}" width="${width}" height="${height}"`,
    ` preserveAspectRatio="none" shape-rendering="crispEdges" role="img" aria-label="${escapeText(title)}">`,
    `<title>${escapeText(title)}</title>`,
    `<rect class="conn-empty" width="${cells.cols}" height="${cells.rows}"/>`,
    ...filledPaths(cells),
    '</svg>',
  ].join('');
}

/**
 * The filled cells as horizontal strokes, one path per band height: a band is a run of
 * identical consecutive rows, and each run of filled cells in it one stroke `h{length}` as
 * wide as the band, centred on it (butt caps, so the stroke covers exactly the cells). Moves
 * between runs are relative, which keeps a picture of 128 × 128 cells to a few kilobytes.
 */
function filledPaths(cells: ConnectivityCells): string[] {
  const byHeight = new Map<number, string[]>();
  for (const band of bands(cells)) {
    const parts = byHeight.get(band.height) ?? [];
    let x = 0;
    band.runs.forEach(([start, length], k) => {
      parts.push(k === 0 ? `M${start} ${band.top + band.height / 2}` : `m${start - x} 0`, `h${length}`);
      x = start + length;
    });
    byHeight.set(band.height, parts);
  }
  return [...byHeight].map(
    ([height, parts]) => `<path class="conn-filled" stroke-width="${height}" d="${parts.join('')}"/>`,
  );
}

/** Runs of identical consecutive rows with their runs of filled cells ([first column, length]). */
function bands({ rows, cols, filled }: ConnectivityCells): { top: number; height: number; runs: [number, number][] }[] {
  const result: { top: number; height: number; runs: [number, number][] }[] = [];
  const rowOf = (row: number) => filled.subarray(row * cols, (row + 1) * cols);
  for (let top = 0; top < rows; ) {
    const pattern = rowOf(top);
    let bottom = top + 1;
    while (bottom < rows && rowOf(bottom).every((v, col) => v === pattern[col])) bottom++;
    const runs: [number, number][] = [];
    for (let col = 0; col < cols; col++) {
      if (!pattern[col]) continue;
      const start = col;
      while (col + 1 < cols && pattern[col + 1]) col++;
      runs.push([start, col + 1 - start]);
    }
    if (runs.length > 0) result.push({ top, height: bottom - top, runs });
    top = bottom;
  }
  return result;
}
