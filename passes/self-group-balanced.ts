/**
 * self-group-balanced: SG-CNN's learned assignment of filters and inputs to groups, made
 * equal and disjoint so that a layer is a permuted block diagonal — exactly what
 * `Conv(group = g)` computes once the lowering (passes/lower-grouped.ts, form 'grouped')
 * folds the permutations into neighbouring layers.
 *
 * Group counts, as uniform-group: layers largest-MACs first, g doubled (1 → 2 → 4 → …) one
 * layer at a time, sweep after sweep, only where g divides Cout and Cin and Cin/g ≥
 * `minWidth`, until MACs_total − Σ_l MACs_l·(1 − 1/g_l) ≤ keepMacs · MACs_total.
 *
 * Per layer with g > 1 (m = Cout/g filters and w = Cin/g inputs per group):
 *   v_i[j]    = Σ_hw |W[i, j, h, w]|  (× mean |x_j| when the context has calibration)
 *   μ_1..μ_g  = k-means centroids of {v_i} (self-group-cluster.ts clusterFilters); when
 *               k-means returns fewer than g, the filters farthest from every centroid are
 *               added as centroids until there are g
 *   filters   greedy balanced assignment: all (i, c) pairs by ‖v_i − μ_c‖² ascending,
 *             filter i joins c when i is unassigned and |F_c| < m; then μ_c = mean of F_c
 *             and the assignment repeated until it no longer changes (at most
 *             BALANCE_ITERATIONS rounds; this is Lloyd's iteration under equal capacities)
 *   inputs    greedy: all (j, c) pairs by μ_c[j] descending, input j joins c when j is
 *             unassigned and |I_c| < w
 * Ties break by the lower index, so the result is deterministic given the seed. Weights
 * outside the blocks become exact zeros (maskLayer); the model is a copy.
 */
import {
  importanceVectors,
  validateConnectivity,
  type Cluster,
  type Connectivity,
} from '../compiler/analysis/connectivity.js';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import { RegroupError } from '../compiler/errors.js';
import type { Model } from '../compiler/ir/model.js';
import type { Node, Value } from '../compiler/ir/node.js';
import { maskLayer } from './self-group.js';
import { clusterFilters } from './self-group-cluster.js';
import {
  doubleGroups,
  groupableConvs,
  layerStats,
  type GroupableLayer,
  type UniformGroupResult,
} from './uniform-group.js';

export interface BalancedSelfGroupOptions {
  /** Target fraction of the model's total MACs, in (0, 1]. */
  keepMacs: number;
  /** k-means seed (default 0); restart r uses seed + r. */
  seed?: number;
  /** k-means runs per layer (default 4); the lowest inertia wins. */
  restarts?: number;
  /** Fewest input channels per group (default 4): g doubles only while Cin/g stays ≥ this. */
  minWidth?: number;
  /** Convs with fewer input channels stay dense (default 4, as self-group). */
  minInputChannels?: number;
}

/** What balanced self-grouping reads from its context. */
export interface BalancedSelfGroupContext {
  /** Mean |activation| per channel of a layer's input value (values of the model handed in), from calibration. */
  channelMeanAbs?: ReadonlyMap<Value, Float64Array>;
}

/** Same shape as uniformGroup's result, so the two compete behind one interface. */
export type BalancedSelfGroupResult = UniformGroupResult;

const BALANCE_ITERATIONS = 20;

/** Balanced self-group a copy of `model` to about `keepMacs` of its MACs; the input is not changed. */
export function balancedSelfGroup(
  model: Model,
  options: BalancedSelfGroupOptions,
  ctx: BalancedSelfGroupContext = {},
): BalancedSelfGroupResult {
  if (!(options.keepMacs > 0 && options.keepMacs <= 1))
    throw new RegroupError('usage', `keepMacs must lie in (0, 1], got ${options.keepMacs}`);
  const { model: copy, nodes, values } = model.clone();
  const cost = computeCost(copy, inferShapes(copy));
  const layers = groupableConvs(cost.layers, options.minInputChannels ?? 4);
  const budget = options.keepMacs * cost.totals.macs;
  const total = doubleGroups(layers, cost.totals.macs, budget, { minWidth: options.minWidth ?? 4 });
  const stats = layerStats(copy, layers);
  const labels = new Map(stats.map((s) => [s.node, s.label]));
  const scales =
    ctx.channelMeanAbs &&
    new Map([...ctx.channelMeanAbs].map(([value, scale]) => [values.get(value) ?? value, scale] as const));
  const connectivity = new Map<Node, Connectivity>();
  for (const layer of layers.filter((l) => l.groups > 1)) {
    const conn = balancedConnectivity(importanceRows(layer, labels.get(layer.node)!, scales), layer.groups, options);
    validateConnectivity(conn, labels.get(layer.node)!);
    maskLayer(layer.node, conn);
    connectivity.set(layer.node, conn);
  }
  const macsRatio = cost.totals.macs > 0 ? total / cost.totals.macs : 1;
  return {
    model: copy,
    connectivity,
    stats: {
      macsBefore: cost.totals.macs,
      macsAfter: total,
      macsRatio,
      targetMet: total <= budget * (1 + 1e-9),
      layers: stats,
    },
    nodes,
  };
}

/** Importance vectors v_i (rows), scaled per input channel by calibration when the context has it. */
export function importanceRows(
  layer: GroupableLayer,
  label: string,
  scales: ReadonlyMap<Value, Float64Array> | undefined,
): number[][] {
  const { node, outChannels, inChannels } = layer;
  const flat = importanceVectors(node.input(1).constValue!);
  const scale = scales?.get(node.input(0));
  if (scale && scale.length !== inChannels) {
    throw new RegroupError(
      'bad-data',
      `calibration for '${node.input(0).name}' has ${scale.length} channels but '${label}' reads ${inChannels}; recalibrate this model`,
    );
  }
  return Array.from({ length: outChannels }, (_, i) =>
    Array.from(flat.subarray(i * inChannels, (i + 1) * inChannels), (v, j) => (scale ? v * scale[j]! : v)),
  );
}

/**
 * Equal, disjoint groups from importance vectors: g clusters of |rows|/g filters reading
 * disjoint input subsets of width/g inputs each (a permuted block diagonal). Exported for
 * tests and for callers that have vectors already.
 */
export function balancedConnectivity(
  vectors: number[][],
  groups: number,
  options: { seed?: number; restarts?: number } = {},
): Connectivity {
  const [outChannels, inChannels] = [vectors.length, vectors[0]?.length ?? 0];
  if (groups < 1 || outChannels % groups !== 0 || inChannels % groups !== 0) {
    throw new RegroupError(
      'usage',
      `cannot split ${outChannels} filters and ${inChannels} inputs into ${groups} equal groups; pick a group count dividing both`,
    );
  }
  const seeds = completeCentroids(
    vectors,
    clusterFilters(vectors, groups, { seed: options.seed ?? 0, restarts: options.restarts ?? 4 }).centroids,
    groups,
  );
  const labels = balanceFilters(vectors, seeds, outChannels / groups);
  const centroids = centroidsOf(vectors, labels, groups);
  const inputLabels = assignInputs(centroids, inChannels / groups);
  const clusters = Array.from(
    { length: groups },
    (_, c): Cluster => ({ filters: membersOf(labels, c), inputs: membersOf(inputLabels, c) }),
  );
  clusters.sort((a, b) => a.filters[0]! - b.filters[0]!);
  return { outChannels, inChannels, clusters };
}

/** Pad k-means' centroids to g with the vectors farthest from every centroid so far (lowest index on ties). */
export function completeCentroids(vectors: number[][], found: readonly Float64Array[], groups: number): Float64Array[] {
  const centroids = found.map((c) => Float64Array.from(c));
  while (centroids.length < groups) {
    let [far, farDistance] = [0, -1];
    vectors.forEach((v, i) => {
      const d = Math.min(...centroids.map((c) => squaredDistance(v, c)));
      if (d > farDistance) [far, farDistance] = [i, d];
    });
    centroids.push(Float64Array.from(vectors[far]!));
  }
  return centroids;
}

/** Balanced Lloyd iterations: greedy capacity-limited assignment, centroids recomputed, until stable. */
export function balanceFilters(vectors: number[][], seeds: Float64Array[], capacity: number): Int32Array {
  let labels = greedyFilters(vectors, seeds, capacity);
  for (let round = 1; round < BALANCE_ITERATIONS; round++) {
    const next = greedyFilters(vectors, centroidsOf(vectors, labels, seeds.length), capacity);
    if (next.every((label, i) => label === labels[i])) break;
    labels = next;
  }
  return labels;
}

/** Filter i → cluster: (i, c) pairs by ‖v_i − μ_c‖² ascending, each cluster taking at most `capacity`. */
function greedyFilters(vectors: number[][], centroids: readonly Float64Array[], capacity: number): Int32Array {
  const pairs = vectors.flatMap((v, filter) =>
    centroids.map((mu, cluster) => ({ item: filter, cluster, key: squaredDistance(v, mu) })),
  );
  return greedyAssign(pairs, vectors.length, centroids.length, capacity, 1);
}

/** Input j → cluster: (j, c) pairs by μ_c[j] descending, each cluster taking at most `capacity`. */
function assignInputs(centroids: readonly Float64Array[], capacity: number): Int32Array {
  const inChannels = centroids[0]!.length;
  const pairs = Array.from({ length: inChannels }, (_, input) =>
    centroids.map((mu, cluster) => ({ item: input, cluster, key: mu[input]! })),
  ).flat();
  return greedyAssign(pairs, inChannels, centroids.length, capacity, -1);
}

/**
 * Walk (item, cluster) pairs by key (ascending when direction = 1, descending when −1; ties by
 * item then cluster) and give each unassigned item to its cluster while the cluster has room.
 * Total capacity equals the item count, so every item is assigned.
 */
export function greedyAssign(
  pairs: { item: number; cluster: number; key: number }[],
  items: number,
  clusters: number,
  capacity: number,
  direction: 1 | -1,
): Int32Array {
  pairs.sort((a, b) => direction * (a.key - b.key) || a.item - b.item || a.cluster - b.cluster);
  const labels = new Int32Array(items).fill(-1);
  const room = new Int32Array(clusters).fill(capacity);
  for (const { item, cluster } of pairs) {
    if (labels[item] !== -1 || room[cluster] === 0) continue;
    labels[item] = cluster;
    room[cluster]!--;
  }
  return labels;
}

/** Mean vector of each cluster's members. */
export function centroidsOf(vectors: number[][], labels: Int32Array, groups: number): Float64Array[] {
  const dims = vectors[0]!.length;
  const sums = Array.from({ length: groups }, () => new Float64Array(dims));
  const counts = new Int32Array(groups);
  labels.forEach((c, i) => {
    counts[c]!++;
    for (let j = 0; j < dims; j++) sums[c]![j]! += vectors[i]![j]!;
  });
  return sums.map((s, c) => s.map((v) => v / Math.max(1, counts[c]!)));
}

/** Indices whose label is `cluster`, ascending. */
export function membersOf(labels: Int32Array, cluster: number): Int32Array {
  const members: number[] = [];
  labels.forEach((c, i) => c === cluster && members.push(i));
  return Int32Array.from(members);
}

function squaredDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let j = 0; j < a.length; j++) sum += (a[j]! - b[j]!) ** 2;
  return sum;
}
