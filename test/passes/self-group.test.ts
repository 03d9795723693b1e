/**
 * self-group (SG-CNN): importance vectors, k-means, the percentile threshold and kept
 * subsets on hand-made weights; the MACs target; exact zeros outside each cluster's inputs;
 * purity and determinism; which layers stay dense and why; the pass and pipeline forms.
 *
 * Numeric checks of the lowering live in lower-grouped.test.ts; here the self-grouped model
 * is the reference, and what is checked is that it is the original with exactly the masked
 * weights zeroed.
 */
import { describe, expect, it } from 'vitest';
import {
  connectivityMacs,
  connectivityMask,
  convConnectivity,
  denseConnectivity,
  expandGroupedWeight,
  importanceVectors,
  isDense,
  maskWeight,
  uniformConnectivity,
  validateConnectivity,
  type Connectivity,
} from '../../compiler/analysis/connectivity.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { RegroupError } from '../../compiler/errors.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { constantOf } from '../../compiler/ir/constants.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { BASELINES } from '../../fixtures/baselines.js';
import { flattenGemmHead, mobilenetV2Block, resnetTiny, resnextBlock, vggChain } from '../../fixtures/models.js';
import {
  planSelfGroup,
  PREPARE,
  runPasses,
  selfGroup,
  selfGroupPass,
  type SelfGroupContext,
} from '../../passes/index.js';
import type { SelfGroupStats } from '../../passes/self-group.js';
import { kmeans } from 'ml-kmeans';
import { connectivityPairs } from '../../compiler/analysis/connectivity.js';
import { Random } from '../../compiler/util/random.js';
import {
  clusterFilters,
  keptInputs,
  lloyd,
  pairsAt,
  percentile,
  seedCenters,
  sortCentroids,
  squaredDistance,
  thresholdClusters,
} from '../../passes/self-group-cluster.js';
import { haveShared, sharedModel } from '../helpers/shared.js';

/** How far below the keepMacs target the realised fraction may fall (it never exceeds it). */
const TARGET_TOLERANCE = 0.02;

function prepared(build: () => Model): Model {
  const model = build();
  runPasses(model, PREPARE, {}, { fixpoint: true });
  return model;
}

/**
 * One 3×3 conv, 6 filters × 4 inputs, every kernel entry a/9 so Σ_hw |W| = a. Filters 0–2
 * weigh inputs 0, 1; filters 3–5 weigh inputs 2, 3 (the rows of IMPORTANCE).
 */
const IMPORTANCE = [
  [9, 8, 0.5, 1],
  [8, 9, 1, 0.5],
  [10, 10, 0.5, 0.5],
  [1, 0.5, 9, 8],
  [0.5, 1, 8, 9],
  [0.5, 0.5, 10, 10],
];

/** A Node-keyed table by node name (fixture names are unique), for readable assertions. */
function named<T>(table: ReadonlyMap<Node, T>): Map<string, T> {
  return new Map([...table].map(([node, value]) => [node.name, value] as const));
}

/** Stats without Node references (nodes of different copies are different objects). */
function plainStats(stats: SelfGroupStats): unknown {
  return {
    ...stats,
    layers: stats.layers.map(({ node: _, ...rest }) => rest),
    skipped: stats.skipped.map(({ node: _, ...rest }) => rest),
  };
}

function handMade(): Model {
  const b = new GraphBuilder({ opset: 17, seed: 5 });
  const x = b.input('x', [1, 4, 6, 6]);
  const w = b.initializer(
    'conv.weight',
    Tensor.float32(
      [6, 4, 3, 3],
      IMPORTANCE.flatMap((row) => row.flatMap((a) => Array(9).fill(a / 9))),
    ),
  );
  b.output(b.op('Conv', [x, w], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, 'conv'));
  return b.model;
}

describe('connectivity', () => {
  it('uniform grouped is block diagonal; a conv with group = 2 has that connectivity', () => {
    const conn = uniformConnectivity(4, 6, 2);
    expect([...connectivityMask(conn)]).toEqual([
      1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1,
    ]);
    expect(convConnectivity([4, 3, 3, 3], 2)).toEqual(conn);
    expect(convConnectivity([4, 6, 1, 1], 1)).toEqual(denseConnectivity(4, 6));
    expect([isDense(conn), isDense(denseConnectivity(4, 6))]).toEqual([false, true]);
    // pairs 4·3 = 12, kernel 3×3, 10 output positions
    expect(connectivityMacs(conn, 9, 10)).toBe(12 * 9 * 10);
  });

  it('validation names the broken cluster', () => {
    const two = (filters: number[][], inputs: number[][]): Connectivity => ({
      outChannels: 4,
      inChannels: 3,
      clusters: filters.map((f, c) => ({ filters: Int32Array.from(f), inputs: Int32Array.from(inputs[c]!) })),
    });
    expect(() =>
      validateConnectivity(
        two(
          [
            [0, 1],
            [1, 2, 3],
          ],
          [[0], [1]],
        ),
        'c',
      ),
    ).toThrow(/connectivity of 'c': filter 1 is in clusters 0 and 1/);
    expect(() => validateConnectivity(two([[0, 1], [2]], [[0], [1]]), 'c')).toThrow(/filter 3 is in no cluster/);
    expect(() =>
      validateConnectivity(
        two(
          [
            [0, 1],
            [2, 3],
          ],
          [[2, 0], [1]],
        ),
        'c',
      ),
    ).toThrow(/cluster 0 inputs are not strictly ascending/);
    expect(() =>
      validateConnectivity(
        two(
          [
            [0, 1],
            [2, 3],
          ],
          [[0], [3]],
        ),
        'c',
      ),
    ).toThrow(/cluster 1 inputs: index 3 is outside \[0, 3\)/);
    expect(() =>
      validateConnectivity(
        two(
          [
            [0, 1],
            [2, 3],
          ],
          [[0], []],
        ),
        'c',
      ),
    ).toThrow(/cluster 1 is empty/);
  });

  it('grouped weights expand onto the diagonal; masks zero exactly the unread pairs; importance sums |W| over the kernel', () => {
    const grouped = Tensor.float32([4, 1, 1, 2], [1, -2, 3, 4, 5, 6, -7, 8]);
    const dense = expandGroupedWeight(grouped, 2);
    expect(dense.dims).toEqual([4, 2, 1, 2]);
    expect([...dense.data]).toEqual([1, -2, 0, 0, 3, 4, 0, 0, 0, 0, 5, 6, 0, 0, -7, 8]);
    expect([...importanceVectors(dense)]).toEqual([3, 0, 7, 0, 0, 11, 0, 15]);
    const conn: Connectivity = {
      outChannels: 4,
      inChannels: 2,
      clusters: [
        { filters: Int32Array.of(0, 3), inputs: Int32Array.of(0) },
        { filters: Int32Array.of(1, 2), inputs: Int32Array.of(0, 1) },
      ],
    };
    expect([...maskWeight(dense, conn).data]).toEqual([1, -2, 0, 0, 3, 4, 0, 0, 0, 0, 5, 6, 0, 0, 0, 0]);
    expect([...importanceVectors(dense, conn)]).toEqual([3, 0, 7, 0, 0, 11, 0, 0]);
  });
});

describe('percentile, kept inputs, k-means', () => {
  it('percentile interpolates linearly between order statistics', () => {
    const values = [4, 1, 3, 2];
    expect([0, 25, 50, 100].map((p) => percentile(values, p))).toEqual([1, 1.75, 2.5, 4]);
  });

  it('a cluster keeps the inputs strictly above τ, or its largest entry when none is', () => {
    const centroid = Float64Array.of(0.1, 0.5, 0.9, 0.5);
    expect([...keptInputs(centroid, 0.5)]).toEqual([2]);
    expect([...keptInputs(centroid, 0.05)]).toEqual([0, 1, 2, 3]);
    expect([...keptInputs(centroid, 1)]).toEqual([2]);
  });

  it('k-means finds the two obvious clusters; their centroids are the member means', () => {
    const c = clusterFilters(IMPORTANCE, 2, { seed: 3, restarts: 3 });
    expect(c.filters.map((f) => [...f])).toEqual([
      [0, 1, 2],
      [3, 4, 5],
    ]);
    expect([...c.centroids[0]!].map((v) => +v.toFixed(6))).toEqual([9, 9, 0.666667, 0.666667]);
    // inertia = Σ ‖v − centroid‖² = 2 · (0+1+1 + 1+0+1 + (1/6)²·2+(1/3)²·2+(1/6)²·2) per cluster
    expect(c.inertia).toBeCloseTo(2 * (4 + 2 * (1 / 36 + 1 / 9 + 1 / 36)), 10);
  });

  it('k never exceeds the distinct vectors: identical filters form one cluster', () => {
    const same = Array.from({ length: 5 }, () => [1, 2, 3]);
    const c = clusterFilters(same, 4, { seed: 0 });
    expect(c.filters.map((f) => [...f])).toEqual([[0, 1, 2, 3, 4]]);
    expect(c.inertia).toBe(0);
  });

  it('pairsAt counts the pairs thresholdClusters keeps, at every cp', () => {
    const vectors = clusteredRows(120, 33, 6, 7);
    const c = clusterFilters(vectors, 16, { seed: 0 });
    for (let cp = 0; cp <= 100; cp += 2.5)
      expect(pairsAt(c, cp, sortCentroids(c.centroids, 33))).toBe(
        connectivityPairs(thresholdClusters(c, cp, 120, 33).connectivity),
      );
  });

  it('τ is the cp-th percentile of all centroid values of the layer', () => {
    const c = clusterFilters(IMPORTANCE, 2, { seed: 1 });
    const { connectivity, tau } = thresholdClusters(c, 50, 6, 4);
    // values {9, 9, 2/3, 2/3} ∪ {2/3, 2/3, 9, 9}: the median lies halfway between 2/3 and 9
    expect(tau).toBeCloseTo((2 / 3 + 9) / 2, 12);
    expect(connectivity.clusters.map((k) => [...k.inputs])).toEqual([
      [0, 1],
      [2, 3],
    ]);
  });
});

/** Rows of a conv's importance vectors. */
function vectorRows(weight: Tensor): number[][] {
  const [outChannels, inChannels] = weight.dims as [number, number];
  const flat = importanceVectors(weight);
  return Array.from({ length: outChannels }, (_, i) => Array.from(flat.subarray(i * inChannels, (i + 1) * inChannels)));
}

/** `count` vectors of `dims` values around `centers` random centres (nonnegative, like |W| sums), some repeated exactly. */
function clusteredRows(count: number, dims: number, centers: number, seed: number): number[][] {
  const random = new Random(seed);
  const middles = Array.from({ length: centers }, () => Array.from({ length: dims }, () => 3 * random.next()));
  const rows = Array.from({ length: count }, () =>
    middles[random.int(centers)]!.map((m) => Math.abs(m + 0.4 * (random.next() - 0.5))),
  );
  for (let i = 0; i < count / 10; i++) rows[random.int(count)] = [...rows[random.int(count)]!];
  return rows;
}

/** ml-kmeans from the same centers, as clusters of filter indices ordered by first filter. */
function referenceGroups(vectors: number[][], centers: number[][]): number[][] {
  const { clusters } = kmeans(vectors, centers.length, {
    initialization: centers,
    maxIterations: 100,
    distanceFunction: squaredDistance,
  });
  return groupsOf(clusters);
}

function groupsOf(labels: ArrayLike<number>): number[][] {
  const groups = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) groups.set(labels[i]!, [...(groups.get(labels[i]!) ?? []), i]);
  return [...groups.values()].sort((a, b) => a[0]! - b[0]!);
}

describe("k-means against ml-kmeans (the reference for regroup's bounded Lloyd)", () => {
  const cases: [string, () => number[][], number][] = [
    ['random clustered 300×40, k 12', () => clusteredRows(300, 40, 8, 1), 12],
    ['random clustered 200×64, k 64', () => clusteredRows(200, 64, 20, 2), 64],
    ['random clustered 90×7, k 30', () => clusteredRows(90, 7, 5, 3), 30],
    [
      'an integer grid, where distances tie (lowest center wins)',
      () => Array.from({ length: 64 }, (_, i) => [i % 8, Math.floor(i / 8) % 4, Math.floor(i / 32)]),
      6,
    ],
  ];
  if (haveShared) {
    const convs = () =>
      [...loadModel(sharedModel('resnet20')).graph.nodes()].filter(
        (n) => n.opType === 'Conv' && n.input(1).constValue!.dims[1]! >= 16,
      );
    cases.push(['ResNet-20 last conv, k 16', () => vectorRows(convs().at(-1)!.input(1).constValue!), 16]);
    cases.push([
      'ResNet-20 last conv, k 64 (one filter each)',
      () => vectorRows(convs().at(-1)!.input(1).constValue!),
      64,
    ]);
    cases.push([
      'ResNet-20 a 32-filter conv, k 8',
      () =>
        vectorRows(
          convs()
            .find((n) => n.input(1).constValue!.dims[0] === 32)!
            .input(1).constValue!,
        ),
      8,
    ]);
  }
  for (const [name, rows, k] of cases) {
    it(`${name}: the same clusters as ml-kmeans from the same k-means++ seeds, with and without the seeding's assignment`, () => {
      const vectors = rows();
      for (let seed = 0; seed < 3; seed++) {
        const { centers, assignment } = seedCenters(vectors, Math.min(k, vectors.length), new Random(seed));
        const expected = referenceGroups(vectors, centers);
        expect(groupsOf(lloyd(vectors, centers))).toEqual(expected);
        expect(groupsOf(lloyd(vectors, centers, assignment))).toEqual(expected);
        expect([...assignment.labels]).toEqual(
          vectors.map((v) =>
            centers.reduce((best, c, q) => (squaredDistance(v, c) < squaredDistance(v, centers[best]!) ? q : best), 0),
          ),
        );
      }
      // clusterFilters keeps the best of its restarts, each one of the runs above
      const best = clusterFilters(vectors, k, { seed: 0, restarts: 3 });
      const runs = [0, 1, 2].map((seed) =>
        referenceGroups(vectors, seedCenters(vectors, Math.min(k, vectors.length), new Random(seed)).centers),
      );
      expect(runs).toContainEqual(best.filters.map((f) => [...f]));
    });
  }

  it("a tie between a vector's own center and a lower one goes to the lower, as in ml-kmeans", () => {
    // after one step the centers are 4 and 8: the vector 6 (in cluster 1) is 2 from both
    const vectors = [[4], [10], [6], [4]];
    expect([...lloyd(vectors, [[4], [6]])]).toEqual([0, 1, 0, 0]);
    expect(groupsOf(lloyd(vectors, [[4], [6]]))).toEqual(referenceGroups(vectors, [[4], [6]]));
  });

  it('squaredDistance with a bound: the exact sum when it is within the bound, Infinity only when the sum exceeds it', () => {
    const random = new Random(5);
    for (let trial = 0; trial < 200; trial++) {
      const dims = 1 + random.int(300);
      const [a, b] = [0, 1].map(() => Array.from({ length: dims }, () => random.next()));
      const full = squaredDistance(a!, b!);
      const bound = full * (0.5 + random.next());
      const bounded = squaredDistance(a!, b!, bound);
      expect(bounded === full || (bounded === Infinity && full > bound)).toBe(true);
      expect(squaredDistance(a!, b!, full)).toBe(full);
    }
  });
});

describe('selfGroup on a hand-made conv', () => {
  it('weight importance: τ, subsets, exact zeros outside them, untouched weights inside', () => {
    const model = handMade();
    const { model: grouped, connectivity, stats } = selfGroup(model, { groups: 2, cp: 50, seed: 2 });
    expect(stats.layers).toHaveLength(1);
    // the weights are float32 (a/9 nine times): Σ|W| matches a to ~1e-7
    expect(stats.layers[0]!.tau).toBeCloseTo((2 / 3 + 9) / 2, 5);
    expect(stats.layers[0]!.importance).toBe('weight');
    const conn = named(connectivity).get('conv')!;
    expect(conn.clusters.map((c) => [[...c.filters], [...c.inputs]])).toEqual([
      [
        [0, 1, 2],
        [0, 1],
      ],
      [
        [3, 4, 5],
        [2, 3],
      ],
    ]);
    expectMasked(model, grouped, connectivity);
    expect(stats.macsRatio).toBeCloseTo(0.5, 12);
  });

  it('data-aware importance: input channel scales move cluster 0 onto inputs 2, 3', () => {
    const model = handMade();
    const channelMeanAbs = new Map([[model.graph.inputs[0]!, Float64Array.of(1, 1, 20, 20)]]);
    const { connectivity, stats } = selfGroup(model, { groups: 2, cp: 50, seed: 2 }, { channelMeanAbs });
    // centroids [9, 9, 13⅓, 13⅓] and [⅔, ⅔, 180, 180]: median (9 + 13⅓)/2
    expect(stats.layers[0]!.importance).toBe('data');
    expect(stats.layers[0]!.tau).toBeCloseTo((9 + 40 / 3) / 2, 5);
    expect(
      named(connectivity)
        .get('conv')!
        .clusters.map((c) => [...c.inputs]),
    ).toEqual([
      [2, 3],
      [2, 3],
    ]);
  });

  it('refuses bad options and calibration that does not fit, naming the layer', () => {
    expect(() => selfGroup(handMade(), { importance: 'data' })).toThrow(
      /importance 'data' needs calibration statistics for 'x'/,
    );
    const model = handMade();
    expect(() =>
      selfGroup(model, {}, { channelMeanAbs: new Map([[model.graph.inputs[0]!, new Float64Array(3)]]) }),
    ).toThrow(/has 3 channels but 'conv' reads 4/);
    expect(() =>
      selfGroup(model, {}, { channelMeanAbs: new Map([[handMade().graph.inputs[0]!, new Float64Array(4)]]) }),
    ).toThrow(/'x' is not part of the model being self-grouped/);
    expect(() => selfGroup(handMade(), { keepMacs: 1.5 })).toThrow(RegroupError);
    expect(() => selfGroup(handMade(), { cp: 120 })).toThrow(/cp must lie in \[0, 100\]/);
    expect(() => selfGroup(handMade(), { groups: 0 })).toThrow(/groups for 'conv' must be a positive integer/);
  });
});

/** Every weight outside a cluster's inputs is exactly 0 and every weight inside equals the original. */
function expectMasked(original: Model, grouped: Model, connectivity: Map<Node, Connectivity>): void {
  const before = new Map(original.graph.nodeList().map((n) => [n.name, n] as const));
  for (const node of grouped.graph.nodes()) {
    const conn = connectivity.get(node);
    if (!conn) continue;
    const w = constantOf(node.inputs[1])!;
    const transposed = node.opType === 'Gemm' && node.getInt('transB', 0) !== 1;
    const area = w.size / (conn.outChannels * conn.inChannels);
    const old = denseWeight(before.get(node.name)!);
    const mask = connectivityMask(conn);
    let wrong = 0;
    for (let f = 0; f < conn.outChannels; f++) {
      for (let j = 0; j < conn.inChannels; j++) {
        for (let k = 0; k < area; k++) {
          const at = transposed ? j * conn.outChannels + f : (f * conn.inChannels + j) * area + k;
          const want = mask[f * conn.inChannels + j] ? old[at]! : 0;
          if (!Object.is(w.data[at], want)) wrong++;
        }
      }
    }
    expect({ node: node.name, wrong }).toEqual({ node: node.name, wrong: 0 });
  }
}

/** The original weight written out densely (a grouped conv's blocks placed on the diagonal). */
function denseWeight(node: Node): Float32Array {
  const w = constantOf(node.inputs[1])!;
  const group = node.opType === 'Conv' ? node.getInt('group', 1) : 1;
  if (group === 1) return w.data as Float32Array;
  const [outChannels, inPerGroup, ...kernel] = w.dims as [number, number, ...number[]];
  const area = kernel.reduce((a, b) => a * b, 1);
  const out = new Float32Array(outChannels * inPerGroup * group * area);
  for (let f = 0; f < outChannels; f++) {
    const first = Math.floor(f / (outChannels / group)) * inPerGroup;
    out.set(
      (w.data as Float32Array).subarray(f * inPerGroup * area, (f + 1) * inPerGroup * area),
      (f * inPerGroup * group + first) * area,
    );
  }
  return out;
}

const TARGET_MODELS: Record<string, () => Model> = {
  'resnet-tiny': resnetTiny,
  'fmnist-resnet': BASELINES.resnet!,
  'fmnist-vgg': BASELINES.vgg!,
  ...(haveShared ? { resnet20: () => loadModel(sharedModel('resnet20')) } : {}),
};

describe('keepMacs: one global cp found by bisection', () => {
  for (const [name, build] of Object.entries(TARGET_MODELS)) {
    for (const keep of [0.5, 0.7]) {
      it(`${name}: keepMacs ${keep} → realised in [${keep} − ${TARGET_TOLERANCE}, ${keep}], equal to the connectivity's MACs`, () => {
        const model = prepared(build);
        const { model: grouped, connectivity, stats } = selfGroup(model, { groups: 4, keepMacs: keep, seed: 7 });
        expect(stats.targetMet).toBe(true);
        expect(stats.macsRatio).toBeLessThanOrEqual(keep + 1e-12);
        expect(stats.macsRatio).toBeGreaterThan(keep - TARGET_TOLERANCE);
        // Recount independently: dense MACs minus what each connectivity removes.
        const cost = computeCost(grouped, inferShapes(grouped));
        const saved = cost.layers.reduce((sum, layer) => {
          const conn = connectivity.get(layer.node);
          if (!conn) return sum;
          const w = constantOf(layer.node.inputs[1])!;
          const area = w.size / (conn.outChannels * conn.inChannels);
          return (
            sum + layer.macs - connectivityMacs(conn, area, layer.macs / (conn.outChannels * conn.inChannels * area))
          );
        }, 0);
        expect((cost.totals.macs - saved) / cost.totals.macs).toBeCloseTo(stats.macsRatio, 12);
        expectMasked(model, grouped, connectivity);
      });
    }
  }

  it('an unreachable target groups at cp = 100 and says so', () => {
    const { stats } = selfGroup(prepared(vggChain), { groups: 2, keepMacs: 0.05 });
    expect(stats).toMatchObject({ cp: 100, targetMet: false });
    expect(stats.macsRatio).toBeGreaterThan(0.05);
    expect(stats.layers.every((l) => l.clusterInputs.every((n) => n === 1))).toBe(true);
  });
});

describe('per-layer cp (the sensitivity allocation)', () => {
  it('each layer is thresholded at its own cp, exactly as the plan promised, and the plan masks nothing', () => {
    const model = prepared(resnetTiny);
    const before = encodeModel(model).bytes;
    const plan = planSelfGroup(model, { groups: 4, seed: 3 });
    expect(Buffer.compare(Buffer.from(encodeModel(model).bytes), Buffer.from(before))).toBe(0);
    const cps = new Map(plan.layers.map((l, i) => [l.node, (i * 37) % 96]));
    const { connectivity, stats, nodes } = selfGroup(model, { groups: 4, seed: 3, cp: { layers: cps } });
    expect(stats.perLayer).toBe(true);
    for (const layer of plan.layers) {
      const cp = cps.get(layer.node)!;
      expect(connectivity.get(nodes.get(layer.node)!)).toEqual(layer.connectivityAt(cp));
      const grouping = stats.layers.find((l) => l.node === nodes.get(layer.node));
      expect(grouping).toMatchObject({ cp, label: layer.label, macsAfter: layer.macsAt(cp) });
    }
    const weighted =
      stats.layers.reduce((s, l) => s + l.cp * l.macsBefore, 0) / stats.layers.reduce((s, l) => s + l.macsBefore, 0);
    expect(stats.cp).toBeCloseTo(weighted, 12);
    expect(stats.macsAfter).toBe(
      plan.macsBefore - plan.layers.reduce((s, l) => s + l.denseMacs - l.macsAt(cps.get(l.node)!), 0),
    );
  });

  it('a cp for a layer that is not groupable, or out of range, is refused naming the node', () => {
    const b = new GraphBuilder({ opset: 17, seed: 5 });
    const relu = b.node(
      'Relu',
      [b.op('Conv', [b.input('x', [1, 8, 4, 4]), b.weight('w', [8, 8, 1, 1])], {}, 'conv')],
      {},
      { name: 'relu' },
    );
    b.output(relu.output());
    expect(() => selfGroup(b.model, { cp: { layers: new Map([[relu, 50]]) } })).toThrow(
      /cp given for relu \(Relu\), which is not a groupable layer/,
    );
    const model = handMade();
    const conv = model.graph.nodeList()[0]!;
    expect(() => selfGroup(model, { cp: { layers: new Map([[conv, 101]]) } })).toThrow(
      /cp must lie in \[0, 100\], got 101/,
    );
    expect(() => selfGroup(model, { cp: { layers: new Map([[handMade().graph.nodeList()[0]!, 50]]) } })).toThrow(
      /'conv' is not part of the model being self-grouped/,
    );
    expect(selfGroup(model, { cp: { default: 60, layers: new Map() } }).stats.layers[0]!.cp).toBe(60);
  });
});

describe('purity, determinism, skipped layers', () => {
  it('the input model is not changed; the same seed gives the same bytes and connectivity', () => {
    const model = prepared(resnetTiny);
    const before = encodeModel(model).bytes;
    const a = selfGroup(model, { groups: 8, keepMacs: 0.6, seed: 42 });
    const b = selfGroup(model, { groups: 8, keepMacs: 0.6, seed: 42 });
    expect(Buffer.compare(Buffer.from(encodeModel(model).bytes), Buffer.from(before))).toBe(0);
    expect(Buffer.compare(Buffer.from(encodeModel(a.model).bytes), Buffer.from(encodeModel(b.model).bytes))).toBe(0);
    expect(named(a.connectivity)).toEqual(named(b.connectivity));
    expect(plainStats(a.stats)).toEqual(plainStats(b.stats));
  });

  it('depthwise convs and 3-channel stems stay dense, with the reason', () => {
    const { stats, connectivity } = selfGroup(prepared(mobilenetV2Block), { groups: 4, cp: 50 });
    expect(stats.skipped.map(({ label, reason }) => ({ label, reason }))).toEqual([
      { label: 'stem.conv', reason: 'too few input channels to group (3 < minInputChannels 4)' },
      { label: 'block.depthwise.conv', reason: 'depthwise conv (one input channel per group)' },
    ]);
    expect([...named(connectivity).keys()]).toEqual(['block.expand.conv', 'block.project.conv']);
  });

  it('a weight shared by two convs stays dense', () => {
    const b = new GraphBuilder({ opset: 17, seed: 3 });
    const x = b.input('x', [1, 8, 5, 5]);
    const w = b.weight('shared', [8, 8, 1, 1]);
    b.output(b.op('Add', [b.op('Conv', [x, w], {}, 'a'), b.op('Conv', [x, w], {}, 'b')]));
    const { stats } = selfGroup(b.model, { groups: 2 });
    expect(stats.skipped.map((s) => s.reason)).toEqual([
      "weight 'shared' is shared with 1 other use(s)",
      "weight 'shared' is shared with 1 other use(s)",
    ]);
    expect(stats.layers).toEqual([]);
  });

  it('a grouped (ResNeXt) conv is written out densely and regrouped; its zeros stay zeros', () => {
    const model = prepared(resnextBlock);
    const { model: grouped, connectivity } = selfGroup(model, { groups: 4, cp: 40, seed: 1 });
    const spatial = grouped.graph.nodeList().find((n) => n.name === 'layer1.spatial.conv')!;
    expect(spatial.getInt('group', 1)).toBe(1);
    expect(constantOf(spatial.inputs[1])!.dims).toEqual([16, 16, 3, 3]);
    expectMasked(model, grouped, connectivity);
  });

  it('includeFc groups Gemm layers (rows of |W|) as well', () => {
    const model = prepared(flattenGemmHead);
    const { model: grouped, connectivity } = selfGroup(model, { groups: 4, cp: 50, includeFc: true, seed: 1 });
    expect([...named(connectivity).keys()]).toEqual(['features.1.conv', 'classifier.0', 'classifier.1']);
    expect(named(connectivity).get('classifier.0')).toMatchObject({ outChannels: 32, inChannels: 192 });
    expectMasked(model, grouped, connectivity);
  });
});

describe('pass form', () => {
  it('selfGroupPass masks in place like selfGroup and fills ctx.connectivity', () => {
    const options = { groups: 4, keepMacs: 0.6, seed: 9 };
    const model = prepared(resnetTiny);
    const expected = selfGroup(model, options);
    const ctx: SelfGroupContext = {};
    const result = runPasses(model, [selfGroupPass(options)], ctx, { verify: true });
    expect(result.changed).toBe(true);
    expect(named(ctx.connectivity!)).toEqual(named(expected.connectivity));
    expect([...ctx.connectivity!.keys()].every((node) => node.graph === model.graph)).toBe(true);
    expect(Buffer.compare(Buffer.from(encodeModel(model).bytes), Buffer.from(encodeModel(expected.model).bytes))).toBe(
      0,
    );
  });
});
