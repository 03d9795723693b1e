/**
 * Weights computed in the graph (issue 18): ConstantOfShape fills, Slice/Expand/Range of
 * constants, Transpose/Mul/Add of constants, and ops the kernels do not cover (weight
 * normalisation's ReduceSum and Sqrt), folded into initializers by prepareModel with
 * onnxruntime as the evaluator.
 *
 * - The new kernels against onnxruntime, bit for bit (data movement and integer Range).
 * - prepareModel: what onnxruntime computes, folded models giving the original's outputs bit
 *   for bit (onnxruntime, optimisations disabled, runs the same kernel in both), the size rule
 *   (a big fill that feeds a conv's weight folds, the same fill feeding activations stays and
 *   is reported), what is never evaluated (random ops, integer division), an evaluator that
 *   fails, the summary's subgraph count, and a second run changing nothing.
 * - The acceptance fixture: conv weights from ConstantOfShape, Transpose and Mul of constants
 *   and a weight-normalised conv; `inspect` counts its parameters (figures worked out from the
 *   architecture below), the channel analysis finds prunable groups, and the pruned model
 *   equals the masked reference exactly (removed channels' consumer columns zeroed in a copy
 *   of the folded model, then 'exact' comparison, as the pruning oracle of STYLE.md).
 * - The CLI: inspect, inspect --groups and prune print what was folded and act on the weights.
 * - ResNet-18 rewritten the way the ONNX "light" models were made (every initializer of more
 *   than 128 elements replaced by a ConstantOfShape of its shape): inspect counts the same
 *   parameters and finds the same channel groups as on the original.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { analyzeChannels, type ChannelAnalysis } from '../../compiler/analysis/channel-groups.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { attr } from '../../compiler/ir/attribute.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { constantOf } from '../../compiler/ir/constants.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';
import { floatToHalf, Tensor } from '../../compiler/ir/tensor.js';
import { Random } from '../../compiler/util/random.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { loadModel, saveModel } from '../../compiler/onnx/io.js';
import { FIXTURES } from '../../fixtures/models.js';
import { inspectGroups, inspectModel, runtimeEvaluator } from '../../cli/api.js';
import { foldConstants } from '../../passes/fold-constants.js';
import { describeFolds } from '../../passes/fold-log.js';
import { applyChannelMap, channelImportance, planPruning, removalSet, runPasses, TIDY } from '../../passes/index.js';
import { prepareModel, type ConstantEvaluator } from '../../passes/prepare.js';
import { randomFeeds } from '../../runtime/inputs.js';
import { regroup } from '../helpers/cli.js';
import { haveShared, sharedModel } from '../helpers/shared.js';
import { runWithIntermediates } from '../../runtime/session.js';
import { checkRewrite, expectSameOutputs, opCounts, outputsOf, totalStats, type Tolerance } from './compare.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-computed-weights-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const random = new Random(18);
const count = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);
const floats = (dims: number[]) => Tensor.float32(dims, random.normals(count(dims)));
const INT64_MAX = 2n ** 63n - 1n;

/** A model whose constant subgraph `build` feeds an Identity graph output (so onnxruntime computes it). */
function caseModel(opset: number, build: (b: GraphBuilder) => Value): Model {
  const b = new GraphBuilder({ opset });
  b.output(b.op('Identity', [build(b)], {}, 'result'));
  return b.model;
}

// ---------------------------------------------------------------------------------------------
// Kernels

const KERNEL_CASES: { name: string; opset: number; folded: number; build: (b: GraphBuilder) => Value }[] = [
  {
    name: 'ConstantOfShape without value: float32 zeros',
    opset: 13,
    folded: 1,
    build: (b) => b.op('ConstantOfShape', [b.ints('s', [2, 3])]),
  },
  {
    name: 'ConstantOfShape of an int64 value, empty shape → scalar',
    opset: 13,
    folded: 1,
    build: (b) => b.op('ConstantOfShape', [b.ints('s', [])], { value: Tensor.int64([1], [-7]) }),
  },
  {
    name: 'ConstantOfShape of a float16 value copies its bits; a zero dim gives an empty tensor',
    opset: 13,
    folded: 3,
    build: (b) => {
      const half = Tensor.fromArray(DataType.FLOAT16, [1], Uint16Array.of(floatToHalf(0.3)));
      const full = b.op('ConstantOfShape', [b.ints('s', [4, 2])], { value: half });
      const empty = b.op('ConstantOfShape', [b.ints('z', [0, 2])], { value: half });
      return b.op('Concat', [full, empty], { axis: 0 });
    },
  },
  {
    name: 'Slice-13 with negative axes and steps, ends past the end and INT64_MAX',
    opset: 13,
    folded: 1,
    build: (b) => {
      const ends = b.initializer('e', Tensor.fromArray(DataType.INT64, [2], BigInt64Array.of(-100n, INT64_MAX)));
      return b.op('Slice', [
        b.initializer('d', floats([4, 5, 6])),
        b.ints('st', [-1, 1]),
        ends,
        b.ints('ax', [0, -1]),
        b.ints('sp', [-2, 2]),
      ]);
    },
  },
  {
    name: 'Slice-13 with int32 starts/ends and no axes; an empty result',
    opset: 13,
    folded: 3,
    build: (b) => {
      const i32 = (values: number[]) =>
        b.initializer(
          `i${values.join('_')}`,
          Tensor.fromArray(DataType.INT32, [values.length], Int32Array.from(values)),
        );
      const data = b.initializer('d', floats([3, 4]));
      const part = b.op('Slice', [data, i32([1, 0]), i32([3, -1])]);
      const empty = b.op('Slice', [data, i32([2, 0]), i32([1, 3])]);
      return b.op('Concat', [part, empty], { axis: 0 });
    },
  },
  {
    name: 'Slice-1 with attributes',
    opset: 9,
    folded: 1,
    build: (b) =>
      b.op('Slice', [b.initializer('d', floats([3, 4]))], { starts: [1, -3], ends: [1000, -1], axes: [0, 1] }),
  },
  {
    name: 'Expand both ways (data 1 → shape n, shape 1 → data n)',
    opset: 13,
    folded: 1,
    build: (b) => b.op('Expand', [b.initializer('d', floats([3, 1])), b.ints('s', [2, 1, 4])]),
  },
  {
    name: 'Range over int64 and int32, negative delta',
    opset: 13,
    folded: 4,
    build: (b) => {
      const i32 = (name: string, v: number) =>
        b.initializer(name, Tensor.fromArray(DataType.INT32, [], Int32Array.of(v)));
      const scalar = (name: string, v: number) => b.initializer(name, Tensor.int64([], [v]));
      const down = b.op('Range', [scalar('a', 10), scalar('l', -3), scalar('d', -4)]);
      const up = b.op('Cast', [b.op('Range', [i32('a32', -2), i32('l32', 7), i32('d32', 3)])], { to: DataType.INT64 });
      return b.op('Concat', [down, up], { axis: 0 });
    },
  },
];

describe('fold-constants: ConstantOfShape, Slice, Expand, Range against onnxruntime, bit for bit', () => {
  for (const test of KERNEL_CASES) {
    it(test.name, async () => {
      const model = caseModel(test.opset, test.build);
      const result = await checkRewrite(model, [foldConstants], 'exact');
      expect(totalStats(result)).toEqual({ constantsLifted: 0, nodesFolded: test.folded });
      expect(opCounts(model)).toEqual({ Identity: 1 });
    });
  }

  it('a float Range is left to a runtime evaluator (onnxruntime accumulates), with the reason logged', () => {
    const scalar = (b: GraphBuilder, name: string, v: number) => b.initializer(name, Tensor.float32([], [v]));
    const model = caseModel(13, (b) =>
      b.op('Range', [scalar(b, 'a', 0), scalar(b, 'l', 1), scalar(b, 'd', 0.1)], {}, 'r'),
    );
    const lines: string[] = [];
    const result = runPasses(model, [foldConstants], { log: (line) => lines.push(line) });
    expect(result.changed).toBe(false);
    expect(lines).toContainEqual(expect.stringMatching(/r \(Range\) stays: only integer Ranges are folded/));
  });
});

// ---------------------------------------------------------------------------------------------
// prepareModel with onnxruntime

/** x → Conv(weight-normalised W = g · V / ‖V‖ over each filter) → y: ReduceSum and Sqrt have no kernel. */
function weightNormConv(): Model {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', [1, 4, 6, 6]);
  const v = b.initializer('v', floats([6, 4, 3, 3]));
  const squares = b.op('Mul', [v, v], {}, 'square');
  const norm = b.op(
    'Sqrt',
    [b.op('ReduceSum', [squares, b.ints('axes', [1, 2, 3])], { keepdims: 1 }, 'sum')],
    {},
    'sqrt',
  );
  const w = b.op(
    'Mul',
    [b.op('Div', [v, norm], {}, 'direction'), b.initializer('g', floats([6, 1, 1, 1]))],
    {},
    'scale',
  );
  b.output(b.op('Conv', [x, w], { pads: [1, 1, 1, 1] }, 'conv'));
  return b.model;
}

/**
 * prepareModel on `model`, checked two ways: every initializer it made holds, bit for bit, what
 * onnxruntime computes for that value in the original model (folding keeps value names), and
 * the model outputs agree on seeded inputs ('exact' unless stated: onnxruntime prepacks a
 * Gemm's constant weight, so a Gemm whose weight becomes an initializer may round its sums
 * differently — by an ulp — though the weight is the same).
 */
async function expectFoldedAsComputed(
  model: Model,
  evaluate: ConstantEvaluator | undefined = runtimeEvaluator,
  tolerance: Tolerance = 'exact',
) {
  const { model: original } = model.clone();
  const feeds = randomFeeds(model, { seed: 3 });
  const summary = await prepareModel(model, { evaluate });
  model.graph.verify();
  const folded = original.graph
    .nodeList()
    .flatMap((n) => n.outputs)
    .filter((v): v is Value => v !== undefined && model.graph.initializers.has(v.name));
  const computed = await runWithIntermediates(original, feeds, folded);
  for (const value of folded) {
    const [want, got] = [computed[value.name]!, model.graph.initializers.get(value.name)!.constValue!];
    const bytes = (data: ArrayBufferView) => Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    expect({ name: value.name, dims: got.dims }).toEqual({ name: value.name, dims: [...want.dims] });
    expect(bytes(got.rawBytes()).equals(bytes(want.data as ArrayBufferView)), value.name).toBe(true);
  }
  expectSameOutputs(await outputsOf(original, feeds), await outputsOf(model, feeds), tolerance);
  return { summary, folded: folded.length };
}

describe('prepareModel: onnxruntime folds what the kernels cannot', () => {
  it('weight normalisation folds into the conv weight, bit for bit; the summary names what onnxruntime computed', async () => {
    const model = weightNormConv();
    const { summary, folded } = await expectFoldedAsComputed(model);
    expect(folded).toBe(1);
    expect(opCounts(model)).toEqual({ Conv: 1 });
    expect(model.graph.nodeList()[0]!.input(1).isInitializer()).toBe(true);
    expect(summary).toEqual({
      lifted: 0,
      subgraphs: 1,
      ops: { Div: 1, Mul: 2, ReduceSum: 1, Sqrt: 1 },
      evaluated: { Div: 1, Mul: 1, ReduceSum: 1, Sqrt: 1 },
      left: [],
    });
    expect(describeFolds(summary)).toEqual([
      'folded 1 constant subgraph (Mul 2, Div 1, ReduceSum 1, Sqrt 1) into initializers; onnxruntime computed Div 1, Mul 1, ReduceSum 1, Sqrt 1',
    ]);
    const again = await prepareModel(model, { evaluate: runtimeEvaluator });
    expect(again).toEqual({ lifted: 0, subgraphs: 0, ops: {}, evaluated: {}, left: [] });
  });

  it('without an evaluator the kernels fold what they can and the rest is reported as not folded', async () => {
    const model = weightNormConv();
    const summary = await prepareModel(model);
    expect(summary.ops).toEqual({ Mul: 1 });
    expect(summary.left).toEqual(['sum (ReduceSum): all inputs are constant but there is no kernel for this op']);
    expect(describeFolds(summary)).toEqual([
      'folded 1 constant subgraph (Mul 1) into initializers',
      'not folded: sum (ReduceSum): all inputs are constant but there is no kernel for this op',
    ]);
  });

  it('an evaluator that fails: nodes are tried one by one, each failure reported, the model still computes the same', async () => {
    const calls: number[] = [];
    const failing: ConstantEvaluator = async (m) => {
      calls.push(m.graph.nodeCount);
      throw new Error('no runtime here');
    };
    const model = weightNormConv();
    const { summary } = await expectFoldedAsComputed(model, failing);
    // One batch of the four unfolded nodes, then the only one whose inputs are all constant.
    expect(calls).toEqual([4, 1]);
    expect(summary.left).toEqual(['sum (ReduceSum): onnxruntime could not evaluate it: no runtime here']);
    expect(opCounts(model)).toMatchObject({ ReduceSum: 1, Sqrt: 1, Conv: 1 });
  });

  it('a ConstantOfShape fill too big to grow the model folds into a conv weight, and stays where it feeds activations', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', [1, 64, 24, 24]);
    const fill = (name: string, dims: number[]) =>
      b.op('ConstantOfShape', [b.ints(`${name}_shape`, dims)], { value: Tensor.float32([1], [0.01]) }, name);
    const y = b.op('Conv', [x, fill('weight', [128, 64, 3, 3])], { pads: [1, 1, 1, 1] }, 'conv');
    b.output(b.op('Add', [y, fill('offset', [1, 128, 24, 24])], {}, 'add'));
    const model = b.model;
    const { summary } = await expectFoldedAsComputed(model);
    expect(summary.ops).toEqual({ ConstantOfShape: 1 });
    expect(summary.left).toEqual([
      "offset (ConstantOfShape): the result has 73728 elements, more than its inputs, and feeds no layer's parameters (limit 65536)",
    ]);
    expect(
      constantOf(
        model.graph
          .nodeList()
          .find((n) => n.opType === 'Conv')!
          .input(1),
      )?.dims,
    ).toEqual([128, 64, 3, 3]);
    expect(opCounts(model)).toEqual({ ConstantOfShape: 1, Conv: 1, Add: 1 });
  });

  it('never evaluates random ops or integer division, nor what reads them', async () => {
    const evaluated: string[] = [];
    const spy: ConstantEvaluator = async (m) => {
      evaluated.push(...m.graph.nodeList().map((n) => n.opType));
      return runtimeEvaluator(m);
    };
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', [2, 3]);
    const noise = b.op('Sqrt', [b.op('RandomUniformLike', [b.initializer('c', floats([2, 3]))], { seed: 1 })]);
    const quotient = b.op('Abs', [
      b.op('Div', [
        b.initializer('n', Tensor.fromArray(DataType.INT32, [3], Int32Array.of(7, -7, 1))),
        b.initializer('d', Tensor.fromArray(DataType.INT32, [3], Int32Array.of(2, 0, 1))),
      ]),
    ]);
    b.output(b.op('Add', [x, noise], {}, 'noisy'));
    b.output(b.op('Identity', [quotient], {}, 'q'));
    const summary = await prepareModel(b.model, { evaluate: spy });
    expect(evaluated).toEqual([]);
    expect(summary.subgraphs).toBe(0);
    expect(opCounts(b.model)).toMatchObject({ RandomUniformLike: 1, Sqrt: 1, Div: 1, Abs: 1 });
  });

  it('a multi-output node (Split) evaluated by onnxruntime: each used output becomes an initializer of its name', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', [2, 3]);
    const [first, second, unused] = b.ops(
      'Split',
      [b.initializer('c', floats([6, 3])), b.ints('sizes', [2, 2, 2])],
      3,
      {
        axis: 0,
      },
    );
    b.output(b.op('Mul', [b.op('Add', [x, first!]), second!], {}, 'y'));
    const { summary, folded } = await expectFoldedAsComputed(b.model);
    expect(folded).toBe(2);
    expect(summary).toMatchObject({ subgraphs: 1, ops: { Split: 1 }, evaluated: { Split: 1 } });
    expect([first!.name, second!.name].every((name) => b.model.graph.initializers.has(name))).toBe(true);
    expect(b.model.graph.initializers.has(unused!.name)).toBe(false);
    expect(opCounts(b.model)).toEqual({ Add: 1, Mul: 1 });
  });

  it('changes nothing, and reports nothing, on the fixtures (initializers only)', async () => {
    for (const [name, build] of Object.entries(FIXTURES)) {
      const model = build();
      const before = Buffer.from(encodeModel(model).bytes);
      const summary = await prepareModel(model, { evaluate: runtimeEvaluator });
      expect({ name, summary }).toEqual({
        name,
        summary: { lifted: 0, subgraphs: 0, ops: {}, evaluated: {}, left: [] },
      });
      expect(Buffer.from(encodeModel(model).bytes).equals(before), name).toBe(true);
      expect(describeFolds(summary)).toEqual([]);
    }
  });

  it('counts subgraphs as connected sets: two fills read by one Mul are one subgraph, an unrelated fill another', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', [1, 2, 5, 5]);
    const fill = (dims: number[], value: number) =>
      b.op('ConstantOfShape', [b.ints('s', dims)], { value: Tensor.float32([1], [value]) });
    const w = b.op('Mul', [fill([3, 2, 3, 3], 0.5), fill([3, 1, 1, 1], 2)]);
    b.output(b.op('Conv', [x, w, fill([3], 0.25)], {}, 'conv'));
    const { summary, folded } = await expectFoldedAsComputed(b.model);
    expect(folded).toBe(2);
    expect(summary).toMatchObject({ subgraphs: 2, ops: { ConstantOfShape: 3, Mul: 1 }, evaluated: {} });
    expect(describeFolds(summary)).toEqual([
      'folded 2 constant subgraphs (ConstantOfShape 3, Mul 1) into initializers',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// The acceptance fixture

const CONV1 = 8;
const CONV2 = 16;
const CONV3 = 16;
const CLASSES = 10;
/** Parameters of the architecture: conv1 weight and bias, conv2 and conv3 weights, Gemm weight and bias. */
const LAYERS = ['conv1', 'conv2', 'conv3', 'logits'];
const PARAMS = CONV1 * 3 * 9 + CONV1 + CONV2 * CONV1 * 9 + CONV3 * CONV2 * 9 + CLASSES * CONV3 + CLASSES;

/**
 * A small CNN whose every weight is computed in the graph:
 * - conv1: W = Transpose(Constant, HWIO → OIHW) · Constant per-filter scale; bias = ConstantOfShape fill;
 * - conv2: W = ConstantOfShape fill · per-filter scale + a Constant pattern broadcast over filters;
 * - conv3: weight normalisation (ReduceSum, Sqrt: onnxruntime);
 * - head: GlobalAveragePool, a Shape → Gather → Unsqueeze → Concat → Reshape flatten, Gemm whose
 *   weight is Transpose(Constant) and bias Slice(Constant).
 */
function computedWeightsNet(): Model {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', [1, 3, 12, 12]);
  const constant = (dims: number[], name: string) => b.op('Constant', [], { value: floats(dims) }, name);
  const perFilter = (n: number, name: string) => b.op('Constant', [], { value: floats([n, 1, 1, 1]) }, name);
  const fill = (dims: number[], value: number, name: string) =>
    b.op('ConstantOfShape', [b.ints(`${name}_shape`, dims)], { value: Tensor.float32([1], [value]) }, name);

  const hwio = constant([3, 3, 3, CONV1], 'w1_hwio');
  const w1 = b.op(
    'Mul',
    [b.op('Transpose', [hwio], { perm: [3, 2, 0, 1] }, 'w1_oihw'), perFilter(CONV1, 's1')],
    {},
    'w1',
  );
  let y = b.op('Relu', [b.op('Conv', [x, w1, fill([CONV1], 0.1, 'b1')], { pads: [1, 1, 1, 1] }, 'conv1')]);

  const pattern = constant([1, CONV1, 3, 3], 'w2_pattern');
  const w2 = b.op(
    'Add',
    [b.op('Mul', [fill([CONV2, CONV1, 3, 3], 0.5, 'w2_fill'), perFilter(CONV2, 's2')]), pattern],
    {},
    'w2',
  );
  y = b.op('Relu', [b.op('Conv', [y, w2], { pads: [1, 1, 1, 1] }, 'conv2')]);

  const v = constant([CONV3, CONV2, 3, 3], 'v3');
  const norm = b.op('Sqrt', [b.op('ReduceSum', [b.op('Mul', [v, v]), b.ints('axes', [1, 2, 3])], { keepdims: 1 })]);
  const w3 = b.op('Mul', [b.op('Div', [v, norm]), perFilter(CONV3, 'g3')], {}, 'w3');
  y = b.op('Relu', [b.op('Conv', [y, w3], { pads: [1, 1, 1, 1] }, 'conv3')]);

  const pooled = b.op('GlobalAveragePool', [y]);
  const batch = b.op('Unsqueeze', [
    b.op('Gather', [b.op('Shape', [x]), b.ints('zero', [0], [])]),
    b.ints('axis0', [0]),
  ]);
  const flat = b.op('Reshape', [pooled, b.op('Concat', [batch, b.ints('rest', [-1])], { axis: 0 })]);
  const fc = b.op('Transpose', [constant([CONV3, CLASSES], 'fc_io')], {}, 'fc_w');
  const bias = b.op(
    'Slice',
    [constant([CLASSES + 2], 'fc_b_wide'), b.ints('b0', [1]), b.ints('b1', [CLASSES + 1])],
    {},
    'fc_b',
  );
  b.output(b.op('Gemm', [flat, fc, bias], { transB: 1 }, 'logits'));
  return b.model;
}

/** Zero, in a copy's consumer weights (every in-channels touch), the columns of removed channels. */
function maskedReference(model: Model, analysis: ChannelAnalysis, removed: ReadonlySet<number>): Model {
  const { model: copy, values } = model.clone();
  for (const touch of analysis.touches) {
    if (touch.role !== 'in-channels') continue;
    const positions = [...touch.elems.keys()].filter((p) => removed.has(analysis.root(touch.elems[p]!)));
    const value = values.get(touch.node.input(touch.inputIndex))!;
    const tensor = value.constValue!;
    const data = tensor.data.slice() as Float32Array;
    const dims = tensor.dims;
    const inner = count(dims.slice(touch.axis + 1));
    for (let outer = 0; outer < count(dims.slice(0, touch.axis)); outer++)
      for (const p of positions)
        data.fill(0, (outer * dims[touch.axis]! + p) * inner, (outer * dims[touch.axis]! + p + 1) * inner);
    copy.graph.setInitializer(value, tensor.withData(dims, data));
  }
  return copy;
}

describe('acceptance: conv weights from ConstantOfShape, Transpose and Mul of constants', () => {
  const file = path.join(tmp, 'computed-weights.onnx');
  saveModel(computedWeightsNet(), file);

  it(`inspect counts its ${PARAMS} parameters, every layer's (unfolded, the layers have none)`, async () => {
    const raw = loadModel(file);
    const layers = (
      params: (l: { name: string; params: number }) => number,
      rows: { name: string; params: number }[],
    ) => Object.fromEntries(rows.filter((l) => LAYERS.includes(l.name)).map((l) => [l.name, params(l)]));
    const unfolded = computeCost(raw, inferShapes(raw)).layers;
    expect(layers((l) => l.params, unfolded)).toEqual({ conv1: 0, conv2: 0, conv3: 0, logits: 0 });
    const report = await inspectModel(file);
    expect(report.totals.params).toBe(PARAMS);
    expect(layers((l) => l.params, report.layers)).toEqual({
      conv1: CONV1 * 3 * 9 + CONV1,
      conv2: CONV2 * CONV1 * 9,
      conv3: CONV3 * CONV2 * 9,
      logits: CLASSES * CONV3 + CLASSES,
    });
    expect(report.nodes).toBe(raw.graph.nodeCount);
    expect(report.folded.lifted).toBe(8);
    expect(report.folded.evaluated).toEqual({ Div: 1, Mul: 1, ReduceSum: 1, Sqrt: 1 });
    // conv1 W and bias, conv2 W, conv3 W, the flatten target, the Gemm weight and bias.
    expect(report.folded.subgraphs).toBe(7);
    expect(report.folded.left).toEqual([]);
  });

  it('folding is exact, the analysis finds prunable groups, and the pruned model equals the masked reference exactly', async () => {
    const model = loadModel(file);
    // conv1 W and bias, conv2 W, conv3 W, the flatten target, the Gemm weight and bias; the Gemm rounds by an ulp.
    expect((await expectFoldedAsComputed(model, runtimeEvaluator, { rtol: 1e-6 })).folded).toBe(7);
    expect(opCounts(model)).toEqual({ Conv: 3, Relu: 3, GlobalAveragePool: 1, Reshape: 1, Gemm: 1 });
    const feeds = randomFeeds(model, { seed: 5 });

    const shapes = inferShapes(model);
    const analysis = analyzeChannels(model, shapes);
    const prunable = analysis.groups.filter((g) => g.prunable);
    expect(prunable.map((g) => g.producers[0])).toEqual(["Conv 'conv1'", "Conv 'conv2'", "Conv 'conv3'"]);
    const cost = computeCost(model, shapes);
    const plan = planPruning(
      analysis,
      cost,
      channelImportance(analysis, { criterion: 'l1' }),
      { keepMacs: 0.5, roundTo: 1 },
      'l1',
    );
    const removed = removalSet(plan, analysis);
    expect(removed.size).toBeGreaterThan(0);

    const reference = await outputsOf(maskedReference(model, analysis, removed), feeds);
    applyChannelMap(model, analysis, removed);
    runPasses(model, TIDY, {}, { fixpoint: true });
    model.graph.verify();
    expectSameOutputs(reference, await outputsOf(model, feeds), 'exact');
    expect(computeCost(model, inferShapes(model)).totals.macs).toBe(plan.predicted.macsAfter);
  });

  it('inspect --groups and prune (CLI) say what was folded and prune the computed weights', async () => {
    const text = await regroup('inspect', file);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      /^folded 7 constant subgraphs \(.*ConstantOfShape 2.*\) into initializers; onnxruntime computed Div 1, Mul 1, ReduceSum 1, Sqrt 1; lifted 8 Constant nodes into initializers$/m,
    );
    expect(text.stdout).toContain(`(${PARAMS})`);

    const groups = JSON.parse((await regroup('inspect', file, '--groups', '--json')).stdout);
    expect(groups.folded.subgraphs).toBe(7);
    expect(groups.groups.filter((g: { prunable: boolean }) => g.prunable).length).toBeGreaterThanOrEqual(2);

    const out = path.join(tmp, 'computed-weights-half.onnx');
    const r = await regroup('prune', file, '-o', out, '--keep-macs', '0.5', '--round-to', '1', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.changed).toBe(true);
    expect(report.folded.subgraphs).toBe(7);
    expect(report.before.params).toBe(PARAMS);
    expect(report.groups.pruned).toBeGreaterThan(0);
    expect(report.after.params).toBeLessThan(PARAMS);
    const pruned = loadModel(out);
    expect(opCounts(pruned)).toEqual({ Conv: 3, Relu: 3, GlobalAveragePool: 1, Reshape: 1, Gemm: 1 });
  });
});

// ---------------------------------------------------------------------------------------------
// A "light" model made from a real one

/** Every initializer of more than `threshold` elements becomes ConstantOfShape(its dims) filled with 0.5. */
function lighten(model: Model, threshold = 128): number {
  let replaced = 0;
  const graph = model.graph;
  for (const value of [...graph.initializers.values()]) {
    const tensor = value.constValue!;
    if (tensor.size <= threshold || tensor.dtype !== DataType.FLOAT || value.isGraphInput()) continue;
    const shape = graph.addInitializer(`${value.name}__SHAPE`, Tensor.int64([tensor.dims.length], tensor.dims), {
      fresh: true,
    });
    const fill = graph.createNode('ConstantOfShape', [shape], {
      outputs: 1,
      attributes: [attr.tensor('value', Tensor.float32([1], [0.5]))],
    });
    graph.insertBefore(graph.nodeList()[0]!, fill);
    value.replaceAllUsesWith(fill.output(0));
    graph.removeInitializer(value);
    replaced++;
  }
  return replaced;
}

describe.skipIf(!haveShared)('a light-style ResNet-18 (weights as ConstantOfShape fills)', () => {
  it('inspect counts the same parameters and finds the same channel groups as on the original', async () => {
    const original = sharedModel('resnet18');
    const light = loadModel(original);
    const replaced = lighten(light);
    const lightFile = path.join(tmp, 'light-resnet18.onnx');
    saveModel(light, lightFile);
    const raw = loadModel(lightFile);
    const unfolded = computeCost(raw, inferShapes(raw)).totals.params;
    const [before, after] = [await inspectModel(original), await inspectModel(lightFile)];
    expect(replaced).toBeGreaterThan(20);
    expect(unfolded).toBeLessThan(before.totals.params / 100);
    expect(after.totals).toEqual(before.totals);
    expect(after.folded).toMatchObject({ subgraphs: replaced, ops: { ConstantOfShape: replaced }, left: [] });
    const [groupsBefore, groupsAfter] = [await inspectGroups(original), await inspectGroups(lightFile)];
    expect(groupsAfter.groups.map((g) => [g.channels, g.prunable])).toEqual(
      groupsBefore.groups.map((g) => [g.channels, g.prunable]),
    );
    console.log(
      `[light resnet18] ${replaced} initializers → ConstantOfShape; params unfolded ${unfolded}, folded ${after.totals.params} (original ${before.totals.params}); ${groupsAfter.groups.filter((g) => g.prunable).length} prunable groups`,
    );
  });
});
