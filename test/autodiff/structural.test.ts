/**
 * Gradients of ops that move elements (Flatten, Reshape, Squeeze/Unsqueeze, Transpose,
 * Concat, Split, Slice, Gather, GatherElements), matrix products (Gemm, MatMul), Softmax,
 * LogSoftmax and SoftmaxCrossEntropyLoss against central differences, all in float64
 * (ε = 1e-6, relative error ≤ 1e-5), with the Σ y²/2 + Σ y·R loss.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder, type AttrInput } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Value } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { attr } from '../../compiler/ir/attribute.js';
import { gradCheck, randomInput, squaresLoss, type Input } from './gradcheck.js';

const F64 = DataType.DOUBLE;
const EPS = 1e-6;
const TOLERANCE = 1e-5;

type Build = (b: GraphBuilder, inputs: Record<string, Value>) => Value;

/** A model over float64 inputs of the given shapes, output y of shape `yDims`, loss on it. */
function model(shapes: Record<string, number[]>, yDims: number[], build: Build) {
  const b = new GraphBuilder({ opset: 17 });
  const inputs = Object.fromEntries(Object.entries(shapes).map(([name, dims]) => [name, b.input(name, dims, F64)]));
  b.output(squaresLoss(b.graph, build(b, inputs), yDims, F64));
  return b.model;
}

async function check(
  label: string,
  shapes: Record<string, number[]>,
  yDims: number[],
  build: Build,
  extra: Record<string, Input> = {},
) {
  const inputs: Record<string, Input> = { ...extra };
  Object.entries(shapes).forEach(([name, dims], k) => (inputs[name] ??= randomInput(dims, F64, 31 + k)));
  const wrt = Object.keys(shapes).filter((name) => inputs[name]!.dtype === F64);
  const errors = await gradCheck(model(shapes, yDims, build), wrt, inputs, { eps: EPS, entries: 40 });
  console.log(`[gradcheck] ${label}: ${JSON.stringify(errors)}`);
  for (const error of Object.values(errors)) expect(error).toBeLessThanOrEqual(TOLERANCE);
}

const X = [2, 4, 3, 3];

describe('element-moving ops', () => {
  it('Flatten', () => check('Flatten', { x: X }, [2, 36], (b, { x }) => b.op('Flatten', [x!], { axis: 1 })));
  it('Reshape (with 0 and −1)', () =>
    check('Reshape', { x: X }, [2, 2, 18], (b, { x }) => b.op('Reshape', [x!, b.ints('shape', [0, 2, -1])])));
  it('Squeeze / Unsqueeze', () =>
    check('Squeeze/Unsqueeze', { x: [2, 1, 3, 3] }, [2, 3, 1, 3], (b, { x }) =>
      b.op('Unsqueeze', [b.op('Squeeze', [x!, b.ints('sq', [1])]), b.ints('un', [2])]),
    ));
  it('Transpose', () =>
    check('Transpose', { x: X }, [3, 2, 3, 4], (b, { x }) => b.op('Transpose', [x!], { perm: [2, 0, 3, 1] })));
  it('Concat on channels (three inputs, one used twice)', () =>
    check('Concat', { a: [2, 2, 3, 3], c: [2, 3, 3, 3] }, [2, 7, 3, 3], (b, { a, c }) =>
      b.op('Concat', [a!, c!, a!], { axis: 1 }),
    ));
  it('Split on channels (one output unused)', () =>
    check('Split', { x: X }, [2, 3, 3, 3], (b, { x }) => {
      const [first, , third] = b.ops('Split', [x!, b.ints('sizes', [1, 1, 2])], 3, { axis: 1 });
      return b.op('Concat', [first!, third!], { axis: 1 });
    }));
  it('Slice with steps, negative step and clamped ends', () =>
    check('Slice', { x: [2, 5, 6, 6] }, [2, 2, 2, 6], (b, { x }) =>
      b.op('Slice', [
        x!,
        b.ints('starts', [4, 1, 100]),
        b.ints('ends', [0, 6, -100]),
        b.ints('axes', [1, 2, 3]),
        b.ints('steps', [-2, 3, -1]),
      ]),
    ));
  it('Gather on axis 1 with constant, repeated indices (channel gather)', () =>
    check('Gather channels', { x: X }, [2, 5, 3, 3], (b, { x }) =>
      b.op('Gather', [x!, b.ints('idx', [3, 0, 3, -1, 1])], { axis: 1 }),
    ));
  it('Gather with a scalar index', () =>
    check('Gather scalar', { x: X }, [2, 3, 3], (b, { x }) =>
      b.op('Gather', [x!, b.initializer('idx', Tensor.int64([], [2]))], { axis: 1 }),
    ));
  it('GatherElements', () =>
    check('GatherElements', { x: [3, 4] }, [3, 2], (b, { x }) =>
      b.op('GatherElements', [x!, b.initializer('idx', Tensor.int64([3, 2], [0, 3, 2, 2, 1, 0]))], { axis: 1 }),
    ));
});

describe('matrix products', () => {
  const gemm = (attrs: Record<string, AttrInput>) => (b: GraphBuilder, v: Record<string, Value>) =>
    b.op('Gemm', [v.a!, v.w!, v.c], attrs);
  it('Gemm transB = 1 with bias [N] (Linear)', () =>
    check('Gemm transB', { a: [3, 5], w: [4, 5], c: [4] }, [3, 4], gemm({ transB: 1 })));
  it('Gemm transA = 1, α = 0.7, β = 1.3, bias [M, 1]', () =>
    check('Gemm transA alpha beta', { a: [5, 3], w: [5, 4], c: [3, 1] }, [3, 4], (b, v) =>
      b.graph
        .addNode('Gemm', [v.a!, v.w!, v.c!], {
          attributes: [attr.int('transA', 1), attr.float('alpha', 0.7), attr.float('beta', 1.3)],
        })
        .output(0),
    ));
  it('Gemm transA = transB = 1, scalar bias', () =>
    check('Gemm both', { a: [5, 3], w: [4, 5], c: [] }, [3, 4], gemm({ transA: 1, transB: 1 })));
  it('Gemm without bias', () =>
    check('Gemm no bias', { a: [3, 5], w: [5, 4] }, [3, 4], (b, v) => b.op('Gemm', [v.a!, v.w!])));
  it('MatMul 2-D', () => check('MatMul', { a: [3, 5], w: [5, 4] }, [3, 4], (b, v) => b.op('MatMul', [v.a!, v.w!])));
  it('MatMul batched with a broadcast weight', () =>
    check('MatMul batched', { a: [2, 3, 3, 5], w: [5, 4] }, [2, 3, 3, 4], (b, v) => b.op('MatMul', [v.a!, v.w!])));
  it('MatMul with broadcast batch axes on both sides', () =>
    check('MatMul broadcast', { a: [2, 1, 3, 5], w: [3, 5, 4] }, [2, 3, 3, 4], (b, v) => b.op('MatMul', [v.a!, v.w!])));
});

describe('softmax family', () => {
  it('Softmax (axis 1)', () =>
    check('Softmax', { x: [3, 6] }, [3, 6], (b, { x }) => b.op('Softmax', [x!], { axis: 1 })));
  it('Softmax over a middle axis', () =>
    check('Softmax axis 1 of 4-D', { x: X }, X, (b, { x }) => b.op('Softmax', [x!], { axis: 1 })));
  it('LogSoftmax', () =>
    check('LogSoftmax', { x: [3, 6] }, [3, 6], (b, { x }) => b.op('LogSoftmax', [x!], { axis: -1 })));
  for (const reduction of ['mean', 'sum']) {
    it(`SoftmaxCrossEntropyLoss (${reduction}, int64 labels)`, async () => {
      const b = new GraphBuilder({ opset: 17 });
      const scores = b.input('scores', [4, 5], F64);
      const labels = b.input('labels', [4], DataType.INT64);
      const node = b.graph.addNode('SoftmaxCrossEntropyLoss', [scores, labels], {
        attributes: [attr.string('reduction', reduction)],
        outputs: ['loss'],
      });
      b.output(node.output(0), { dtype: F64, shape: [] });
      const inputs = {
        scores: randomInput([4, 5], F64, 41, 2),
        labels: { dtype: DataType.INT64, dims: [4], data: Float64Array.of(0, 4, 2, 2) },
      };
      const errors = await gradCheck(b.model, ['scores'], inputs, { eps: EPS, entries: 20 });
      console.log(`[gradcheck] SoftmaxCrossEntropyLoss ${reduction}: ${JSON.stringify(errors)}`);
      expect(errors.scores).toBeLessThanOrEqual(TOLERANCE);
    });
  }
  it("SoftmaxCrossEntropyLoss ('none') feeding a projection", () =>
    check('SoftmaxCrossEntropyLoss none', { s: [4, 5, 2] }, [4, 2], (b, { s }) =>
      b.graph
        .addNode('SoftmaxCrossEntropyLoss', [s!, b.initializer('y', Tensor.int64([4, 2], [0, 1, 4, 4, 2, 3, 1, 0]))], {
          attributes: [attr.string('reduction', 'none')],
        })
        .output(0),
    ));
});
