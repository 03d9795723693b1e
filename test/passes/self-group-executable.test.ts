/**
 * Executable self-groups (passes/self-group-executable.ts) and the selection folding they
 * rest on (passes/fold-selection.ts).
 *
 * Folding: on conv → BN → ReLU → conv, a consumer with two overlapping groups (inputs
 * shared, others unused) masked densely is the reference; folding the selection [I_0 | I_1]
 * into the producer and lowering the consumer to Conv(group = 2) reproduces it through
 * onnxruntime (optimisations disabled, batch 2): max |got − want| ≤ 1e-5 · max |want|. The
 * producer keeps its shape. Refusals name the reason: graph inputs, residual streams.
 * Structure: on resnet-tiny the folded model computes what the overlapping masked model does
 * (same tolerance), every grouped layer is block diagonal, some groups share inputs, and the
 * lowered model is Conv(group) only — no Gather — with the structure's MACs.
 * Allocation: a layer made costly by the measured sensitivity gets the fewest groups the
 * target allows. Method: `compress --method sg-exec` writes such a model and passes the
 * pipeline's check.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compressModel } from '../../cli/pipelines/compress.js';
import { analyzeChannels } from '../../compiler/analysis/channel-groups.js';
import { uniformConnectivity, type Connectivity } from '../../compiler/analysis/connectivity.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node } from '../../compiler/ir/node.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { NetBuilder, resnetBasic, resnetTiny } from '../../fixtures/models.js';
import { lowerGrouped, maskLayer, PREPARE, runPasses } from '../../passes/index.js';
import { foldSelection, selectionSite } from '../../passes/fold-selection.js';
import { executableGroupCounts, executableSelfGroup } from '../../passes/self-group-executable.js';
import { uniformGroup } from '../../passes/uniform-group.js';
import { PROJECT_ROOT } from '../helpers/shared.js';
import { expectReproduces, opCounts } from './compare.js';

/** Relative tolerance of every numeric check here (fp32 summation order only). */
const TOLERANCE = 1e-5;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-sgexec-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function prepared(build: () => Model): Model {
  const model = build();
  runPasses(model, PREPARE, {}, { fixpoint: true });
  return model;
}

function convNamed(model: Model, name: string): Node {
  return model.graph.nodeList().find((n) => n.opType === 'Conv' && n.name === name)!;
}

/** Channels of the chain's hidden value (wide enough for the cost model to prefer Conv(group = 2)). */
const C = 64;

/** input → conv a (C, bias) → BN → ReLU → conv b (C) → GAP → Gemm. */
function chain(): Model {
  const n = new NetBuilder(7, 'chain');
  const x = n.relu(n.bn(n.conv(n.input(3, 8), 'a', { outChannels: C, bias: true }), 'a.bn'), 'a.relu');
  return n.gapHead(n.conv(x, 'b', { outChannels: C }), 10);
}

const range = (from: number, to: number) => Int32Array.from({ length: to - from }, (_, i) => from + i);

/** Two groups of C/2 filters reading C/2 inputs each: the first C/4 shared, the last C/4 read by neither. */
const INPUTS = [range(0, C / 2), Int32Array.from([...range(0, C / 4), ...range(C / 2, (3 * C) / 4)])];
const OVERLAPPING: Connectivity = {
  outChannels: C,
  inChannels: C,
  clusters: [
    { filters: range(0, C / 2), inputs: INPUTS[0]! },
    { filters: range(C / 2, C), inputs: INPUTS[1]! },
  ],
};

describe('fold-selection', () => {
  it('folds overlapping groups into the producer: Conv(group = 2), no Gather, same outputs', async () => {
    const reference = chain();
    const inputs = INPUTS;
    maskLayer(convNamed(reference, 'b'), OVERLAPPING);
    const { model } = reference.clone();
    const site = selectionSite(analyzeChannels(model), convNamed(model, 'b'));
    if (typeof site === 'string') throw new Error(site);
    expect(site.producer.name).toBe('a');
    foldSelection(model, analyzeChannels(model), site, Int32Array.from([...inputs[0]!, ...inputs[1]!]));
    const b = convNamed(model, 'b');
    const blocks = uniformConnectivity(C, C, 2);
    maskLayer(b, blocks);
    const lowered = await lowerGrouped(model, new Map([[b, blocks]]), { form: 'grouped' });
    expect(lowered.choices.map((c) => [c.form, c.groups])).toEqual([['grouped', 2]]);
    expect(opCounts(lowered.model).Gather).toBeUndefined();
    expect([...convNamed(lowered.model, 'a').input(1).constValue!.dims]).toEqual([C, 3, 3, 3]);
    await expectReproduces(reference, lowered.model, TOLERANCE);
  });

  it("is the lowering's duplicated form, chosen over Gathers when the producer is free", async () => {
    const reference = chain();
    const b = convNamed(reference, 'b');
    maskLayer(b, OVERLAPPING);
    const lowered = await lowerGrouped(reference, new Map([[b, OVERLAPPING]]), { simdBlock: 8 });
    expect(lowered.choices.map((c) => [c.form, c.groups, c.width])).toEqual([['duplicated', 2, C / 2]]);
    expect(opCounts(lowered.model).Gather).toBeUndefined();
    await expectReproduces(reference, lowered.model, TOLERANCE);
  });

  it('leaves convs whose inputs are already in blocks to the grouped form (uniform groups)', async () => {
    const r = uniformGroup(prepared(resnetTiny), { keepMacs: 0.5 });
    const lowered = await lowerGrouped(r.model, r.connectivity, { form: 'grouped' });
    expect(lowered.choices.map((c) => c.form)).toEqual(lowered.choices.map(() => 'grouped'));
  });

  it('refuses graph inputs and residual streams with the reason, and accepts a free chain', () => {
    const model = prepared(resnetBasic);
    const analysis = analyzeChannels(model);
    expect(selectionSite(analysis, convNamed(model, 'stem.conv'))).toMatch(/'input' is a graph input/);
    expect(selectionSite(analysis, convNamed(model, 'layer2.0.conv'))).toMatch(
      /written by 2 producers .*: a residual stream or merge/,
    );
    // The stem's output also feeds the identity shortcut: the Add couples it with layer1.1.conv's channels.
    expect(selectionSite(analysis, convNamed(model, 'layer1.0.conv'))).toMatch(/written by 2 producers/);
    const site = selectionSite(analysis, convNamed(model, 'layer1.1.conv'));
    expect(typeof site === 'string' ? site : site.producer.name).toBe('layer1.0.conv');
  });

  it('the lowering says why a residual-stream consumer cannot take the duplicated form', async () => {
    const reference = prepared(resnetBasic);
    const conv = convNamed(reference, 'layer2.0.conv');
    const overlapping: Connectivity = {
      outChannels: 16,
      inChannels: 8,
      clusters: [
        { filters: range(0, 8), inputs: range(0, 4) },
        { filters: range(8, 16), inputs: range(2, 6) },
      ],
    };
    maskLayer(conv, overlapping);
    const lowered = await lowerGrouped(reference, new Map([[conv, overlapping]]), { form: 'duplicated' });
    expect(lowered.choices[0]!.form).not.toBe('duplicated');
    expect(lowered.choices[0]!.reason).toMatch(
      /forced 'duplicated' does not apply \(the channels of .* are written by 2 producers .*residual stream or merge\)/,
    );
    await expectReproduces(reference, lowered.model, TOLERANCE);
  });
});

describe('executableSelfGroup', () => {
  const options = { keepMacs: 0.5, simdBlock: 8, seed: 1 };

  it('folds overlapping learned groups into block diagonals that compute the overlapping model', async () => {
    const dense = prepared(resnetTiny);
    const reference = executableSelfGroup(dense, { ...options, fold: false });
    const folded = executableSelfGroup(dense, options);
    expect(folded.stats.targetMet).toBe(true);
    const grouped = folded.stats.layers.filter((l) => l.groups > 1);
    expect(grouped.some((l) => l.inputs === 'selected' && l.shared > 0)).toBe(true);
    expect(grouped.some((l) => l.inputs === 'blocks' && /residual stream/.test(l.inputRefusal ?? ''))).toBe(true);
    for (const l of grouped) {
      const [out, inp] = l.node.input(1).constValue!.dims as number[];
      expect(folded.connectivity.get(l.node)).toEqual(uniformConnectivity(out!, inp!, l.groups));
      expect((inp! / l.groups) % 8).toBe(0);
    }
    const overlapping = [...reference.connectivity.values()].some((conn) => {
      const read = conn.clusters.flatMap((c) => [...c.inputs]);
      return new Set(read).size < read.length;
    });
    expect(overlapping).toBe(true);
    await expectReproduces(reference.model, folded.model, TOLERANCE);
  });

  it('spends the MACs budget where the measured sensitivity per MAC is least', () => {
    const dense = prepared(resnetTiny);
    const counts = executableGroupCounts(dense, { simdBlock: 8 });
    const spared = [...counts.keys()].find((n) => n.name === 'layer3.1.conv')!;
    const sensitivity = new Map(
      [...counts].map(([node, list]) => [node, new Map(list.map((g) => [g, node === spared ? 1e6 : 1e-3 * g]))]),
    );
    const plain = executableSelfGroup(dense, { ...options, fold: false });
    const aware = executableSelfGroup(dense, { ...options, fold: false, sensitivity });
    const groupsOf = (r: typeof plain) => r.stats.layers.find((l) => l.node === r.nodes.get(spared))!.groups;
    // The others cannot reach the target alone (SIMD-8 groups cap them), so it keeps the fewest groups that do.
    expect(groupsOf(aware)).toBe(2);
    expect(groupsOf(plain)).toBeGreaterThan(2);
    expect(aware.stats.targetMet).toBe(true);
  });

  it('lowering the unfolded structure folds every selection: Conv(group) only, no Gather, the structure MACs', async () => {
    const r = executableSelfGroup(prepared(resnetTiny), { ...options, fold: false });
    const lowered = await lowerGrouped(r.model, r.connectivity, { form: 'grouped', simdBlock: 8 });
    const selected = r.stats.layers.filter((l) => l.groups > 1 && l.inputs === 'selected').map((l) => l.label);
    expect(lowered.choices.filter((c) => c.form === 'duplicated').map((c) => c.label)).toEqual(selected);
    expect(lowered.choices.every((c) => c.form === 'grouped' || c.form === 'duplicated')).toBe(true);
    expect(opCounts(lowered.model).Gather).toBeUndefined();
    const groups = lowered.model.graph
      .nodeList()
      .filter((n) => n.opType === 'Conv')
      .map((n) => n.getInt('group', 1));
    expect(groups.filter((g) => g > 1)).toHaveLength(r.connectivity.size);
    const macs = computeCost(lowered.model, inferShapes(lowered.model)).totals.macs;
    expect(macs).toBeCloseTo(r.stats.macsAfter, 0);
    await expectReproduces(r.model, lowered.model, TOLERANCE);
  });
});

describe('sg-exec method', () => {
  it('compress writes Conv(group) layers, no Gather, at the structure MACs', async () => {
    const file = path.join(PROJECT_ROOT, 'fixtures/models/resnet-tiny.onnx');
    const output = path.join(tmp, 'sg-exec.onnx');
    const outcome = await compressModel(file, {
      output,
      method: 'sg-exec',
      keepMacs: 0.5,
      channelMultiple: 8,
      latency: false,
    });
    expect(outcome.structuredMacsRatio).toBeLessThanOrEqual(0.5);
    expect(outcome.loweringError ?? 0).toBeLessThanOrEqual(TOLERANCE);
    const written = loadModel(output);
    expect(opCounts(written).Gather).toBeUndefined();
    const grouped = outcome.choices.filter((c) => c.form === 'grouped' || c.form === 'duplicated');
    expect(outcome.choices.some((c) => c.form === 'duplicated')).toBe(true);
    expect(grouped.length).toBeGreaterThan(0);
    const dense = loadModel(file);
    runPasses(dense, PREPARE, {}, { fixpoint: true });
    const macsOf = (m: Model) => computeCost(m, inferShapes(m)).totals.macs;
    // Layers the cost model kept masked dense run their dense MACs; the structure counts 1/g of them.
    const maskedDense = outcome.choices
      .filter((c) => c.form === 'masked-dense')
      .reduce((sum, c) => sum + c.denseMacs * (1 - 1 / c.clusters), 0);
    const convGroups = written.graph.nodeList().filter((n) => n.opType === 'Conv' && n.getInt('group', 1) > 1);
    expect(convGroups).toHaveLength(grouped.length);
    expect((macsOf(written) - maskedDense) / macsOf(dense)).toBeCloseTo(outcome.structuredMacsRatio, 6);
  }, 60_000);
});
