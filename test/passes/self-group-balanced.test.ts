/**
 * self-group-balanced: equal, disjoint groups from SG-CNN's importance vectors.
 *
 * Structure: g clusters of exactly Cout/g filters, input subsets of exactly Cin/g that are
 * disjoint and cover every input; the masked model is the original with exact zeros outside
 * the blocks and untouched weights inside; the MACs target; determinism. Lowering: with the
 * 'grouped' form forced, every grouped layer becomes one Conv(group = g) and the lowered model
 * reproduces the masked one in onnxruntime (graph optimisations disabled, batch 2):
 *   max |lowered − masked| ≤ 1e-4 · max |masked|.
 * Recovery: on a conv with a planted, shuffled block structure the planted groups come back
 * exactly, where uniform grouping by index keeps only a fraction of the weight mass.
 */
import { describe, expect, it } from 'vitest';
import {
  connectivityMask,
  connectivityPairs,
  importanceVectors,
  type Connectivity,
} from '../../compiler/analysis/connectivity.js';
import { RegroupError } from '../../compiler/errors.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { constantOf } from '../../compiler/ir/constants.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { Random } from '../../compiler/util/random.js';
import { fmnistResnet } from '../../fixtures/baselines.js';
import { resnetBasic } from '../../fixtures/models.js';
import { lowerGrouped, PREPARE, runPasses } from '../../passes/index.js';
import { balancedConnectivity, balancedSelfGroup } from '../../passes/self-group-balanced.js';
import { uniformGroup } from '../../passes/uniform-group.js';
import { expectReproduces } from './compare.js';

/** Lowered outputs may differ from the masked reference by this much relative to the largest |output| (fp32 summation order). */
const TOLERANCE = 1e-4;

function prepared(build: () => Model): Model {
  const model = build();
  runPasses(model, PREPARE, {}, { fixpoint: true });
  return model;
}

function convsByName(model: Model): Map<string, Node> {
  return new Map(
    model.graph
      .nodeList()
      .filter((n) => n.opType === 'Conv')
      .map((n) => [n.name, n] as const),
  );
}

/** The connectivity of the result's node named `name` (fixture names are unique). */
function connOf(result: { model: Model; connectivity: ReadonlyMap<Node, Connectivity> }, name: string): Connectivity {
  return result.connectivity.get(convsByName(result.model).get(name)!)!;
}

/** g clusters, Cout/g filters each, disjoint inputs of Cin/g each covering [0, Cin). */
function expectBalanced(conn: Connectivity, groups: number): void {
  expect(conn.clusters).toHaveLength(groups);
  const seen = new Int32Array(conn.inChannels);
  for (const { filters, inputs } of conn.clusters) {
    expect(filters.length).toBe(conn.outChannels / groups);
    expect(inputs.length).toBe(conn.inChannels / groups);
    for (const j of inputs) seen[j]!++;
  }
  expect([...seen].every((n) => n === 1)).toBe(true);
  expect(connectivityPairs(conn) * groups).toBe(conn.outChannels * conn.inChannels);
}

/** The masked weight equals the original inside the blocks and is exactly 0 outside. */
function expectMasked(original: Tensor, masked: Tensor, conn: Connectivity): void {
  expect([...masked.dims]).toEqual([...original.dims]);
  const area = original.size / (conn.outChannels * conn.inChannels);
  const mask = connectivityMask(conn);
  const [a, b] = [original.data as Float32Array, masked.data as Float32Array];
  let mismatches = 0;
  for (let k = 0; k < a.length; k++) if (b[k] !== (mask[Math.floor(k / area)] ? a[k] : 0)) mismatches++;
  expect(mismatches).toBe(0);
}

const CASES: Record<string, { build: () => Model; keepMacs: number }> = {
  'fmnist-resnet': { build: fmnistResnet, keepMacs: 0.5 },
  'resnet-basic': { build: resnetBasic, keepMacs: 0.6 },
};

describe('fixtures: balanced groups, exact masking, target, lowering to Conv(group = g)', () => {
  for (const [name, { build, keepMacs }] of Object.entries(CASES)) {
    it(`${name}: keepMacs ${keepMacs}`, async () => {
      const model = prepared(build);
      const before = encodeModel(model).bytes;
      const result = balancedSelfGroup(model, { keepMacs, seed: 3 });
      expect(Buffer.from(encodeModel(model).bytes).equals(Buffer.from(before))).toBe(true);
      result.model.graph.verify();
      expect(result.stats.targetMet).toBe(true);
      expect(result.stats.macsRatio).toBeLessThanOrEqual(keepMacs + 1e-12);
      expect(result.stats.macsRatio).toBeGreaterThan(keepMacs - 0.1);

      const grouped = result.stats.layers.filter((l) => l.groups > 1);
      expect(grouped.length).toBeGreaterThan(1);
      expect(result.connectivity.size).toBe(grouped.length);
      expect(grouped.filter((l) => !result.connectivity.has(l.node)).map((l) => l.label)).toEqual([]);
      const [original, masked] = [convsByName(model), convsByName(result.model)];
      for (const layer of grouped) {
        const conn = result.connectivity.get(layer.node)!;
        expect(conn.inChannels / layer.groups).toBeGreaterThanOrEqual(4);
        expectBalanced(conn, layer.groups);
        expectMasked(
          constantOf(original.get(layer.label)!.inputs[1])!,
          constantOf(masked.get(layer.label)!.inputs[1])!,
          conn,
        );
        expect(masked.get(layer.label)).toBe(layer.node);
        expect(layer.macsAfter * layer.groups).toBeCloseTo(layer.macsBefore, 6);
      }
      const macsAfter =
        result.stats.macsBefore - result.stats.layers.reduce((s, l) => s + l.macsBefore - l.macsAfter, 0);
      expect(result.stats.macsAfter).toBeCloseTo(macsAfter, 3);

      const { model: lowered, choices } = await lowerGrouped(result.model, result.connectivity, { form: 'grouped' });
      expect(choices.length).toBe(result.connectivity.size);
      expect(choices.filter((c) => !result.connectivity.has(c.node)).map((c) => c.label)).toEqual([]);
      const loweredConvs = convsByName(lowered);
      for (const c of choices) {
        const groups = grouped.find((l) => l.node === c.node)!.groups;
        expect({ node: c.label, form: c.form, groups: c.groups }).toEqual({ node: c.label, form: 'grouped', groups });
        expect(loweredConvs.get(c.label)!.getInt('group', 1)).toBe(groups);
      }
      await expectReproduces(result.model, lowered, TOLERANCE);
    });
  }

  it('deterministic: the same seed gives identical bytes and connectivities', () => {
    const model = prepared(fmnistResnet);
    const [a, b] = [
      balancedSelfGroup(model, { keepMacs: 0.4, seed: 5 }),
      balancedSelfGroup(model, { keepMacs: 0.4, seed: 5 }),
    ];
    expect(Buffer.from(encodeModel(a.model).bytes).equals(Buffer.from(encodeModel(b.model).bytes))).toBe(true);
    expect([...a.connectivity].map(([node, conn]) => [node.name, conn])).toEqual(
      [...b.connectivity].map(([node, conn]) => [node.name, conn]),
    );
  });

  it('keepMacs 1 groups nothing; the stem (1 input) and minWidth bound what can be grouped', () => {
    const model = prepared(fmnistResnet);
    const none = balancedSelfGroup(model, { keepMacs: 1 });
    expect(none.connectivity.size).toBe(0);
    expect(Buffer.from(encodeModel(none.model).bytes).equals(Buffer.from(encodeModel(model).bytes))).toBe(true);
    const most = balancedSelfGroup(model, { keepMacs: 0.01, minWidth: 8 });
    expect(most.stats.targetMet).toBe(false);
    expect(most.stats.layers.map((l) => l.label)).not.toContain('stem.conv');
    for (const l of most.stats.layers)
      expect(most.connectivity.get(l.node)?.inChannels ?? 8).toBeGreaterThanOrEqual(8 * l.groups);
    expect(() => balancedSelfGroup(model, { keepMacs: 0 })).toThrow(RegroupError);
  });
});

/**
 * One 3×3 conv, 32 filters × 16 inputs. Planted: 4 groups of 8 filters reading 4 inputs each,
 * filters and inputs shuffled (filters {…} read e.g. inputs {1, 3, 9, 14}); in-block weights
 * N(0, 1), out-of-block noise N(0, 0.02²).
 */
function planted(seed: number): { model: Model; filterGroup: number[]; inputGroup: number[] } {
  const random = new Random(seed);
  const filterGroup = random.shuffle(Array.from({ length: 32 }, (_, i) => i % 4));
  const inputGroup = random.shuffle(Array.from({ length: 16 }, (_, j) => j % 4));
  const data = new Float32Array(32 * 16 * 9);
  for (let f = 0; f < 32; f++)
    for (let j = 0; j < 16; j++)
      for (let k = 0; k < 9; k++)
        data[(f * 16 + j) * 9 + k] = random.normal() * (filterGroup[f] === inputGroup[j] ? 1 : 0.02);
  const b = new GraphBuilder({ opset: 17, seed });
  const x = b.input('x', [1, 16, 8, 8]);
  const w = b.initializer('conv.weight', Tensor.float32([32, 16, 3, 3], data));
  b.output(b.op('Conv', [x, w], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, 'conv'));
  return { model: b.model, filterGroup, inputGroup };
}

/** Clusters as sorted "filters|inputs" strings, order-free. */
function clusterKeys(conn: Connectivity): string[] {
  return conn.clusters.map((c) => `${[...c.filters].join(',')}|${[...c.inputs].join(',')}`).sort();
}

/** Fraction of Σ |W| the connectivity keeps. */
function keptMass(weight: Tensor, conn: Connectivity): number {
  const v = importanceVectors(weight);
  const mask = connectivityMask(conn);
  const [kept, total] = v.reduce(([k, t], x, pair) => [k + (mask[pair] ? x : 0), t + x], [0, 0]);
  return kept / total;
}

describe('planted block structure', () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: recovers the planted groups exactly; uniform grouping by index does not`, async () => {
      const { model, filterGroup, inputGroup } = planted(seed);
      const truth: Connectivity = {
        outChannels: 32,
        inChannels: 16,
        clusters: [0, 1, 2, 3].map((c) => ({
          filters: Int32Array.from(filterGroup.flatMap((g, f) => (g === c ? [f] : []))),
          inputs: Int32Array.from(inputGroup.flatMap((g, j) => (g === c ? [j] : []))),
        })),
      };
      const balanced = balancedSelfGroup(model, { keepMacs: 0.25, seed: 0 });
      const uniform = uniformGroup(model, { keepMacs: 0.25 });
      const [mine, theirs] = [connOf(balanced, 'conv'), connOf(uniform, 'conv')];
      expect(clusterKeys(mine)).toEqual(clusterKeys(truth));
      expect(clusterKeys(theirs)).not.toEqual(clusterKeys(truth));
      const weight = constantOf(model.graph.nodeList()[0]!.inputs[1])!;
      expect(keptMass(weight, mine)).toBeCloseTo(keptMass(weight, truth), 12);
      // Planted mass ≈ 4·1 / (4·1 + 12·0.02) ≈ 0.943 per filter; by index a block overlaps the planted one in ~1 of 4 inputs.
      expect(keptMass(weight, mine)).toBeGreaterThan(0.93);
      expect(keptMass(weight, theirs)).toBeLessThan(0.6);
      const { model: lowered, choices } = await lowerGrouped(balanced.model, balanced.connectivity, {
        form: 'grouped',
      });
      expect(choices.map((c) => [c.form, c.groups])).toEqual([['grouped', 4]]);
      await expectReproduces(balanced.model, lowered, TOLERANCE);
    });
  }
});

describe('balancedConnectivity', () => {
  it('identical vectors (k-means finds one cluster) still split into g equal disjoint groups', () => {
    const conn = balancedConnectivity(
      Array.from({ length: 8 }, () => [1, 1, 1, 1]),
      4,
    );
    expectBalanced(conn, 4);
  });

  it('refuses group counts that do not divide both channel counts, naming the fix', () => {
    expect(() =>
      balancedConnectivity(
        Array.from({ length: 6 }, () => [1, 2, 3, 4]),
        4,
      ),
    ).toThrow(/pick a group count dividing both/);
  });

  it('calibration scaling is applied and its channel count checked', () => {
    const { model } = planted(1);
    const input = model.graph.nodeList()[0]!.input(0);
    expect(() =>
      balancedSelfGroup(model, { keepMacs: 0.25 }, { channelMeanAbs: new Map([[input, new Float64Array(3)]]) }),
    ).toThrow(/has 3 channels but 'conv' reads 16/);
    // Uniform scaling leaves every distance ordering intact: the same groups come back.
    const scaled = balancedSelfGroup(
      model,
      { keepMacs: 0.25 },
      { channelMeanAbs: new Map([[input, new Float64Array(16).fill(2)]]) },
    );
    expect(clusterKeys(connOf(scaled, 'conv'))).toEqual(
      clusterKeys(connOf(balancedSelfGroup(model, { keepMacs: 0.25 }), 'conv')),
    );
  });
});
