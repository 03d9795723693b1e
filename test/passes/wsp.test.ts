/**
 * WSP (passes/methods/wsp.ts):
 *   - planted-dead-channel oracle: conv and FC channels whose weights are zeroed (activations
 *     and loss gradients exactly 0) score 0, below every live channel, and a plan at the MACs
 *     their removal leaves removes exactly them; the pruned model's outputs equal the planted
 *     model's (rtol 1e-4, atol 1e-5), and the dense model passed in is not changed;
 *   - the PyTorch MNIST CNN (../shared/fixtures): one global selection prunes its convs and its
 *     hidden fc1 (9216 → 128) together, near keepMacs 0.5, and the result runs;
 *   - options: saliency without --data is a usage error that names --data and the proxy.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeChannels, type ChannelAnalysis } from '../../compiler/analysis/channel-groups.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { RegroupError } from '../../compiler/errors.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { constantOf } from '../../compiler/ir/constants.js';
import type { Model } from '../../compiler/ir/model.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { Random } from '../../compiler/util/random.js';
import { channelImportance, criterionNamed } from '../../passes/importance.js';
import { PREPARE, runPasses } from '../../passes/index.js';
import { methodFlags, methodNamed } from '../../passes/methods/index.js';
import type { CommonOptions, StructureContext } from '../../passes/methods/method.js';
import { WSP_USAGE_WITHOUT_DATA, wsp } from '../../passes/methods/wsp.js';
import { planPruning, PruningCost, removalSet } from '../../passes/plan-pruning.js';
import { openDataset } from '../../runtime/data/datasets.js';
import { memoryDataset } from '../../runtime/data/memory.js';
import { inputSpecFor, toTensor } from '../../runtime/data/preprocess.js';
import type { Dataset, InputSpec } from '../../runtime/data/types.js';
import { channelSaliency } from '../../runtime/saliency.js';
import { haveShared, SHARED_FIXTURES, sharedModel } from '../helpers/shared.js';
import { expectSameOutputs, outputsOf } from './compare.js';

const WITH_DATA: CommonOptions = { keepMacs: 0.5, seed: 0, hasData: true };
const NO_DATA: CommonOptions = { keepMacs: 0.5, seed: 0, hasData: false };

/** The context the pipeline gives a method, with saliency measured by runtime/saliency.ts. */
function context(notes: string[], data?: { dataset: Dataset; spec: InputSpec; samples: number }): StructureContext {
  return {
    common: data ? WITH_DATA : NO_DATA,
    log: () => {},
    note: (line) => notes.push(line),
    measure: data && {
      channelMeanAbs: () => Promise.reject(new Error('not used by wsp')),
      divergenceProbe: () => Promise.reject(new Error('not used by wsp')),
      channelSaliency: (model, values, samples) =>
        channelSaliency(model, data.dataset, data.spec, values, { samples: samples ?? data.samples }),
    },
  };
}

const DEAD_CONV = [1, 4];
const DEAD_FC = [2, 6];

/** x → conv1 (6, 3×3) → Relu → MaxPool 2 → Flatten (96) → fc1 (8) → Relu → fc2 (3), with dead channels planted. */
function plantedCnn(): Model {
  const b = new GraphBuilder({ seed: 21 });
  const random = b.random;
  const w1 = Float32Array.from(random.normals(6 * 9, 0.5));
  const b1 = Float32Array.from(random.normals(6, 0.1));
  const fc1 = Float32Array.from(random.normals(8 * 96, 0.2));
  const fc1b = Float32Array.from(random.normals(8, 0.1));
  const fc2 = Float32Array.from(random.normals(3 * 8, 0.5));
  for (const c of DEAD_CONV) {
    w1.fill(0, c * 9, (c + 1) * 9);
    b1[c] = 0;
    for (let unit = 0; unit < 8; unit++) fc1.fill(0, unit * 96 + c * 16, unit * 96 + (c + 1) * 16);
  }
  for (const unit of DEAD_FC) {
    fc1.fill(0, unit * 96, (unit + 1) * 96);
    fc1b[unit] = 0;
    for (let o = 0; o < 3; o++) fc2[o * 8 + unit] = 0;
  }
  const x = b.input('x', ['N', 1, 8, 8]);
  const conv = b.op(
    'Conv',
    [x, b.initializer('w1', Tensor.float32([6, 1, 3, 3], w1)), b.initializer('b1', Tensor.float32([6], b1))],
    { pads: [1, 1, 1, 1] },
    'conv1',
  );
  const pooled = b.op('MaxPool', [b.op('Relu', [conv])], { kernel_shape: [2, 2], strides: [2, 2] });
  const flat = b.op('Flatten', [pooled], { axis: 1 });
  const hidden = b.op('Relu', [
    b.op(
      'Gemm',
      [flat, b.initializer('fc1', Tensor.float32([8, 96], fc1)), b.initializer('fc1b', Tensor.float32([8], fc1b))],
      { transB: 1 },
      'fc1',
    ),
  ]);
  b.output(
    b.op(
      'Gemm',
      [hidden, b.initializer('fc2', Tensor.float32([3, 8], fc2)), b.constant('fc2b', [3], 0)],
      { transB: 1 },
      'fc2',
    ),
  );
  return b.model;
}

const PLANTED_SPEC: InputSpec = {
  name: 'x',
  layout: 'NCHW',
  channels: 1,
  height: 8,
  width: 8,
  dtype: 'float32',
  scale: 1 / 255,
  mean: [0.5],
  std: [0.5],
  channelOrder: 'RGB',
};

function noiseImages(count: number): Dataset {
  const random = new Random(4);
  const pixels = Uint8Array.from({ length: count * 64 }, () => random.int(256));
  return memoryDataset(
    'noise',
    { width: 8, height: 8, channels: 1 },
    pixels,
    Int32Array.from({ length: count }, () => random.int(3)),
    undefined,
    'noise',
  );
}

/** Roots of the prunable group produced by `producer`, in filter order. */
function rootsOf(analysis: ChannelAnalysis, producer: string): number[] {
  return [...analysis.groups.find((g) => g.prunable && g.producers.some((p) => p.includes(`'${producer}'`)))!.roots];
}

describe('wsp: planted dead channels', () => {
  it('scores the dead conv and FC channels 0, below every live one, and a plan at their MACs removes exactly them', async () => {
    const model = plantedCnn();
    const analysis = analyzeChannels(model);
    const values = criterionNamed('saliency').measuredValues!(analysis);
    expect(values.map((v) => v.producer!.opType)).toEqual(['Relu', 'Relu']);
    const saliency = await channelSaliency(model, noiseImages(32), PLANTED_SPEC, values, { samples: 32 });
    const scores = channelImportance(analysis, { criterion: 'saliency', measurements: { saliency } });
    const [conv, fc] = [rootsOf(analysis, 'conv1'), rootsOf(analysis, 'fc1')];
    const planted = new Set([...DEAD_CONV.map((c) => conv[c]!), ...DEAD_FC.map((u) => fc[u]!)]);
    for (const root of [...conv, ...fc]) {
      if (planted.has(root)) expect(scores.get(root)).toBe(0);
      else expect(scores.get(root)).toBeGreaterThan(0);
    }
    const cost = computeCost(model, analysis.shapes);
    const keepMacs = new PruningCost(analysis, cost).evaluate(planted).macs / cost.totals.macs;
    const plan = planPruning(analysis, cost, scores, { keepMacs, roundTo: 1 }, 'wsp saliency');
    expect([...removalSet(plan, analysis)].sort()).toEqual([...planted].sort());
  });

  it('structure() prunes exactly them, keeps the outputs, and leaves the dense model unchanged', async () => {
    const dense = plantedCnn();
    const bytes = encodeModel(dense).bytes;
    const analysis = analyzeChannels(dense);
    const cost = computeCost(dense, analysis.shapes);
    const planted = new Set([
      ...DEAD_CONV.map((c) => rootsOf(analysis, 'conv1')[c]!),
      ...DEAD_FC.map((u) => rootsOf(analysis, 'fc1')[u]!),
    ]);
    const keepMacs = new PruningCost(analysis, cost).evaluate(planted).macs / cost.totals.macs;
    const notes: string[] = [];
    const data = { dataset: noiseImages(32), spec: PLANTED_SPEC, samples: 32 };
    const result = await wsp.structure(dense, wsp.options({}, WITH_DATA), keepMacs, context(notes, data));
    expect(Buffer.from(encodeModel(dense).bytes).equals(Buffer.from(bytes))).toBe(true);
    expect(result.connectivity.size).toBe(0);
    expect(result.macsRatio).toBeCloseTo(keepMacs, 12);
    expect(weightDims(result.model, 'conv1')).toEqual([4, 1, 3, 3]);
    expect(weightDims(result.model, 'fc1')).toEqual([6, 64]);
    expect(weightDims(result.model, 'fc2')).toEqual([3, 6]);
    expect(notes.join('\n')).toMatch(/pruned 2 of 6 conv channels \(1 layer\) and 2 of 8 FC channels \(1 layer\)/);
    const images = await Promise.all(Array.from({ length: 8 }, (_, i) => data.dataset.get(i)));
    const feeds = { x: toTensor(images, PLANTED_SPEC) };
    expectSameOutputs(await outputsOf(dense, feeds), await outputsOf(result.model, feeds), { rtol: 1e-4 });
  });
});

function weightDims(model: Model, node: string): number[] {
  return [...constantOf(model.graph.nodeList().find((n) => n.name === node)!.inputs[1])!.dims];
}

const mnistData = path.join(SHARED_FIXTURES, 'data/mnist-test');
const haveMnist = haveShared && fs.existsSync(sharedModel('mnistCnn')) && fs.existsSync(mnistData);
if (!haveMnist)
  console.warn(
    '[wsp tests] skipping the MNIST CNN case: the model or data/mnist-test is missing from ../shared/fixtures',
  );

describe.skipIf(!haveMnist)('wsp on the PyTorch MNIST CNN', () => {
  async function prunedBy(criterion: 'saliency' | 'weight-proxy') {
    const dense = loadModel(sharedModel('mnistCnn'));
    runPasses(dense, PREPARE, {}, { fixpoint: true });
    const spec = inputSpecFor(dense, { preset: 'mnist' });
    const dataset = await openDataset(`idx:${mnistData}`);
    const notes: string[] = [];
    const ctx = context(notes, criterion === 'saliency' ? { dataset, spec, samples: 64 } : undefined);
    const result = await wsp.structure(dense, wsp.options({ criterion }, ctx.common), 0.5, ctx);
    return { dense, result, notes, spec, dataset };
  }

  for (const criterion of ['saliency', 'weight-proxy'] as const) {
    it(`${criterion}: convs and the hidden fc1 are pruned together near keepMacs 0.5, and the model runs`, async () => {
      const { dense, result, notes, spec, dataset } = await prunedBy(criterion);
      const [fc1Before, fc1After] = [weightDims(dense, '/fc1/Gemm'), weightDims(result.model, '/fc1/Gemm')];
      expect(fc1Before[0]).toBe(128);
      expect(fc1After[0]).toBeLessThan(128);
      expect(fc1After[1]).toBeLessThan(fc1Before[1]!); // the flattened conv2 channels went with conv2's filters
      expect(weightDims(result.model, '/conv2/Conv')[0]).toBeLessThan(64);
      expect(Math.abs(result.macsRatio - 0.5)).toBeLessThanOrEqual(0.03);
      expect(notes.join('\n')).toMatch(
        /pruned [1-9]\d* of 96 conv channels \(\d layers?\) and [1-9]\d* of 128 FC channels \(1 layer\)/,
      );
      const images = await Promise.all(Array.from({ length: 16 }, (_, i) => dataset.get(i)));
      const out = Object.values(await outputsOf(result.model, { [spec.name]: toTensor(images, spec) }))[0]!;
      expect([...out.dims]).toEqual([16, 10]);
      expect(Array.from(out.data as Float32Array).every(Number.isFinite)).toBe(true);
    });
  }
});

describe('wsp weight-proxy', () => {
  it('says in a note when the intersection rule cannot reach the target', async () => {
    // conv1's filter 5 has the largest l1 norm and channel 9 the largest conv2 column: the rule never removes them.
    const b = new GraphBuilder();
    const x = b.input('x', [1, 1, 6, 6]);
    const filters = [0.9, 0.1, 0.5, 0.5, 0.3, 1.2, 0.05, 0.7, 0.5, 0.2];
    const columns = [0.1, 0.2, 0.8, 0.3, 0.3, 0.05, 0.9, 0.4, 0.6, 1.0];
    const conv1 = b.op('Conv', [x, b.initializer('w1', Tensor.float32([10, 1, 1, 1], filters))], {}, 'conv1');
    b.output(
      b.op('Conv', [b.op('Relu', [conv1]), b.initializer('w2', Tensor.float32([1, 10, 1, 1], columns))], {}, 'conv2'),
    );
    const notes: string[] = [];
    const result = await wsp.structure(
      b.model,
      wsp.options({ criterion: 'weight-proxy' }, NO_DATA),
      0.05,
      context(notes),
    );
    expect(weightDims(result.model, 'conv1')).toEqual([2, 1, 1, 1]);
    expect(result.macsRatio).toBeCloseTo(0.2, 12);
    expect(notes.join('\n')).toMatch(/kept 20\.0% of MACs instead of 5\.0% .*intersection rule cannot remove/);
  });
});

describe('wsp options', () => {
  it('refuses the saliency criterion without data, naming --data and the proxy', () => {
    expect(() => wsp.options({}, NO_DATA)).toThrow(RegroupError);
    expect(() => wsp.options({ criterion: 'saliency' }, NO_DATA)).toThrow(WSP_USAGE_WITHOUT_DATA);
    expect(WSP_USAGE_WITHOUT_DATA).toBe(
      '--method wsp ranks channels by activation and gradient sparsity on labelled images: pass --data, or use --criterion weight-proxy, which needs none',
    );
    try {
      wsp.options({}, NO_DATA);
    } catch (err) {
      expect((err as RegroupError).code).toBe('usage');
    }
  });

  it('takes weight-proxy without data, saliency with it, and refuses other criteria', () => {
    expect(wsp.options({ criterion: 'weight-proxy' }, NO_DATA)).toEqual({ criterion: 'weight-proxy', roundTo: 1 });
    expect(wsp.options({}, WITH_DATA)).toEqual({ criterion: 'saliency', roundTo: 1 });
    // --round-to: as given, else the pipeline's channel multiple (the CPU's SIMD block).
    expect(wsp.options({ roundTo: 4 }, { ...WITH_DATA, channelMultiple: 8 }).roundTo).toBe(4);
    expect(wsp.options({}, { ...WITH_DATA, channelMultiple: 8 }).roundTo).toBe(8);
    expect(() => wsp.options({ criterion: 'l1' }, WITH_DATA)).toThrow(
      /--criterion 'l1' is not a wsp criterion; choose one of: saliency, weight-proxy/,
    );
  });

  it('is registered, with its --criterion flag', () => {
    expect(methodNamed('wsp')).toBe(wsp);
    const flag = methodFlags().find((f) => f.flag.key === 'criterion')!;
    expect(flag.methods).toContain('wsp');
    expect(flag.flag.choices).toEqual(['saliency', 'weight-proxy']);
  });
});
