/**
 * Shape inference checked against onnxruntime: every node output whose inferred shape is
 * fully known must come out of ORT with exactly those dims (symbols bound to the batch fed)
 * and that element type. Run over every real fixture, where every output must be inferred,
 * and over hand-built models that exercise the opset-dependent and padding-dependent rules.
 */
import { describe, expect, it } from 'vitest';
import { inferShapes, type ShapeResult } from '../../compiler/analysis/shape-inference.js';
import {
  addDim,
  broadcastShapes,
  divDim,
  evaluateDim,
  isFullyKnown,
  mulDim,
  productOf,
  sameDim,
  subDim,
  type Dim,
} from '../../compiler/analysis/shape-values.js';
import { floatsAttr, GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { randomFeeds, type InputOptions } from '../../runtime/inputs.js';
import { ortType, runWithIntermediates } from '../../runtime/session.js';
import { allSharedModels, haveShared, sharedModel, SHARED_FIXTURES } from '../helpers/shared.js';

interface Check {
  /** Node outputs whose shape was fully inferred and matched ORT. */
  checked: number;
  /** All node outputs. */
  total: number;
}

/** Node outputs of the main graph. */
function nodeOutputs(model: Model): Value[] {
  return model.graph.nodeList().flatMap((node) => node.outputs.filter((v): v is Value => v !== undefined));
}

/**
 * Run the model with every node output exposed and compare each fully inferred shape and
 * dtype with what ORT produced. Symbols are bound by `dims`, else to the batch.
 */
async function checkAgainstOrt(model: Model, shapes: ShapeResult, feed: InputOptions = {}): Promise<Check> {
  const batch = feed.batch ?? 1;
  const bind = (symbol: string) => feed.dims?.[symbol] ?? batch;
  const outputs = nodeOutputs(model);
  const results = await runWithIntermediates(model, randomFeeds(model, { seed: 7, ...feed }), outputs);
  const mismatches: string[] = [];
  let checked = 0;
  for (const value of outputs) {
    const type = shapes.typeOf(value);
    if (!type || !isFullyKnown(type.shape)) continue;
    const actual = results[value.name];
    if (!actual) {
      mismatches.push(`${value.name}: ORT did not return it`);
      continue;
    }
    const expected = type.shape.map((d) => evaluateDim(d, bind));
    if (JSON.stringify([...actual.dims]) !== JSON.stringify(expected))
      mismatches.push(
        `${value.name} (${value.producer}): inferred [${type.shape}] = [${expected}], ORT [${actual.dims}]`,
      );
    else if (actual.type !== ortType(type.dtype))
      mismatches.push(`${value.name} (${value.producer}): inferred ${ortType(type.dtype)}, ORT ${actual.type}`);
    else checked++;
  }
  expect(mismatches).toEqual([]);
  return { checked, total: outputs.length };
}

/** Inputs with symbols other than a leading batch need explicit sizes. */
const FIXTURE_INPUTS: Record<string, { inputShapes: Record<string, Dim[]>; feed: InputOptions }> = {
  'ppocr-textdir-cls-mobilenetv3/ch_ppocr_mobile_v2.0_cls_infer.onnx': {
    inputShapes: { x: ['N', 3, 48, 192] },
    feed: { shapes: { x: [1, 3, 48, 192] } },
  },
};

describe.skipIf(!haveShared)('shape inference on the shared fixtures', () => {
  const root = `${SHARED_FIXTURES}/models/`;
  for (const file of allSharedModels()) {
    const key = file.slice(root.length);
    it(`${key}: every output inferred, equal to onnxruntime's`, async () => {
      const model = loadModel(file);
      const special = FIXTURE_INPUTS[key];
      const shapes = inferShapes(model, { inputShapes: special?.inputShapes });
      expect(shapes.issues.map((i) => i.message)).toEqual([]);
      const { checked, total } = await checkAgainstOrt(model, shapes, special?.feed);
      expect(checked).toBe(total);
      for (const output of model.graph.outputs) {
        const declared = output.type?.shape;
        if (declared && !special) expect(shapes.typeOf(output)?.shape).toEqual(declared);
      }
    });
  }

  it('keeps the torchvision batch symbolic through the flatten (ResNet-18: [batch, 512] into Gemm)', () => {
    const model = loadModel(sharedModel('resnet18'));
    const shapes = inferShapes(model);
    const flatten = model.graph.nodeList().find((n) => n.opType === 'Flatten')!;
    expect(shapes.typeOf(flatten.output())?.shape).toEqual(['batch', 512]);
  });

  it("folds ResNet-20's Shape→Gather→Unsqueeze→Concat→Reshape chain, symbolic batch included", () => {
    const model = loadModel(sharedModel('resnet20'));
    const shapes = inferShapes(model, { inputShapes: { 'input.1': ['N', 3, 32, 32] } });
    const reshape = model.graph.nodeList().find((n) => n.opType === 'Reshape')!;
    expect(shapes.values.get(reshape.input(1))).toEqual(['N', -1]);
    expect(shapes.typeOf(reshape.output())?.shape).toEqual(['N', 64]);
    expect(shapes.typeOf(model.graph.outputs[0]!)?.shape).toEqual(['N', 10]);
  });

  it("solves ShuffleNet's channel-shuffle Reshape(-1, 2, 24, 28, 28) against the symbolic batch", () => {
    const model = loadModel(sharedModel('shufflenetV2'));
    const shapes = inferShapes(model);
    const reshape = model.graph.nodeList().find((n) => n.opType === 'Reshape')!;
    expect(shapes.typeOf(reshape.output())?.shape).toEqual(['batch', 2, 24, 28, 28]);
  });

  it('names an input whose declared dims are unknown once, at its first consumer (PaddleOCR: [-1, 3, -1, -1])', () => {
    const model = loadModel(sharedModel('ppocr'));
    const shapes = inferShapes(model);
    expect(shapes.typeOf(model.graph.inputs[0]!)?.shape).toEqual([null, 3, null, null]);
    expect(shapes.issues).toHaveLength(1);
    expect(shapes.issues[0]!.node.opType).toBe('Conv');
    expect(shapes.issues[0]!.message).toContain("graph input 'x' [?,3,?,?] has unknown dims");
    const softmax = model.graph.nodeList().find((n) => n.opType === 'Softmax')!;
    expect(shapes.typeOf(softmax.output())?.shape).toEqual([null, 2]);
  });

  it('uses caller-given input shapes over the declared ones', () => {
    const model = loadModel(sharedModel('resnet18'));
    const shapes = inferShapes(model, { inputShapes: { input: [4, 3, 160, 160] } });
    const pool = model.graph.nodeList().find((n) => n.opType === 'MaxPool')!;
    expect(shapes.typeOf(pool.output())?.shape).toEqual([4, 64, 40, 40]);
    expect(shapes.typeOf(model.graph.outputs[0]!)?.shape).toEqual([4, 1000]);
  });
});

// ---------------------------------------------------------------------------------------------
// Hand-built models

interface Case {
  name: string;
  build(): GraphBuilder;
  /** Batch fed for 'N' (default 2, so a batch mix-up shows). */
  batch?: number;
}

/** Build a model, expose every value, compare with ORT; every output must be fully inferred. */
async function checkCase(c: Case): Promise<ShapeResult> {
  const b = c.build();
  const shapes = inferShapes(b.model);
  expect(shapes.issues.map((i) => i.message)).toEqual([]);
  const { checked, total } = await checkAgainstOrt(b.model, shapes, { batch: c.batch ?? 2 });
  expect(checked).toBe(total);
  return shapes;
}

const f32 = (b: GraphBuilder, name: string, values: number[]) =>
  b.initializer(name, Tensor.float32([values.length], values));
const i64 = (b: GraphBuilder, name: string, values: number[]) => b.ints(name, values);
const scalar = (b: GraphBuilder, name: string, value: number) => b.initializer(name, Tensor.int64([], [value]));

const CASES: Case[] = [
  {
    name: 'Conv auto_pad SAME_UPPER / SAME_LOWER / VALID with strides, dilations and groups',
    build() {
      const b = new GraphBuilder({ opset: 17 });
      const x = b.input('x', ['N', 4, 17, 14]);
      const w = b.weight('w', [8, 2, 3, 3]);
      for (const autoPad of ['SAME_UPPER', 'SAME_LOWER', 'VALID']) {
        b.output(b.op('Conv', [x, w], { auto_pad: autoPad, strides: [2, 3], group: 2 }));
      }
      b.output(
        b.op('Conv', [x, w, f32(b, 'bias', [0, 1, 2, 3, 4, 5, 6, 7])], {
          pads: [2, 0, 1, 3],
          dilations: [2, 3],
          strides: [3, 2],
          group: 2,
        }),
      );
      b.output(b.op('Conv', [x, b.weight('w1', [5, 4, 1, 1])], {}));
      return b;
    },
  },
  {
    name: 'MaxPool ceil_mode (a window that would start in the padding is dropped), dilations, Indices; AveragePool; LpPool',
    build() {
      const b = new GraphBuilder({ opset: 18 });
      const x = b.input('x', ['N', 3, 9, 10]);
      b.output(b.op('MaxPool', [x], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }));
      b.output(b.op('MaxPool', [x], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1 }));
      b.output(b.op('MaxPool', [x], { kernel_shape: [2, 3], strides: [4, 4], pads: [1, 1, 1, 1], ceil_mode: 1 }));
      const [pooled, indices] = b.ops('MaxPool', [x], 2, { kernel_shape: [3, 2], dilations: [2, 1], strides: [1, 2] });
      b.output(pooled!);
      b.output(indices!);
      b.output(
        b.op('AveragePool', [x], {
          kernel_shape: [3, 3],
          strides: [2, 2],
          pads: [1, 1, 1, 1],
          ceil_mode: 1,
          count_include_pad: 0,
        }),
      );
      b.output(b.op('AveragePool', [x], { kernel_shape: [2, 2], auto_pad: 'SAME_UPPER', strides: [2, 3] }));
      b.output(b.op('LpPool', [x], { kernel_shape: [3, 3], strides: [2, 2] }));
      b.output(b.op('GlobalMaxPool', [x]));
      return b;
    },
  },
  {
    name: 'ConvTranspose: strides, pads, output_padding, dilations, group, output_shape, SAME_UPPER',
    build() {
      const b = new GraphBuilder({ opset: 17 });
      const x = b.input('x', ['N', 4, 5, 7]);
      const w = b.weight('w', [4, 3, 3, 3]);
      b.output(b.op('ConvTranspose', [x, w], { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 0] }));
      b.output(b.op('ConvTranspose', [x, w], { strides: [3, 2], dilations: [2, 1], group: 2 }));
      b.output(b.op('ConvTranspose', [x, w], { strides: [2, 2], output_shape: [10, 15] }));
      b.output(b.op('ConvTranspose', [x, w], { strides: [2, 2], auto_pad: 'SAME_UPPER' }));
      b.output(b.op('ConvTranspose', [x, w, f32(b, 'bias', [1, 2, 3])], {}));
      return b;
    },
  },
  {
    name: 'symbolic flatten chain Shape→Gather→Unsqueeze→Concat→Reshape, Flatten, Gemm, MatMul',
    build() {
      const b = new GraphBuilder({ opset: 13 });
      const x = b.input('x', ['N', 8, 3, 3]);
      const size = b.op('Gather', [b.op('Shape', [x]), scalar(b, 'zero', 0)], { axis: 0 });
      const target = b.op('Concat', [b.op('Unsqueeze', [size, i64(b, 'axis0', [0])]), i64(b, 'minus1', [-1])], {
        axis: 0,
      });
      const flat = b.op('Reshape', [x, target]);
      b.output(b.op('Gemm', [flat, b.weight('fc', [10, 72]), f32(b, 'fcb', Array(10).fill(0))], { transB: 1 }));
      b.output(b.op('Flatten', [x], { axis: 2 }));
      b.output(b.op('Flatten', [x], { axis: 0 }));
      b.output(b.op('MatMul', [x, b.weight('m', [3, 5])]));
      b.output(b.op('MatMul', [b.weight('v', [3]), x]));
      b.output(b.op('MatMul', [x, b.weight('v2', [3])]));
      b.output(b.op('Gemm', [b.weight('a', [6, 4]), b.weight('bm', [6, 5])], { transA: 1 }));
      return b;
    },
  },
  {
    name: 'Split: attribute (opset 11), input (opset 13), num_outputs with a short last chunk (opset 18)',
    build() {
      const b = new GraphBuilder({ opset: 18 });
      const x = b.input('x', ['N', 10, 4]);
      for (const v of b.ops('Split', [x, i64(b, 'sizes', [3, 7])], 2, { axis: 1 })) b.output(v);
      for (const v of b.ops('Split', [x], 3, { axis: 1, num_outputs: 3 })) b.output(v);
      for (const v of b.ops('Split', [x], 2, { axis: -1, num_outputs: 2 })) b.output(v);
      return b;
    },
  },
  {
    name: 'Split with the split attribute and equal parts (opset 11)',
    build() {
      const b = new GraphBuilder({ opset: 11 });
      const x = b.input('x', ['N', 12, 4]);
      for (const v of b.ops('Split', [x], 3, { axis: 1, split: [2, 4, 6] })) b.output(v);
      for (const v of b.ops('Split', [x], 2, { axis: 2 })) b.output(v);
      return b;
    },
  },
  {
    name: 'Slice with inputs (opset 13): negative starts, INT64_MAX ends, negative steps, omitted axes',
    build() {
      const b = new GraphBuilder({ opset: 13 });
      const x = b.input('x', ['N', 10, 9]);
      const max = b.initializer('max', Tensor.int64([1], [9223372036854775807n]));
      const min = b.initializer('min', Tensor.int64([1], [-9223372036854775808n]));
      b.output(b.op('Slice', [x, i64(b, 's1', [-3]), max, i64(b, 'a1', [1])]));
      b.output(
        b.op('Slice', [x, i64(b, 's2', [1, 8]), i64(b, 'e2', [100, 0]), i64(b, 'a2', [1, 2]), i64(b, 't2', [3, -2])]),
      );
      b.output(b.op('Slice', [x, i64(b, 's3', [-1]), min, i64(b, 'a3', [-1]), i64(b, 't3', [-1])]));
      b.output(b.op('Slice', [x, i64(b, 's4', [0]), max, i64(b, 'a4', [0])]));
      b.output(
        b.op('Slice', [
          x,
          i64(b, 's5', [0, 0, 20]),
          b.initializer('e5', Tensor.int64([3], [9223372036854775807n, 5n, 30n])),
        ]),
      );
      return b;
    },
  },
  {
    name: 'Slice, Squeeze, Unsqueeze, Pad, ReduceMean with attributes (opset 9)',
    build() {
      const b = new GraphBuilder({ opset: 9 });
      const x = b.input('x', [2, 1, 7, 6]);
      b.output(b.op('Slice', [x], { starts: [1, -4], ends: [5, 1000], axes: [2, 3] }));
      b.output(b.op('Squeeze', [x], { axes: [1] }));
      b.output(b.op('Squeeze', [x]));
      b.output(b.op('Unsqueeze', [x], { axes: [0, 5] }));
      b.output(b.op('Pad', [x], { pads: [0, 1, 2, 0, 0, 2, 1, 3] }));
      b.output(b.op('ReduceMean', [x], { axes: [2, 3], keepdims: 0 }));
      b.output(b.op('Upsample', [x, f32(b, 'scales', [1, 1, 2, 1.5])]));
      return b;
    },
  },
  {
    name: 'Squeeze/Unsqueeze/Pad/Reduce* with axes inputs (opsets 13 and 18)',
    build() {
      const b = new GraphBuilder({ opset: 18 });
      const x = b.input('x', ['N', 1, 5, 4]);
      b.output(b.op('Squeeze', [x, i64(b, 'sq', [-3])]));
      b.output(b.op('Unsqueeze', [x, i64(b, 'un', [-1, 1])]));
      b.output(b.op('Pad', [x, i64(b, 'pads', [0, 0, 1, 2, 0, 0, 3, 0])]));
      b.output(b.op('Pad', [x, i64(b, 'pads2', [1, 2, 3, 4]), undefined, i64(b, 'padAxes', [2, -1])]));
      b.output(b.op('ReduceMean', [x, i64(b, 'ax', [2, 3])], { keepdims: 1 }));
      b.output(b.op('ReduceSum', [x, i64(b, 'ax2', [-1])], { keepdims: 0 }));
      b.output(b.op('ReduceMax', [x], { keepdims: 0 }));
      b.output(b.op('ReduceL2', [x, i64(b, 'none', [])], { noop_with_empty_axes: 1 }));
      b.output(b.op('ReduceProd', [x, i64(b, 'ax3', [0, 2])]));
      b.output(b.op('ArgMax', [x], { axis: 2, keepdims: 0 }));
      b.output(b.op('ArgMax', [x], { axis: -1 }));
      return b;
    },
  },
  {
    name: 'Resize with scales and sizes (opset 13), axes and keep_aspect_ratio_policy (opset 18)',
    build() {
      const b = new GraphBuilder({ opset: 18 });
      const x = b.input('x', ['N', 3, 7, 10]);
      const empty = b.initializer('roi', Tensor.float32([0], []));
      b.output(b.op('Resize', [x, empty, f32(b, 'scales', [1, 1, 2, 0.5])], { mode: 'nearest' }));
      b.output(b.op('Resize', [x, empty, f32(b, 'scales2', [1, 1, 1.7, 2.3])], { mode: 'linear' }));
      b.output(b.op('Resize', [x, undefined, undefined, i64(b, 'sizes', [2, 3, 5, 11])], { mode: 'nearest' }, 'sizes'));
      b.output(b.op('Resize', [x, undefined, f32(b, 'scales3', [3, 0.5])], { axes: [2, 3] }));
      b.output(
        b.op('Resize', [x, undefined, undefined, i64(b, 'sizes2', [14, 14])], {
          axes: [2, 3],
          keep_aspect_ratio_policy: 'not_larger',
        }),
      );
      b.output(
        b.op('Resize', [x, undefined, undefined, i64(b, 'sizes3', [14, 14])], {
          axes: [2, 3],
          keep_aspect_ratio_policy: 'not_smaller',
        }),
      );
      return b;
    },
  },
  {
    name: 'Resize with scales (opset 10)',
    build() {
      const b = new GraphBuilder({ opset: 10 });
      const x = b.input('x', [1, 2, 5, 3]);
      b.output(b.op('Resize', [x, f32(b, 'scales', [1, 1, 2.5, 2])]));
      return b;
    },
    batch: 1,
  },
  {
    name: 'Upsample with attribute scales (opset 8), Dropout mask of the input type, Sum/Max',
    build() {
      const b = new GraphBuilder({ opset: 8 });
      const x = b.input('x', [1, 2, 3, 3]);
      b.output(b.op('Upsample', [x], { scales: floatsAttr([1, 1, 2, 3]), mode: 'nearest' }));
      for (const v of b.ops('Dropout', [x], 2)) b.output(v);
      b.output(b.op('Sum', [x, b.weight('c', [3, 1]), b.weight('d', [2, 1, 1])]));
      b.output(b.op('Max', [x, b.weight('e', [3])]));
      return b;
    },
    batch: 1,
  },
  {
    name: 'broadcasting, comparisons, Where, Cast, Expand, Tile, Transpose, Gather, Concat',
    build() {
      const b = new GraphBuilder({ opset: 17 });
      const x = b.input('x', ['N', 3, 1, 5]);
      const y = b.input('y', [4, 1]);
      const sum = b.op('Add', [x, y]);
      b.output(sum);
      b.output(b.op('Pow', [y, b.weight('p', [1])]));
      const mask = b.op('Greater', [sum, b.weight('t', [5])]);
      b.output(mask);
      b.output(b.op('Where', [mask, sum, b.weight('z', [1, 1, 1])]));
      b.output(b.op('Cast', [mask], { to: DataType.INT32 }));
      b.output(b.op('Not', [mask]));
      b.output(b.op('Expand', [y, i64(b, 'shape', [2, 1, 3])]));
      b.output(b.op('Tile', [x, i64(b, 'reps', [1, 2, 3, 1])]));
      b.output(b.op('Transpose', [x], { perm: [0, 3, 1, 2] }));
      b.output(b.op('Transpose', [y]));
      b.output(b.op('Gather', [x, i64(b, 'idx', [4, 0, 1])], { axis: 3 }));
      b.output(b.op('Gather', [x, scalar(b, 'one', 1)], { axis: 1 }));
      b.output(b.op('Concat', [x, x, b.op('Relu', [x])], { axis: -3 }));
      return b;
    },
  },
  {
    name: 'shape values: Shape(start/end), Size, Range, ConstantOfShape, arithmetic, Equal/Where, ReduceProd, Slice of a shape',
    build() {
      const b = new GraphBuilder({ opset: 17 });
      const x = b.input('x', ['N', 6, 4, 2]);
      const tail = b.op('Shape', [x], { start: -2 });
      b.output(tail);
      const hw = b.op('ReduceProd', [tail], { keepdims: 1 });
      const dims = b.op('Shape', [x]);
      const batch = b.op('Slice', [dims, i64(b, 's', [0]), i64(b, 'e', [1])]);
      const channels = b.op('Slice', [dims, i64(b, 's1', [1]), i64(b, 'e1', [2])]);
      const doubled = b.op('Mul', [channels, i64(b, 'two', [2])]);
      const halved = b.op('Div', [hw, i64(b, 'two2', [2])]);
      b.output(b.op('Reshape', [x, b.op('Concat', [batch, doubled, halved, i64(b, 'm1', [-1])], { axis: 0 })]));
      const zeroed = b.op('Where', [b.op('Equal', [dims, i64(b, 'six', [6])]), i64(b, 'zero', [0]), dims]);
      b.output(b.op('Reshape', [x, zeroed]));
      b.output(b.op('Size', [x]));
      const count = b.op('Gather', [dims, scalar(b, 'i1', 1)]);
      const r = b.op('Range', [scalar(b, 'r0', 0), count, scalar(b, 'r1', 1)]);
      b.output(r);
      b.output(b.op('Range', [scalar(b, 'r2', 10), scalar(b, 'r3', 1), scalar(b, 'r4', -3)]));
      b.output(
        b.op('ConstantOfShape', [b.op('Concat', [batch, i64(b, 'three', [3])], { axis: 0 })], {
          value: Tensor.int64([1], [5]),
        }),
      );
      b.output(b.op('Sub', [b.op('Cast', [tail], { to: DataType.FLOAT }), b.weight('f', [1])]));
      return b;
    },
  },
  {
    name: 'Resize to sizes computed from the input shape through float arithmetic (older PyTorch exports)',
    build() {
      const b = new GraphBuilder({ opset: 13 });
      const x = b.input('x', ['N', 3, 5, 7]);
      const dims = b.op('Shape', [x]);
      const spatial = b.op('Cast', [b.op('Slice', [dims, i64(b, 's', [2]), i64(b, 'e', [4])])], { to: DataType.FLOAT });
      const scaled = b.op('Floor', [b.op('Mul', [spatial, b.initializer('k', Tensor.float32([], [1.5]))])]);
      const sizes = b.op(
        'Concat',
        [b.op('Slice', [dims, i64(b, 's0', [0]), i64(b, 'e0', [2])]), b.op('Cast', [scaled], { to: DataType.INT64 })],
        { axis: 0 },
      );
      b.output(
        b.op(
          'Resize',
          [x, b.initializer('roi', Tensor.float32([0], [])), b.initializer('scales', Tensor.float32([0], [])), sizes],
          { mode: 'nearest' },
        ),
      );
      return b;
    },
  },
  {
    name: 'normalizations, activations, Softmax, DepthToSpace, TopK, LayerNormalization statistics',
    build() {
      const b = new GraphBuilder({ opset: 18 });
      const x = b.input('x', ['N', 8, 3, 3]);
      b.output(
        b.op('BatchNormalization', [
          x,
          b.weight('g', [8]),
          b.weight('bb', [8]),
          b.weight('m', [8]),
          b.constant('v', [8], 1),
        ]),
      );
      b.output(b.op('InstanceNormalization', [x, b.weight('ig', [8]), b.weight('ib', [8])]));
      for (const v of b.ops('LayerNormalization', [x, b.weight('lg', [3, 3])], 3, { axis: 2 })) b.output(v);
      for (const op of [
        'HardSwish',
        'Mish',
        'Softplus',
        'Erf',
        'Elu',
        'Selu',
        'HardSigmoid',
        'Sigmoid',
        'Tanh',
        'Abs',
        'Neg',
        'Floor',
        'Sign',
      ])
        b.output(b.op(op, [x]));
      b.output(b.op('LeakyRelu', [x], { alpha: 0.2 }));
      b.output(b.op('PRelu', [x, b.weight('slope', [8, 1, 1])]));
      b.output(
        b.op('Clip', [x, b.initializer('lo', Tensor.float32([], [0])), b.initializer('hi', Tensor.float32([], [6]))]),
      );
      b.output(b.op('Softmax', [x], { axis: 1 }));
      b.output(b.op('LogSoftmax', [x], { axis: -1 }));
      b.output(b.op('LRN', [x], { size: 3 }));
      b.output(b.op('DepthToSpace', [x], { blocksize: 2 }));
      b.output(b.op('SpaceToDepth', [b.op('Pad', [x, i64(b, 'p', [0, 0, 0, 0, 0, 0, 1, 1])])], { blocksize: 2 }));
      for (const v of b.ops('TopK', [x, i64(b, 'k', [2])], 2, { axis: 1 })) b.output(v);
      b.output(b.op('GlobalAveragePool', [x]));
      return b;
    },
  },
  {
    name: 'QuantizeLinear, DequantizeLinear, QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger',
    build() {
      const b = new GraphBuilder({ opset: 13 });
      const x = b.input('x', [1, 4, 6, 6]);
      const scale = b.initializer('s', Tensor.float32([], [0.05]));
      const zp = b.initializer('zp', Tensor.fromArray(DataType.UINT8, [], Uint8Array.of(128)));
      const q = b.op('QuantizeLinear', [x, scale, zp]);
      b.output(q);
      b.output(b.op('DequantizeLinear', [q, scale, zp]));
      const w = b.initializer(
        'w',
        Tensor.fromArray(
          DataType.UINT8,
          [6, 4, 3, 3],
          Uint8Array.from({ length: 216 }, (_, k) => (k * 37) % 256),
        ),
      );
      const wzp = b.initializer('wzp', Tensor.fromArray(DataType.UINT8, [], Uint8Array.of(120)));
      b.output(b.op('QLinearConv', [q, scale, zp, w, scale, wzp, scale, zp], { pads: [1, 1, 1, 1], strides: [2, 2] }));
      b.output(b.op('ConvInteger', [q, w, zp, wzp]));
      const m = b.initializer(
        'mm',
        Tensor.fromArray(
          DataType.UINT8,
          [6, 5],
          Uint8Array.from({ length: 30 }, (_, k) => k),
        ),
      );
      b.output(b.op('QLinearMatMul', [q, scale, zp, m, scale, wzp, scale, zp]));
      b.output(b.op('MatMulInteger', [q, m, zp, wzp]));
      return b;
    },
    batch: 1,
  },
];

function caseNamed(prefix: string): Case {
  const found = CASES.find((c) => c.name.startsWith(prefix));
  if (!found) throw new Error(`no case named '${prefix}…'`);
  return found;
}

describe('shape inference on hand-built models, checked against onnxruntime', () => {
  for (const c of CASES) it(c.name, () => checkCase(c).then(() => undefined));

  it('keeps the symbolic batch through the hand-built flatten chain', async () => {
    const shapes = await checkCase(caseNamed('symbolic flatten chain'));
    const gemm = [...shapes.types.keys()].find(
      (v) => v.producer?.opType === 'Gemm' && v.producer.inputs[0]?.producer?.opType === 'Reshape',
    )!;
    expect(shapes.typeOf(gemm)?.shape).toEqual(['N', 10]);
  });

  it('folds shape arithmetic to values, symbols included', async () => {
    const shapes = await checkCase(caseNamed('shape values'));
    const byOp = (op: string) =>
      [...shapes.values.entries()].filter(([v]) => v.producer?.opType === op).map(([, e]) => e);
    expect(byOp('Shape')).toContainEqual([4, 2]);
    expect(byOp('Shape')).toContainEqual(['N', 6, 4, 2]);
    expect(byOp('Concat')).toContainEqual(['N', 12, 4, -1]);
    // N = 6 is unknown, so the first element is; Reshape still solves it from the element count.
    expect(byOp('Where')).toContainEqual([null, 0, 4, 2]);
    const reshapes = [...shapes.types.entries()]
      .filter(([v]) => v.producer?.opType === 'Reshape')
      .map(([, t]) => t.shape);
    expect(reshapes).toEqual([
      ['N', 12, 4, 1],
      ['N', 6, 4, 2],
    ]);
    expect(byOp('Size')).toContainEqual(['48*N']);
    expect(byOp('Range')).toContainEqual([0, 1, 2, 3, 4, 5]);
    expect(byOp('Range')).toContainEqual([10, 7, 4]);
  });
});

describe('what inference cannot know', () => {
  it('leaves outputs of an unknown op unknown, names it once, and never throws', () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', ['N', 3, 8, 8]);
    const custom = b.node('FancyOp', [x], {}, { domain: 'com.example', name: 'fancy' }).output();
    const after = b.op('Relu', [b.op('Conv', [custom, b.weight('w', [4, 3, 3, 3])])]);
    b.output(after);
    const shapes = inferShapes(b.model);
    expect(shapes.typeOf(custom)).toBeUndefined();
    expect(shapes.typeOf(after)).toBeUndefined();
    expect(shapes.issues).toHaveLength(1);
    expect(shapes.issues[0]!.node.name).toBe('fancy');
    expect(shapes.issues[0]!.message).toContain('com.example.FancyOp');
  });

  it('marks If outputs unknown without looking inside', () => {
    const b = new GraphBuilder({ opset: 17 });
    const cond = b.input('cond', [], DataType.BOOL);
    const branch = new GraphBuilder({ opset: 17 });
    branch.output(branch.op('Constant', [], { value: Tensor.float32([2], [1, 2]) }));
    const out = b.op('If', [cond], { then_branch: branch.graph, else_branch: branch.graph }, 'choose');
    b.output(b.op('Relu', [out]));
    const shapes = inferShapes(b.model);
    expect(shapes.typeOf(out)).toBeUndefined();
    expect(shapes.issues.map((i) => i.node.name)).toEqual(['choose']);
  });

  it('records an issue for a Reshape whose target is computed at run time, keeping the rank', () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', [2, 6]);
    const target = b.op('Cast', [b.op('Round', [b.input('t', [3])])], { to: DataType.INT64 });
    const y = b.op('Reshape', [x, target], {}, 'reshape');
    b.output(y);
    const shapes = inferShapes(b.model);
    expect(shapes.typeOf(y)?.shape).toEqual([null, null, null]);
    expect(shapes.issues.map((i) => i.node.name)).toEqual(['reshape']);
  });

  it('records an issue for dims that cannot broadcast instead of throwing', () => {
    const b = new GraphBuilder({ opset: 17 });
    const y = b.op('Add', [b.input('a', [2, 3]), b.input('c', [4, 3])], {}, 'bad');
    b.output(y);
    const shapes = inferShapes(b.model);
    expect(shapes.typeOf(y)).toBeUndefined();
    expect(shapes.issues[0]!.message).toMatch(/bad \(Add\).*do not broadcast/);
  });

  it('does not change the IR', () => {
    const b = caseNamed('shape values').build();
    const before = encodeModel(b.model).bytes;
    const types = [...b.graph.values()].map((v) => v.type);
    inferShapes(b.model);
    expect([...b.graph.values()].map((v) => v.type)).toEqual(types);
    expect(encodeModel(b.model).bytes).toEqual(before);
  });
});

describe('symbolic dim arithmetic', () => {
  it('multiplies, divides exactly, adds like terms', () => {
    expect(mulDim('batch', 512)).toBe('512*batch');
    expect(mulDim('batch', 1.5)).toBeNull();
    expect(divDim('512*batch', 'batch')).toBe(512);
    expect(divDim(mulDim('batch', 48), 24)).toBe('2*batch');
    expect(divDim('batch', 2)).toBeNull();
    expect(addDim('batch', 'batch')).toBe('2*batch');
    expect(addDim('batch', 1)).toBeNull();
    expect(subDim('3*N', 'N')).toBe('2*N');
    expect(productOf(['N', 3, 'H', null])).toBeNull();
    expect(sameDim(productOf(['H', 'N']), 'N*H')).toBe(true);
    expect(evaluateDim('6*N*H', (s) => (s === 'N' ? 2 : 5))).toBe(60);
  });

  it('broadcasts numbers, symbols and unknowns like numpy', () => {
    expect(
      broadcastShapes([
        ['N', 1, 5],
        [3, 1],
      ]),
    ).toEqual(['N', 3, 5]);
    expect(
      broadcastShapes([
        ['N', 4],
        [1, 'M'],
      ]),
    ).toEqual(['N', 4]);
    expect(broadcastShapes([['N'], ['M']])).toEqual([null]);
    expect(
      broadcastShapes([
        [null, 4],
        [7, 1],
      ]),
    ).toEqual([7, 4]);
    expect(() => broadcastShapes([[2], [3]])).toThrow(/broadcast/);
  });
});
