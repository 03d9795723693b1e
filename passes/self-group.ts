/**
 * self-group: SG-CNN self-grouping (Guo et al., Neural Networks 2020).
 *
 * For every groupable layer (Conv, and Gemm with a constant weight when `includeFc`):
 *   v_i[j]  = Σ_hw |W[i, j, h, w]|                      importance vector of filter i,
 *             (× mean |x_j| over calibration data       when the context carries it),
 *   k-means over {v_i} into g clusters                  (k-means++ seeding, Lloyd iterations
 *                                                       as ml-kmeans's, `restarts` seeded
 *                                                       runs, the lowest inertia kept),
 *   τ       = percentile_cp(all centroid values of the layer)   (linear interpolation),
 *   I_c     = { j : centroid_c[j] > τ }                 (its largest entry when empty),
 * and every filter of cluster c reads only I_c: W[i, j] = 0 for j ∉ I_c (exact zeros).
 *
 * cp comes from the options — one value, or one per layer (a sensitivity allocation computed
 * by the caller from planSelfGroup's clusterings, see passes/allocate-cp.ts) — or from a MACs
 * target: one global cp for every layer, found by bisection so that
 *   MACs_total − Σ_layers (MACs_dense,l − MACs_connectivity,l) ≤ keepMacs · MACs_total
 * with the most MACs that fit (MACs fall monotonically with cp; each layer's τ is its own
 * percentile, so layers shrink alike). Layers that cannot be grouped stay dense
 * and are listed with the reason: depthwise convs, convs with fewer than `minInputChannels`
 * inputs (RGB or 1-channel stems), weights that are not initializers or are shared, and
 * layers whose output shape is unknown. A grouped (ResNeXt) conv is written out densely
 * (group = 1, zeros outside its blocks) and then regrouped.
 *
 * Output: the model with masked weights plus the connectivity side table (Node →
 * Connectivity, keyed by the returned model's nodes) for the lowering. Every per-layer table
 * (options, calibration, results) is keyed by Node or Value, never by name: exporters write
 * empty and repeated node names; results carry a display label (compiler/ir/label.ts). Deterministic given the seed. Not idempotent: a second
 * run regroups the masked weights (SG-CNN raises cp step by step this way).
 */
import {
  connectivityMacs,
  expandGroupedWeight,
  importanceVectors,
  maskWeight,
  validateConnectivity,
  type Connectivity,
} from '../compiler/analysis/connectivity.js';
import { computeCost, type LayerCost } from '../compiler/analysis/cost.js';
import { inferShapes, type InferShapesOptions } from '../compiler/analysis/shape-inference.js';
import { RegroupError } from '../compiler/errors.js';
import { attr } from '../compiler/ir/attribute.js';
import type { CloneMap } from '../compiler/ir/clone.js';
import { nodeLabel, nodeLabels } from '../compiler/ir/label.js';
import type { Model } from '../compiler/ir/model.js';
import type { Node, Value } from '../compiler/ir/node.js';
import { weightAxes } from '../compiler/ir/op-roles.js';
import type { Tensor } from '../compiler/ir/tensor.js';
import type { Pass, PassContext } from './pass.js';
import {
  clusterFilters,
  pairsAt,
  sortCentroids,
  thresholdClusters,
  type Clustering,
  type SortedCentroids,
} from './self-group-cluster.js';

export interface SelfGroupOptions {
  /** Clusters per layer (default 64), or per node (others get `default`). Capped at the filter count. */
  groups?: number | { default?: number; layers: ReadonlyMap<Node, number> };
  /** Target fraction of the model's total MACs (cost model); solved with one global cp. */
  keepMacs?: number;
  /**
   * Explicit percentile in [0, 100] (used when keepMacs is absent; default 50), or one per
   * node (others get `default`) — e.g. the per-layer cps of a sensitivity allocation.
   */
  cp?: number | { default?: number; layers: ReadonlyMap<Node, number> };
  /** k-means seed (default 0); restart r uses seed + r. */
  seed?: number;
  /** k-means runs per layer (default 4); the lowest inertia wins. */
  restarts?: number;
  /** Group Gemm layers with a constant weight as well (default false). */
  includeFc?: boolean;
  /** Convs with fewer input channels stay dense (default 4: RGB and grayscale stems). */
  minInputChannels?: number;
  /** 'auto' (default): scale by calibration where the context has it; 'data': require it; 'weight': never. */
  importance?: 'auto' | 'data' | 'weight';
  /** Only these nodes (default: every groupable layer). */
  layers?: readonly Node[];
  /** Input shapes for shape inference (when the model's are symbolic beyond the batch). */
  inputShapes?: InferShapesOptions['inputShapes'];
}

/**
 * What the self-group pass reads from and writes to its context. Nodes and values (in the
 * options too) are those of the model handed to selfGroup / planSelfGroup / the pass.
 */
export interface SelfGroupContext extends PassContext {
  /** Mean |activation| per channel of a layer's input value, from calibration. */
  channelMeanAbs?: ReadonlyMap<Value, Float64Array>;
  /** Filled by the pass: node → connectivity. */
  connectivity?: Map<Node, Connectivity>;
}

/** A layer left dense, and why. */
export interface SkippedLayer {
  node: Node;
  /** Display label (compiler/ir/label.ts). */
  label: string;
  reason: string;
}

export interface LayerGrouping {
  node: Node;
  /** Display label (compiler/ir/label.ts). */
  label: string;
  op: 'Conv' | 'Gemm';
  clusters: number;
  /** Filters per cluster, in cluster order. */
  clusterFilters: number[];
  /** Inputs kept per cluster, in cluster order. */
  clusterInputs: number[];
  /** The layer's centroid percentile. */
  cp: number;
  tau: number;
  inertia: number;
  macsBefore: number;
  macsAfter: number;
  importance: 'weight' | 'data';
}

export interface SelfGroupStats {
  /** The global cp, or the dense-MACs-weighted mean of per-layer cps. */
  cp: number;
  /** Whether every layer shares one cp or each has its own. */
  perLayer: boolean;
  target: number | undefined;
  /** False when even cp = 100 leaves more MACs than the target. */
  targetMet: boolean;
  macsBefore: number;
  macsAfter: number;
  macsRatio: number;
  layers: LayerGrouping[];
  skipped: SkippedLayer[];
}

export interface SelfGroupResult {
  /** The grouped copy; connectivity and stats name its nodes. */
  model: Model;
  connectivity: Map<Node, Connectivity>;
  stats: SelfGroupStats;
  /** Input model's node → the copy's. */
  nodes: ReadonlyMap<Node, Node>;
}

/** A layer that will be grouped. */
interface Candidate {
  readonly node: Node;
  readonly label: string;
  readonly op: 'Conv' | 'Gemm';
  /** Dense weight as [Cout, Cin, …] (grouped convs expanded, Gemm rows = outputs). */
  readonly weight: Tensor;
  readonly kernelArea: number;
  readonly positions: number;
  readonly denseMacs: number;
}

const DEFAULT_GROUPS = 64;
const DEFAULT_CP = 50;
const BISECTION_STEPS = 50;

/** Self-group a copy of `model`; the input model is not changed. */
export function selfGroup(
  model: Model,
  options: SelfGroupOptions = {},
  ctx: Omit<SelfGroupContext, 'connectivity'> = {},
): SelfGroupResult {
  const { model: copy, ...map } = model.clone();
  const connectivity = new Map<Node, Connectivity>();
  const stats = selfGroupInPlace(copy, onCopy(options, map), {
    ...ctx,
    ...(ctx.channelMeanAbs ? { channelMeanAbs: mapKeys(ctx.channelMeanAbs, map.values) } : {}),
    connectivity,
  });
  return { model: copy, connectivity, stats, nodes: map.nodes };
}

/** The options with their node keys moved to the copy's nodes. */
function onCopy(options: SelfGroupOptions, map: CloneMap): SelfGroupOptions {
  const perLayer = <T extends { layers: ReadonlyMap<Node, number> }>(o: T): T => ({
    ...o,
    layers: mapKeys(o.layers, map.nodes),
  });
  return {
    ...options,
    ...(typeof options.groups === 'object' ? { groups: perLayer(options.groups) } : {}),
    ...(typeof options.cp === 'object' ? { cp: perLayer(options.cp) } : {}),
    ...(options.layers ? { layers: options.layers.map((n) => translated(n, map.nodes)) } : {}),
  };
}

/** A table keyed by the original's nodes or values, keyed by the copy's. */
function mapKeys<K extends Node | Value, T>(table: ReadonlyMap<K, T>, map: ReadonlyMap<K, K>): Map<K, T> {
  return new Map([...table].map(([key, value]) => [translated(key, map), value]));
}

function translated<K extends Node | Value>(key: K, map: ReadonlyMap<K, K>): K {
  const copy = map.get(key);
  if (!copy)
    throw new RegroupError(
      'usage',
      `'${key.name}' is not part of the model being self-grouped; pass nodes and values of that model`,
    );
  return copy;
}

/** The pass form (in place); the connectivity table goes to `ctx.connectivity`. */
export function selfGroupPass(options: SelfGroupOptions = {}): Pass {
  return {
    name: 'self-group',
    run(model, ctx) {
      const stats = selfGroupInPlace(model, options, ctx as SelfGroupContext);
      return {
        changed: stats.layers.length > 0,
        stats: {
          layersGrouped: stats.layers.length,
          layersSkipped: stats.skipped.length,
          macsRatio: stats.macsRatio,
          cp: stats.cp,
        },
      };
    },
  };
}

/** Self-group `model` in place; fills ctx.connectivity (created when absent). */
export function selfGroupInPlace(model: Model, options: SelfGroupOptions, ctx: SelfGroupContext): SelfGroupStats {
  const table = (ctx.connectivity ??= new Map());
  const plan = planLayers(model, options, ctx);
  const { candidates, clusterings, macsBefore } = plan;
  const { cps, cp: globalCp, targetMet } = chooseCps(plan, options);
  const layers = candidates.map((candidate, i) => {
    const { connectivity, tau } = thresholdClusters(
      clusterings[i]!,
      cps[i]!,
      candidate.weight.dims[0]!,
      candidate.weight.dims[1]!,
    );
    validateConnectivity(connectivity, candidate.label);
    applyConnectivity(candidate, connectivity);
    table.set(candidate.node, connectivity);
    return layerStats(candidate, clusterings[i]!, connectivity, cps[i]!, tau, usesCalibration(candidate, options, ctx));
  });
  const macsAfter = macsBefore - layers.reduce((sum, l) => sum + l.macsBefore - l.macsAfter, 0);
  const weight = layers.reduce((sum, l) => sum + l.macsBefore, 0);
  const cp = globalCp ?? layers.reduce((sum, l) => sum + l.cp * l.macsBefore, 0) / (weight || 1);
  return {
    cp,
    perLayer: globalCp === undefined,
    target: options.keepMacs,
    targetMet,
    macsBefore,
    macsAfter,
    macsRatio: macsBefore > 0 ? macsAfter / macsBefore : 1,
    layers,
    skipped: plan.skipped,
  };
}

/** The groupable layers of a model, clustered, with the cost of every threshold (see planSelfGroup). */
interface LayerPlanning {
  candidates: Candidate[];
  clusterings: Clustering[];
  /** Sorted centroid values per candidate (for fast thresholding). */
  sorted: SortedCentroids[];
  skipped: SkippedLayer[];
  macsBefore: number;
}

function planLayers(model: Model, options: SelfGroupOptions, ctx: SelfGroupContext): LayerPlanning {
  const cost = computeCost(model, inferShapes(model, { inputShapes: options.inputShapes }));
  const { candidates, skipped } = findCandidates(model, cost.layers, options);
  for (const s of skipped) ctx.log?.(`self-group: '${s.label}' stays dense: ${s.reason}`);
  const clusterings = candidates.map((c) => clusterLayer(c, options, ctx));
  const sorted = candidates.map((c, i) => sortCentroids(clusterings[i]!.centroids, c.weight.dims[1]!));
  return { candidates, clusterings, sorted, skipped, macsBefore: cost.totals.macs };
}

/** One groupable layer of a plan: its dense cost and what each cp would make of it. */
export interface SelfGroupLayerPlan {
  readonly node: Node;
  readonly label: string;
  readonly denseMacs: number;
  connectivityAt(cp: number): Connectivity;
  macsAt(cp: number): number;
}

export interface SelfGroupPlan {
  /** The whole model's MACs (grouped layers and the rest). */
  readonly macsBefore: number;
  readonly layers: readonly SelfGroupLayerPlan[];
  readonly skipped: readonly SkippedLayer[];
}

/**
 * Cluster every groupable layer of `model` without masking anything, so that a caller can
 * choose a cp per layer (e.g. from measured sensitivity) and pass it back as `cp: { layers }`.
 * The clustering is the one selfGroup computes with the same options and seed; the plan's
 * nodes are those of `model` (which is not changed), as selfGroup's options expect them.
 */
export function planSelfGroup(
  model: Model,
  options: SelfGroupOptions = {},
  ctx: Omit<SelfGroupContext, 'connectivity'> = {},
): SelfGroupPlan {
  const plan = planLayers(model, options, ctx);
  const layers = plan.candidates.map((c, i): SelfGroupLayerPlan => {
    const [outChannels, inChannels] = c.weight.dims as [number, number];
    const connectivityAt = (cp: number) =>
      thresholdClusters(plan.clusterings[i]!, cp, outChannels, inChannels, plan.sorted[i]).connectivity;
    return {
      node: c.node,
      label: c.label,
      denseMacs: c.denseMacs,
      connectivityAt,
      macsAt: (cp) => layerMacsAt(plan, i, cp),
    };
  });
  return { macsBefore: plan.macsBefore, layers, skipped: plan.skipped };
}

// ---------------------------------------------------------------------------------------------
// Which layers

function findCandidates(
  model: Model,
  layers: readonly LayerCost[],
  options: SelfGroupOptions,
): { candidates: Candidate[]; skipped: SkippedLayer[] } {
  const candidates: Candidate[] = [];
  const skipped: SkippedLayer[] = [];
  const labels = nodeLabels(model.graph);
  const only = options.layers && new Set(options.layers);
  for (const { node, macs } of layers) {
    if (node.domain !== '' || !(node.opType === 'Conv' || (node.opType === 'Gemm' && options.includeFc))) continue;
    if (only && !only.has(node)) continue;
    const label = labels.get(node) ?? node.name;
    const found = node.opType === 'Conv' ? convCandidate(node, label, macs, options) : gemmCandidate(node, label, macs);
    if (typeof found === 'string') skipped.push({ node, label, reason: found });
    else candidates.push(found);
  }
  return { candidates, skipped };
}

/** Why the layer's weight cannot be rewritten in place, or undefined. */
function weightRefusal(node: Node): string | undefined {
  const w = node.inputs[1];
  if (!w?.isInitializer()) return `weight '${w?.name ?? ''}' is not an initializer (run the PREPARE passes first)`;
  if (w.useCount > 1) return `weight '${w.name}' is shared with ${w.useCount - 1} other use(s)`;
  if (w.isGraphOutput()) return `weight '${w.name}' is a graph output`;
  return undefined;
}

function convCandidate(node: Node, label: string, macs: number, options: SelfGroupOptions): Candidate | string {
  const refusal = weightRefusal(node);
  if (refusal) return refusal;
  const raw = node.input(1).constValue!;
  const group = node.getInt('group', 1);
  const [outChannels, inPerGroup, ...kernel] = raw.dims as [number, number, ...number[]];
  if (group > 1 && inPerGroup === 1) return 'depthwise conv (one input channel per group)';
  if (inPerGroup * group < (options.minInputChannels ?? 4))
    return `too few input channels to group (${inPerGroup * group} < minInputChannels ${options.minInputChannels ?? 4})`;
  const kernelArea = kernel.reduce((a, b) => a * b, 1);
  if (!(macs > 0)) return 'output shape unknown (pass inputShapes)';
  return {
    node,
    label,
    op: 'Conv',
    weight: expandGroupedWeight(raw, group),
    kernelArea,
    positions: macs / (outChannels * inPerGroup * kernelArea),
    denseMacs: macs,
  };
}

function gemmCandidate(node: Node, label: string, macs: number): Candidate | string {
  const refusal = weightRefusal(node);
  if (refusal) return refusal;
  if (node.getInt('transA', 0) !== 0) return 'Gemm with transA is not grouped';
  const raw = node.input(1).constValue!;
  if (raw.dims.length !== 2) return 'Gemm weight is not a matrix';
  const weight = rowsAreOutputs(node) ? raw : transpose2d(raw);
  const [outFeatures, inFeatures] = weight.dims as [number, number];
  if (!(macs > 0)) return 'output shape unknown (pass inputShapes)';
  return {
    node,
    label,
    op: 'Gemm',
    weight,
    kernelArea: 1,
    positions: macs / (outFeatures * inFeatures),
    denseMacs: macs,
  };
}

/** Whether a Gemm's weight holds one row per output (transB = 1), per the op-role table. */
function rowsAreOutputs(node: Node): boolean {
  return weightAxes(node, 2)?.out === 0;
}

function transpose2d(t: Tensor): Tensor {
  const [rows, cols] = t.dims as [number, number];
  const src = t.data as Float32Array;
  const out = new (src.constructor as Float32ArrayConstructor)(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c]!;
  return t.withData([cols, rows], out);
}

// ---------------------------------------------------------------------------------------------
// Importance and k-means

function usesCalibration(candidate: Candidate, options: SelfGroupOptions, ctx: SelfGroupContext): boolean {
  if (options.importance === 'weight') return false;
  const input = candidate.node.input(0);
  const have = ctx.channelMeanAbs?.has(input) ?? false;
  if (options.importance === 'data' && !have) {
    throw new RegroupError(
      'usage',
      `importance 'data' needs calibration statistics for '${input.name}' (input of '${candidate.label}'); run calibration first or use importance 'weight'`,
    );
  }
  return have;
}

/** Importance vectors of a layer as rows, scaled per input channel by calibration when used. */
function layerVectors(candidate: Candidate, options: SelfGroupOptions, ctx: SelfGroupContext): number[][] {
  const [outChannels, inChannels] = candidate.weight.dims as [number, number];
  const flat = importanceVectors(candidate.weight);
  const scale = usesCalibration(candidate, options, ctx)
    ? ctx.channelMeanAbs!.get(candidate.node.input(0))!
    : undefined;
  if (scale && scale.length !== inChannels) {
    throw new RegroupError(
      'bad-data',
      `calibration for '${candidate.node.input(0).name}' has ${scale.length} channels but '${candidate.label}' reads ${inChannels}; recalibrate this model`,
    );
  }
  return Array.from({ length: outChannels }, (_, i) =>
    Array.from(flat.subarray(i * inChannels, (i + 1) * inChannels), (v, j) => (scale ? v * scale[j]! : v)),
  );
}

function groupsFor(candidate: Candidate, options: SelfGroupOptions): number {
  const g = options.groups;
  const value = typeof g === 'number' ? g : (g?.layers.get(candidate.node) ?? g?.default ?? DEFAULT_GROUPS);
  if (!Number.isInteger(value) || value < 1)
    throw new RegroupError('usage', `groups for '${candidate.label}' must be a positive integer, got ${value}`);
  return value;
}

function clusterLayer(candidate: Candidate, options: SelfGroupOptions, ctx: SelfGroupContext): Clustering {
  const vectors = layerVectors(candidate, options, ctx);
  return clusterFilters(vectors, groupsFor(candidate, options), {
    seed: options.seed ?? 0,
    restarts: options.restarts ?? 4,
  });
}

/**
 * Each layer's cp: explicit (one or per layer), or the smallest global cp whose total MACs fit
 * keepMacs (bisection; cp = 100 when none fits). `cp` is the global value, absent per layer.
 */
/** MACs of layer i thresholded at cp (connectivityMacs of its connectivity, without building it). */
function layerMacsAt(
  plan: Pick<LayerPlanning, 'candidates' | 'clusterings' | 'sorted'>,
  i: number,
  cp: number,
): number {
  const c = plan.candidates[i]!;
  return pairsAt(plan.clusterings[i]!, cp, plan.sorted[i]!) * c.kernelArea * c.positions;
}

function chooseCps(
  plan: Pick<LayerPlanning, 'candidates' | 'clusterings' | 'sorted' | 'macsBefore'>,
  options: SelfGroupOptions,
): { cps: number[]; cp?: number; targetMet: boolean } {
  const { candidates, macsBefore: total } = plan;
  if (options.keepMacs === undefined) {
    const explicit = options.cp ?? DEFAULT_CP;
    const cps = candidates.map((c) =>
      typeof explicit === 'number' ? explicit : (explicit.layers.get(c.node) ?? explicit.default ?? DEFAULT_CP),
    );
    if (typeof explicit === 'object') {
      const known = new Set(candidates.map((c) => c.node));
      const stray = [...explicit.layers.keys()].find((node) => !known.has(node));
      if (stray !== undefined)
        throw new RegroupError('usage', `cp given for ${stray}, which is not a groupable layer of this model`);
    }
    const bad = (typeof explicit === 'number' ? [explicit] : cps).find((cp) => !(cp >= 0 && cp <= 100));
    if (bad !== undefined) throw new RegroupError('usage', `cp must lie in [0, 100], got ${bad}`);
    return { cps, cp: typeof explicit === 'number' ? explicit : undefined, targetMet: true };
  }
  if (!(options.keepMacs > 0 && options.keepMacs <= 1))
    throw new RegroupError('usage', `keepMacs must lie in (0, 1], got ${options.keepMacs}`);
  const budget = options.keepMacs * total;
  const macsAt = (cp: number) =>
    total - candidates.reduce((sum, c, i) => sum + c.denseMacs - layerMacsAt(plan, i, cp), 0);
  const all = (cp: number) => ({ cps: candidates.map(() => cp), cp });
  if (macsAt(0) <= budget) return { ...all(0), targetMet: true };
  if (macsAt(100) > budget) return { ...all(100), targetMet: false };
  let [lo, hi] = [0, 100];
  for (let step = 0; step < BISECTION_STEPS; step++) {
    const mid = (lo + hi) / 2;
    if (macsAt(mid) <= budget) hi = mid;
    else lo = mid;
  }
  return { ...all(hi), targetMet: true };
}

// ---------------------------------------------------------------------------------------------
// Rewrite

/** Mask the layer's weight in place (a grouped conv becomes group = 1 with its zeros written out). */
function applyConnectivity(candidate: Candidate, conn: Connectivity): void {
  const { node } = candidate;
  const value = node.input(1);
  const masked = maskWeight(candidate.weight, conn);
  const stored = candidate.op === 'Gemm' && !rowsAreOutputs(node) ? transpose2d(masked) : masked;
  value.graph.setInitializer(value, stored);
  if (candidate.op === 'Conv' && node.getInt('group', 1) !== 1) node.setAttr(attr.int('group', 1));
}

/**
 * Mask a Conv or Gemm of `model` to a given connectivity in place (weights outside each
 * cluster's inputs become exact zeros; a grouped conv is written out as group = 1). For
 * connectivities built elsewhere than selfGroup (tests, saved plans).
 */
export function maskLayer(node: Node, conn: Connectivity): void {
  const label = nodeLabel(node);
  validateConnectivity(conn, label);
  const refusal = weightRefusal(node);
  if (refusal) throw new RegroupError('unsupported', `cannot mask '${label}': ${refusal}`);
  const raw = node.input(1).constValue!;
  const op = node.opType === 'Gemm' ? 'Gemm' : 'Conv';
  const weight =
    op === 'Conv' ? expandGroupedWeight(raw, node.getInt('group', 1)) : rowsAreOutputs(node) ? raw : transpose2d(raw);
  applyConnectivity({ node, label, op, weight, kernelArea: 1, positions: 0, denseMacs: 0 }, conn);
}

function layerStats(
  candidate: Candidate,
  clustering: Clustering,
  conn: Connectivity,
  cp: number,
  tau: number,
  data: boolean,
): LayerGrouping {
  return {
    node: candidate.node,
    label: candidate.label,
    op: candidate.op,
    clusters: conn.clusters.length,
    clusterFilters: conn.clusters.map((c) => c.filters.length),
    clusterInputs: conn.clusters.map((c) => c.inputs.length),
    cp,
    tau,
    inertia: clustering.inertia,
    macsBefore: candidate.denseMacs,
    macsAfter: connectivityMacs(conn, candidate.kernelArea, candidate.positions),
    importance: data ? 'data' : 'weight',
  };
}
