/**
 * self-group-executable: learned self-groups with overlapping inputs that still run as one
 * `Conv(group = g)` per layer — no Gather — because the layer that produces a conv's input
 * emits the channels each group needs (passes/fold-selection.ts): channels two groups share
 * are computed twice, channels no group reads are not computed. The producer keeps its width
 * and MACs; a grouped layer costs N·w·k² per position, as uniform groups do.
 *
 * Group counts: g_l ∈ {1, 2, 4, …} with g | C_in, g | C_out and C_in/g, C_out/g multiples of
 * the SIMD block S. Doublings are taken greedily by modelled latency saved per MAC saved
 * (passes/lower-cost.ts, the mean of the relative saving at batch 1 and 8), ties to layers
 * whose input can be selected — or, given a measured sensitivity per layer and g, by least
 * sensitivity per MAC saved among the doublings that save latency at batch 8 — until
 * MACs_total − Σ_l MACs_l·(1 − 1/g_l) ≤ keepMacs·MACs_total; the doubling that reaches the
 * target is the smallest (or least harmful) that does.
 *
 * Per layer with g groups (m = C_out/g filters and w = C_in/g inputs per group):
 *   v_i[j]     = Σ_hw |W[i, j, h, w]|  (× mean |x_j| with calibration)
 *   input side  *selected* when the input's channel group is free (fold-selection's site):
 *               group k keeps the w inputs j with the largest centroid value μ_k[j]; groups
 *               may share inputs. Otherwise fixed blocks [k·w, (k+1)·w).
 *   filter side *learned* when the output is selected by the next conv (its rows can move):
 *               balanced k-means (self-group-balanced.ts) when the inputs are selected too,
 *               else filter i joins the block k with the largest Σ_{j ∈ block k} v_i[j]
 *               (greedy, m per block). Otherwise fixed blocks [k·m, (k+1)·m).
 * A producer P with g_P groups lays its output out as g_P blocks of m_P = C/g_P rows, block a
 * holding only its cluster a's filters (repeats allowed). Slot p of the consumer's input is
 * then in P's block ⌊p/m_P⌋ and in the consumer's group ⌊p/w⌋, so group k takes exactly
 * n(a, k) = |[a·m_P, (a+1)·m_P) ∩ [k·w, (k+1)·w)| inputs from P's cluster a: the greedy
 * input choice is capped per (a, k) (it always fills: a cluster with room in block a lacks
 * one of a's m_P ≥ n(a, k) filters).
 *
 * Folding (fold-selection.ts foldDuplications, which lower-grouped also runs): sel[p] = the
 * next input of group ⌊p/w⌋ that lies in P's cluster ⌊p/m_P⌋; every member of the input's
 * channel group is re-indexed by sel, and each grouped layer is masked to the block diagonal
 * it now is. The model computes what the overlapping masked model (`fold: false`, what the
 * sg-exec method fine-tunes) computes, and every grouped layer's connectivity is uniform.
 */
import { analyzeChannels } from '../compiler/analysis/channel-groups.js';
import {
  uniformConnectivity,
  validateConnectivity,
  type Cluster,
  type Connectivity,
} from '../compiler/analysis/connectivity.js';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import { RegroupError } from '../compiler/errors.js';
import { nodeLabels } from '../compiler/ir/label.js';
import type { Model } from '../compiler/ir/model.js';
import type { Node } from '../compiler/ir/node.js';
import { foldDuplications, selectionSite, type SelectionSite } from './fold-selection.js';
import { opCost, type LayerGeometry } from './lower-cost.js';
import { maskLayer } from './self-group.js';
import {
  balanceFilters,
  centroidsOf,
  completeCentroids,
  greedyAssign,
  importanceRows,
  membersOf,
  type BalancedSelfGroupContext,
} from './self-group-balanced.js';
import { clusterFilters } from './self-group-cluster.js';
import { groupableConvs, type GroupableLayer, type GroupedLayerStats } from './uniform-group.js';

export interface ExecutableSelfGroupOptions {
  /** Target fraction of the model's total MACs, in (0, 1]. */
  keepMacs: number;
  /** SIMD block S: group widths and filter counts stay multiples of it (default 8). */
  simdBlock?: number;
  /** k-means seed (default 0); restart r uses seed + r. */
  seed?: number;
  /** k-means runs per layer (default 4). */
  restarts?: number;
  /** Convs with fewer input channels stay dense (default 4). */
  minInputChannels?: number;
  /** Fold the selections (default true); false leaves the overlapping masked reference. */
  fold?: boolean;
  /**
   * Measured harm of grouping each layer alone (nodes of the model handed in → g → e.g. the KL
   * divergence of the output from the dense model's): doublings are then taken by least harm
   * per MAC saved among those the cost model says save latency (see allocateGroups).
   */
  sensitivity?: ReadonlyMap<Node, ReadonlyMap<number, number>>;
  /** Group only this layer (a node of the model handed in), at this count, for sensitivity scans. */
  only?: { readonly node: Node; readonly groups: number };
}

export interface ExecutableLayerStats extends GroupedLayerStats {
  /** How the groups' inputs were chosen, and why not selected when they are blocks. */
  inputs: 'selected' | 'blocks';
  inputRefusal?: string;
  filters: 'clustered' | 'by-block' | 'blocks';
  /** Input slots that repeat a channel another group reads too (= channels no group reads). */
  shared: number;
}

export interface ExecutableSelfGroupResult {
  /** The masked copy; connectivity and stats name its nodes. */
  model: Model;
  connectivity: Map<Node, Connectivity>;
  stats: {
    macsBefore: number;
    macsAfter: number;
    macsRatio: number;
    targetMet: boolean;
    layers: ExecutableLayerStats[];
  };
  /** Input model's node → the copy's. */
  nodes: ReadonlyMap<Node, Node>;
}

/** A groupable conv with what the clustering needs to know about its neighbours. */
interface Layer extends GroupableLayer {
  readonly label: string;
  readonly site: SelectionSite | string;
  readonly geometry: LayerGeometry;
  /** The next layer selects this layer's output channels (its rows can move). */
  outputLearned: boolean;
  clusters?: Cluster[];
}

/** Executable self-group a copy of `model` to about `keepMacs` of its MACs; the input is not changed. */
export function executableSelfGroup(
  model: Model,
  options: ExecutableSelfGroupOptions,
  ctx: BalancedSelfGroupContext = {},
): ExecutableSelfGroupResult {
  if (!(options.keepMacs > 0 && options.keepMacs <= 1))
    throw new RegroupError('usage', `keepMacs must lie in (0, 1], got ${options.keepMacs}`);
  const { model: copy, nodes, values } = model.clone();
  const shapes = inferShapes(copy);
  const cost = computeCost(copy, shapes);
  const analysis = analyzeChannels(copy, shapes);
  const labels = nodeLabels(copy.graph);
  const layers = groupableConvs(cost.layers, options.minInputChannels ?? 4).map(
    (l): Layer => ({
      ...l,
      label: labels.get(l.node) ?? l.node.name,
      site: selectionSite(analysis, l.node),
      geometry: geometryOf(l),
      outputLearned: false,
    }),
  );
  const byNode = new Map(layers.map((l) => [l.node, l]));
  for (const l of layers) if (typeof l.site !== 'string') markProducer(byNode, l.site);
  const budget = options.keepMacs * cost.totals.macs;
  const sensitivity =
    options.sensitivity && new Map([...options.sensitivity].map(([node, byGroups]) => [nodes.get(node)!, byGroups]));
  const total = options.only
    ? groupOnly(layers, nodes.get(options.only.node), options.only.groups, cost.totals.macs)
    : allocateGroups(layers, cost.totals.macs, budget, options.simdBlock ?? 8, sensitivity);
  const scales =
    ctx.channelMeanAbs &&
    new Map([...ctx.channelMeanAbs].map(([value, scale]) => [values.get(value) ?? value, scale] as const));
  const order = new Map(copy.graph.nodeList().map((n, i) => [n, i]));
  layers.sort((a, b) => order.get(a.node)! - order.get(b.node)!);
  for (const layer of layers) clusterLayer(layer, byNode, importanceRows(layer, layer.label, scales), options);
  const connectivity = new Map<Node, Connectivity>();
  for (const layer of layers.filter((l) => l.groups > 1)) {
    const conn = { outChannels: layer.outChannels, inChannels: layer.inChannels, clusters: layer.clusters! };
    validateConnectivity(conn, layer.label);
    maskLayer(layer.node, conn);
    connectivity.set(layer.node, conn);
  }
  if (options.fold ?? true) foldAll(copy, analysis, layers, connectivity);
  return {
    model: copy,
    connectivity,
    stats: {
      macsBefore: cost.totals.macs,
      macsAfter: total,
      macsRatio: cost.totals.macs > 0 ? total / cost.totals.macs : 1,
      targetMet: total <= budget * (1 + 1e-9),
      layers: layers.map(layerStats),
    },
    nodes,
  };
}

function geometryOf(layer: GroupableLayer): LayerGeometry {
  const weight = layer.node.input(1).constValue!;
  const kernelArea = weight.size / (layer.outChannels * layer.inChannels);
  const positions = layer.macs / (layer.outChannels * layer.inChannels * kernelArea);
  return { kernelArea, inputPositions: positions, outputPositions: positions };
}

/** The producer of a selectable input may lay its filters out freely (when it is a groupable layer). */
function markProducer(byNode: ReadonlyMap<Node, Layer>, site: SelectionSite): void {
  const producer = byNode.get(site.producer);
  if (producer) producer.outputLearned = true;
}

// ---------------------------------------------------------------------------------------------
// Group counts

/** Set one layer's group count (the others stay dense); the MACs left. */
function groupOnly(layers: Layer[], node: Node | undefined, groups: number, total: number): number {
  const layer = layers.find((l) => l.node === node);
  if (!layer || layer.outChannels % groups !== 0 || layer.inChannels % groups !== 0)
    throw new RegroupError('usage', `only: ${node} is not a groupable conv whose channels ${groups} divides`);
  layer.groups = groups;
  return total - layer.macs * (1 - 1 / groups);
}

/** The group counts each groupable conv of `model` may take (powers of two above 1 keeping S-multiples). */
export function executableGroupCounts(model: Model, options: { simdBlock?: number; minInputChannels?: number } = {}) {
  const cost = computeCost(model, inferShapes(model));
  const simdBlock = options.simdBlock ?? 8;
  const counts = new Map<Node, number[]>();
  for (const l of groupableConvs(cost.layers, options.minInputChannels ?? 4)) {
    const list: number[] = [];
    for (let g = 2; fits(l, g, simdBlock); g *= 2) list.push(g);
    if (list.length > 0) counts.set(l.node, list);
  }
  return counts;
}

/** g divides both channel counts and leaves multiples of the SIMD block per group. */
function fits(layer: GroupableLayer, groups: number, simdBlock: number): boolean {
  const [m, w] = [layer.outChannels / groups, layer.inChannels / groups];
  return Number.isInteger(m) && Number.isInteger(w) && m % simdBlock === 0 && w % simdBlock === 0;
}

/** Modelled latency (MAC-equivalents) of a layer with g uniform groups at a batch size. */
function layerCost(layer: Layer, groups: number, batch: number, simdBlock: number): number {
  const group = { filters: layer.outChannels / groups, width: layer.inChannels / groups };
  const op = { kind: 'conv' as const, groups: Array.from({ length: groups }, () => group) };
  return opCost(op, layer.geometry, { simdBlock, batch });
}

/**
 * Double group counts until total ≤ budget (see the file header); returns the MACs left.
 * Without sensitivity: by modelled latency saved per MAC saved (the mean of the relative
 * savings at batch 1 and 8). With it: doublings that save modelled latency at batch 8 first,
 * among them the least harm per MAC saved (harm of g = the measured sensitivity of the layer
 * grouped alone at g, 0 at g = 1).
 */
function allocateGroups(
  layers: Layer[],
  total: number,
  budget: number,
  simdBlock: number,
  sensitivity?: ReadonlyMap<Node, ReadonlyMap<number, number>>,
): number {
  const denseAt = (batch: number) => layers.reduce((sum, l) => sum + layerCost(l, 1, batch, simdBlock), 0);
  const [dense1, dense8] = [denseAt(1), denseAt(8)];
  const saving = (l: Layer) => l.macs / l.groups / 2;
  const doubles = (l: Layer) => fits(l, l.groups * 2, simdBlock);
  const harmAt = (l: Layer, g: number) => (g === 1 ? 0 : (sensitivity?.get(l.node)?.get(g) ?? Infinity));
  const harm = (l: Layer) => harmAt(l, l.groups * 2) - harmAt(l, l.groups);
  const at = (l: Layer, batch: number) =>
    layerCost(l, l.groups, batch, simdBlock) - layerCost(l, l.groups * 2, batch, simdBlock);
  const score = (l: Layer) => (at(l, 1) / dense1 + at(l, 8) / dense8) / 2 / saving(l);
  // With sensitivity a doubling "pays" when it saves modelled latency at batch 8 (where group
  // overheads are amortised); without, when it saves on average over batch 1 and 8.
  const pays = (l: Layer) => (sensitivity ? at(l, 8) > 0 : score(l) > 0);
  const selectable = (l: Layer) => Number(typeof l.site !== 'string');
  const better = sensitivity
    ? (a: Layer, b: Layer) => Number(pays(b)) - Number(pays(a)) || harm(a) / saving(a) - harm(b) / saving(b)
    : (a: Layer, b: Layer) => score(b) - score(a) || selectable(b) - selectable(a);
  while (total > budget) {
    const open = layers.filter(doubles);
    if (open.length === 0) break;
    // Finish with the smallest doubling that reaches the budget, among those that pay when any does.
    const reaching = open.filter((l) => total - saving(l) <= budget);
    const paying = reaching.filter(pays);
    const least = (a: Layer, b: Layer) => (sensitivity ? harm(b) < harm(a) : saving(b) < saving(a));
    const pick =
      reaching.length > 0
        ? (paying.length > 0 ? paying : reaching).reduce((a, b) => (least(a, b) ? b : a))
        : open.reduce((a, b) => (better(a, b) > 0 ? b : a));
    total -= saving(pick);
    pick.groups *= 2;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Clusters

/** Choose the layer's filter clusters and input sets (producers are clustered first: model order). */
function clusterLayer(
  layer: Layer,
  byNode: ReadonlyMap<Node, Layer>,
  vectors: number[][],
  options: ExecutableSelfGroupOptions,
): void {
  const g = layer.groups;
  const site = typeof layer.site === 'string' ? undefined : layer.site;
  const producerBlocks = site ? blocksOf(site, byNode.get(site.producer)) : undefined;
  if (g === 1 && !(producerBlocks && producerBlocks.length > 1)) return;
  const labels = filterLabels(layer, vectors, site !== undefined, options);
  const centroids = centroidsOf(vectors, labels, g);
  const w = layer.inChannels / g;
  const inputs = producerBlocks
    ? selectInputs(centroids, w, producerBlocks)
    : centroids.map((_, k) => range(k * w, (k + 1) * w));
  layer.clusters = inputs.map((set, k) => ({ filters: membersOf(labels, k), inputs: set }));
}

/** Cluster label of every filter (see the file header's filter side). */
function filterLabels(
  layer: Layer,
  vectors: number[][],
  inputSelected: boolean,
  options: ExecutableSelfGroupOptions,
): Int32Array {
  const g = layer.groups;
  const m = layer.outChannels / g;
  if (g === 1 || !layer.outputLearned) return Int32Array.from(vectors, (_, i) => Math.floor(i / m));
  if (inputSelected) {
    const found = clusterFilters(vectors, g, { seed: options.seed ?? 0, restarts: options.restarts ?? 4 });
    return balanceFilters(vectors, completeCentroids(vectors, found.centroids, g), m);
  }
  const w = layer.inChannels / g;
  const pairs = vectors.flatMap((v, filter) =>
    Array.from({ length: g }, (_, block) => ({
      item: filter,
      cluster: block,
      key: sum(v, block * w, (block + 1) * w),
    })),
  );
  return greedyAssign(pairs, vectors.length, g, m, -1);
}

/**
 * The producer's blocks as positions of the consumer's input: block a holds the positions of
 * the producer's cluster a (one block of every position when the producer is not grouped).
 */
function blocksOf(site: SelectionSite, producer: Layer | undefined): Int32Array[] {
  const width = site.producerChannel.length;
  if (!producer?.clusters || producer.groups === 1) return [range(0, width)];
  // selectionSite refuses producers whose channels reach the consumer reordered: filter f sits at position f.
  return producer.clusters.map((c) => c.filters);
}

/**
 * Group k's w inputs: (j, k) pairs by μ_k[j] descending (ties by j, then k), taken while group
 * k has room and room in j's producer block (n(a, k) slots, see the file header).
 */
function selectInputs(centroids: readonly Float64Array[], w: number, blocks: readonly Int32Array[]): Int32Array[] {
  const g = centroids.length;
  const blockSize = blocks[0]!.length;
  const blockOf = new Int32Array(blocks.length * blockSize);
  blocks.forEach((members, a) => members.forEach((j) => (blockOf[j] = a)));
  const room = blocks.map((_, a) => Array.from({ length: g }, (_, k) => overlap(a * blockSize, blockSize, k * w, w)));
  const pairs = centroids.flatMap((mu, k) => Array.from(mu, (value, j) => ({ j, k, value })));
  pairs.sort((x, y) => y.value - x.value || x.j - y.j || x.k - y.k);
  const chosen = centroids.map(() => [] as number[]);
  for (const { j, k } of pairs) {
    const a = blockOf[j]!;
    if (chosen[k]!.length === w || room[a]![k] === 0) continue;
    chosen[k]!.push(j);
    room[a]![k]!--;
  }
  return chosen.map((set) => Int32Array.from(set).sort());
}

/** |[a, a + n) ∩ [b, b + m)|. */
function overlap(a: number, n: number, b: number, m: number): number {
  return Math.max(0, Math.min(a + n, b + m) - Math.max(a, b));
}

// ---------------------------------------------------------------------------------------------
// Folding

/**
 * Fold every layer's selection into its producer (fold-selection.ts foldDuplications; dense
 * consumers of grouped producers take part, their selection being a permutation), then mask
 * each grouped layer to the block diagonal it now is.
 */
function foldAll(
  model: Model,
  analysis: ReturnType<typeof analyzeChannels>,
  layers: readonly Layer[],
  connectivity: Map<Node, Connectivity>,
): void {
  const table = new Map(connectivity);
  for (const l of layers)
    if (l.groups === 1 && l.clusters)
      table.set(l.node, { outChannels: l.outChannels, inChannels: l.inChannels, clusters: l.clusters });
  const folds = foldDuplications(model, analysis, table);
  for (const layer of layers.filter((l) => l.groups > 1)) {
    const conn = folds.connectivity.get(layer.node)!;
    const uniform = uniformConnectivity(layer.outChannels, layer.inChannels, layer.groups);
    if (!sameClusters(conn, uniform))
      throw new RegroupError(
        'invalid-ir',
        `internal: '${layer.label}' is not block diagonal after folding (${folds.refusals.get(layer.node) ?? 'its producer did not fold'})`,
      );
    maskLayer(layer.node, uniform);
    connectivity.set(layer.node, uniform);
  }
}

function layerStats(layer: Layer): ExecutableLayerStats {
  const selected = typeof layer.site !== 'string';
  const read = new Set(layer.clusters?.flatMap((c) => [...c.inputs]) ?? []);
  return {
    node: layer.node,
    label: layer.label,
    groups: layer.groups,
    macsBefore: layer.macs,
    macsAfter: layer.macs / layer.groups,
    inputs: selected && layer.groups > 1 ? 'selected' : 'blocks',
    ...(typeof layer.site === 'string' ? { inputRefusal: layer.site } : {}),
    filters: layer.groups === 1 || !layer.outputLearned ? 'blocks' : selected ? 'clustered' : 'by-block',
    shared: layer.clusters && selected ? layer.inChannels - read.size : 0,
  };
}

function sameClusters(a: Connectivity, b: Connectivity): boolean {
  const same = (x: Int32Array, y: Int32Array) => x.length === y.length && x.every((v, i) => v === y[i]);
  return (
    a.clusters.length === b.clusters.length &&
    a.clusters.every((c, k) => same(c.filters, b.clusters[k]!.filters) && same(c.inputs, b.clusters[k]!.inputs))
  );
}

const range = (from: number, to: number) => Int32Array.from({ length: to - from }, (_, i) => from + i);

function sum(v: readonly number[], from: number, to: number): number {
  let total = 0;
  for (let j = from; j < to; j++) total += v[j]!;
  return total;
}
