/**
 * The clustering half of self-group (SG-CNN): k-means over a layer's importance vectors and
 * the percentile threshold that turns centroids into input subsets.
 *
 *   k-means   `restarts` runs, each seeded by k-means++ (D² sampling from Random(seed + r))
 *             and refined by ml-kmeans's Lloyd iterations; the lowest inertia
 *             Σ_i ‖v_i − centroid(i)‖² wins (the first on ties)
 *   τ         the cp-th percentile of all centroid values of the layer (linear interpolation
 *             between order statistics, as numpy's default)
 *   I_c       { j : centroid_c[j] > τ }, or the index of its largest entry when that is empty
 */
import { kmeans } from 'ml-kmeans';
import type { Cluster, Connectivity } from '../compiler/analysis/connectivity.js';
import { Random } from '../compiler/util/random.js';

/** k-means result of one layer. */
export interface Clustering {
  /** Filter indices per cluster (ascending; clusters ordered by first filter). */
  readonly filters: Int32Array[];
  /** Centroid per cluster, same order. */
  readonly centroids: Float64Array[];
  readonly inertia: number;
}

/**
 * k-means over importance vectors (rows), best of `restarts` runs. Seeding stops early when
 * every vector already equals a center, so k never exceeds the distinct vectors and no
 * cluster starts empty; clusters that empty during the iterations are dropped. (ml-kmeans's
 * own k-means++ seeding is the same algorithm but takes ~1.3 s per 512×512 layer in its
 * matrix library; this one takes milliseconds.)
 */
export function clusterFilters(vectors: number[][], groups: number, options: { seed?: number; restarts?: number } = {}): Clustering {
  let best: Clustering | undefined;
  for (let r = 0; r < Math.max(1, options.restarts ?? 4); r++) {
    const run = kmeansRun(vectors, groups, (options.seed ?? 0) + r);
    if (!best || run.inertia < best.inertia) best = run;
  }
  return best!;
}

function kmeansRun(vectors: number[][], groups: number, seed: number): Clustering {
  const centers = seedCenters(vectors, Math.min(groups, vectors.length), new Random(seed));
  if (centers.length === 1) return fromLabels(vectors, vectors.map(() => 0), 1);
  const result = kmeans(vectors, centers.length, { initialization: centers, maxIterations: 100 });
  return fromLabels(vectors, result.clusters, centers.length);
}

/** k-means++ seeding: each next center drawn with probability ∝ squared distance to the nearest chosen one. */
function seedCenters(vectors: number[][], k: number, random: Random): number[][] {
  const centers = [vectors[random.int(vectors.length)]!];
  const nearest = Float64Array.from(vectors, (v) => squaredDistance(v, centers[0]!));
  while (centers.length < k) {
    const total = nearest.reduce((a, b) => a + b, 0);
    if (total === 0) break;
    const pick = vectors[drawIndex(nearest, total, random)]!;
    centers.push(pick);
    vectors.forEach((v, i) => (nearest[i] = Math.min(nearest[i]!, squaredDistance(v, pick))));
  }
  return centers;
}

/** An index drawn with probability weights[i] / total (only positive weights can be drawn). */
function drawIndex(weights: Float64Array, total: number, random: Random): number {
  let target = random.next() * total;
  let last = -1;
  for (let i = 0; i < weights.length; i++) {
    if (!(weights[i]! > 0)) continue;
    last = i;
    target -= weights[i]!;
    if (target < 0) return i;
  }
  return last; // rounding left a remainder: the last positive weight
}

function squaredDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let j = 0; j < a.length; j++) sum += (a[j]! - b[j]!) ** 2;
  return sum;
}

/** Clusters from labels: centroids recomputed as member means, empty clusters dropped, ordered by first filter. */
function fromLabels(vectors: number[][], labels: readonly number[], k: number): Clustering {
  const dims = vectors[0]?.length ?? 0;
  const members = Array.from({ length: k }, () => [] as number[]);
  labels.forEach((label, i) => members[label]!.push(i));
  const kept = members.filter((m) => m.length > 0).sort((a, b) => a[0]! - b[0]!);
  const centroids = kept.map((m) => {
    const c = new Float64Array(dims);
    for (const i of m) for (let j = 0; j < dims; j++) c[j]! += vectors[i]![j]!;
    return c.map((v) => v / m.length);
  });
  let inertia = 0;
  kept.forEach((m, c) => {
    for (const i of m) inertia += squaredDistance(vectors[i]!, centroids[c]!);
  });
  return { filters: kept.map((m) => Int32Array.from(m)), centroids, inertia };
}

/** The p-th percentile (0..100) of values, linear interpolation between order statistics. */
export function percentile(values: ArrayLike<number>, p: number): number {
  return percentileOfSorted(Float64Array.from(values).sort(), p);
}

function percentileOfSorted(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (Math.min(Math.max(p, 0), 100) / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** I_c = { j : centroid_c[j] > τ }, or the index of its largest entry when that is empty. */
export function keptInputs(centroid: Float64Array, tau: number): Int32Array {
  const kept: number[] = [];
  centroid.forEach((v, j) => v > tau && kept.push(j));
  if (kept.length > 0) return Int32Array.from(kept);
  let largest = 0;
  centroid.forEach((v, j) => v > centroid[largest]! && (largest = j));
  return Int32Array.of(largest);
}

/** All centroid values of a layer, sorted ascending (what τ is a percentile of). */
export function sortedCentroidValues(centroids: readonly Float64Array[], inChannels: number): Float64Array {
  const all = new Float64Array(centroids.length * inChannels);
  centroids.forEach((c, i) => all.set(c, i * inChannels));
  return all.sort();
}

/**
 * Connectivity of one layer at percentile cp, and its τ. `sorted` (sortedCentroidValues of the
 * same centroids) spares the sort when one layer is thresholded at many cp values.
 */
export function thresholdClusters(clustering: Pick<Clustering, 'filters' | 'centroids'>, cp: number, outChannels: number, inChannels: number, sorted?: Float64Array): { connectivity: Connectivity; tau: number } {
  const { filters, centroids } = clustering;
  const tau = percentileOfSorted(sorted ?? sortedCentroidValues(centroids, inChannels), cp);
  const clusters: Cluster[] = filters.map((f, c) => ({ filters: f, inputs: keptInputs(centroids[c]!, tau) }));
  return { connectivity: { outChannels, inChannels, clusters }, tau };
}
