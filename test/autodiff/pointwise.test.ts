/**
 * Gradients of activations, broadcasting arithmetic, unary maps and reductions against
 * central differences. float64 where the CPU provider has the kernels (ε = 1e-6, relative
 * error ≤ 1e-5); HardSigmoid and HardSwish exist only in float32 (ε = 1e-2, ≤ 1e-2).
 * Inputs stay away from kinks (|x| ≥ 0.05 for Relu-like ops, away from clip bounds and the
 * ±3 / ±2.5 corners of the hard ops) so the differences never straddle one.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder, type AttrInput } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import type { Value } from '../../compiler/ir/node.js';
import { gradientModel } from '../../compiler/autodiff/gradients.js';
import { toOrtTensor } from '../../runtime/session.js';
import { outputsOf } from '../passes/compare.js';
import { gradCheck, randomInput, squaresLoss, type Input } from './gradcheck.js';

const F64 = DataType.DOUBLE;
const F32 = DataType.FLOAT;
const SHAPE = [2, 3, 5, 5];
/** float64 with ε = 1e-6: the differences' own rounding is ~|L|·1e-16/ε ≈ 1e-8 of the loss scale. */
const F64_TOLERANCE = 1e-5;

/** Random values with |x| ≥ margin and x away from each of `avoid` by ≥ margin. */
function awayFrom(
  dims: number[],
  dtype: DataType,
  seed: number,
  scale: number,
  avoid: number[],
  margin: number,
): Input {
  const input = randomInput(dims, dtype, seed, scale);
  const data = input.data.map((x) => {
    let v = x;
    for (const point of avoid) if (Math.abs(v - point) < margin) v = point + (v >= point ? margin : -margin);
    return v;
  });
  return { ...input, data };
}

function unaryModel(
  op: string,
  dtype: DataType,
  attrs: Record<string, AttrInput> = {},
  extra?: (b: GraphBuilder) => (Value | undefined)[],
) {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', SHAPE, dtype);
  const y = b.op(op, [x, ...(extra?.(b) ?? [])], attrs);
  b.output(squaresLoss(b.graph, y, SHAPE, dtype));
  return b.model;
}

const scalar = (b: GraphBuilder, name: string, value: number, dtype: DataType) =>
  b.initializer(name, dtype === F64 ? Tensor.fromArray(F64, [], Float64Array.of(value)) : Tensor.float32([], [value]));

async function check(
  model: ReturnType<typeof unaryModel>,
  inputs: Record<string, Input>,
  eps: number,
  tolerance: number,
  label: string,
  wrt = Object.keys(inputs),
) {
  const errors = await gradCheck(model, wrt, inputs, { eps, entries: 40 });
  console.log(`[gradcheck] ${label}: ${JSON.stringify(errors)}`);
  for (const error of Object.values(errors)) expect(error).toBeLessThanOrEqual(tolerance);
}

describe('activation gradients', () => {
  it('Relu (float64)', async () =>
    check(unaryModel('Relu', F64), { x: awayFrom(SHAPE, F64, 1, 1, [0], 0.05) }, 1e-6, F64_TOLERANCE, 'Relu'));
  it('LeakyRelu α = 0.1 (float64)', async () =>
    check(
      unaryModel('LeakyRelu', F64, { alpha: 0.1 }),
      { x: awayFrom(SHAPE, F64, 2, 1, [0], 0.05) },
      1e-6,
      F64_TOLERANCE,
      'LeakyRelu',
    ));
  it('Sigmoid (float64)', async () =>
    check(unaryModel('Sigmoid', F64), { x: randomInput(SHAPE, F64, 3, 2) }, 1e-6, F64_TOLERANCE, 'Sigmoid'));
  it('Tanh (float64)', async () =>
    check(unaryModel('Tanh', F64), { x: randomInput(SHAPE, F64, 4, 1.5) }, 1e-6, F64_TOLERANCE, 'Tanh'));
  it('Clip with min and max inputs (ReLU6 form, float64)', async () => {
    const model = unaryModel('Clip', F64, {}, (b) => [scalar(b, 'min', -0.5, F64), scalar(b, 'max', 0.8, F64)]);
    await check(model, { x: awayFrom(SHAPE, F64, 5, 1, [-0.5, 0.8], 0.05) }, 1e-6, F64_TOLERANCE, 'Clip');
  });
  it('Clip: the gradient passes at the bounds and between them, not outside (PyTorch clamp)', async () => {
    // x exactly at both bounds, inside, outside; ∂x of Σ y is the mask itself
    const values = [-2, -0.5, -0.25, 0, 0.8, 0.9, 3, 0.5];
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', [values.length], F64);
    const bounds = [scalar(b, 'min', -0.5, F64), scalar(b, 'max', 0.8, F64)];
    b.output(b.op('ReduceSum', [b.op('Clip', [x, ...bounds])], { keepdims: 0 }), { dtype: F64, shape: [] });
    const gm = gradientModel(b.model, { loss: b.model.graph.outputs[0]!.name, wrt: ['x'] });
    const out = await outputsOf(gm.model, { x: toOrtTensor(F64, [values.length], Float64Array.from(values)) });
    expect([...(out[gm.gradients.get('x')!]!.data as Float64Array)]).toEqual([0, 1, 1, 1, 1, 0, 0, 1]);
  });
  it('Clip with only a max (float64)', async () => {
    const model = unaryModel('Clip', F64, {}, (b) => [undefined, scalar(b, 'max', 0.3, F64)]);
    await check(model, { x: awayFrom(SHAPE, F64, 6, 1, [0.3], 0.05) }, 1e-6, F64_TOLERANCE, 'Clip max only');
  });
  it('HardSigmoid α = 0.25, β = 0.4 (float32)', async () => {
    const model = unaryModel('HardSigmoid', F32, { alpha: 0.25, beta: 0.4 });
    await check(model, { x: awayFrom(SHAPE, F32, 7, 3, [-1.6, 2.4], 0.05) }, 1e-2, 1e-2, 'HardSigmoid');
  });
  it('HardSwish (float32)', async () =>
    check(unaryModel('HardSwish', F32), { x: awayFrom(SHAPE, F32, 8, 3, [-3, 3], 0.05) }, 1e-2, 1e-2, 'HardSwish'));
});

describe('unary map gradients (float64)', () => {
  for (const op of ['Neg', 'Exp', 'Identity']) {
    it(op, async () => check(unaryModel(op, F64), { x: randomInput(SHAPE, F64, 9) }, 1e-6, F64_TOLERANCE, op));
  }
  for (const op of ['Log', 'Sqrt', 'Reciprocal']) {
    it(`${op} (positive inputs)`, async () => {
      const x = randomInput(SHAPE, F64, 10);
      await check(
        unaryModel(op, F64),
        { x: { ...x, data: x.data.map((v) => 0.5 + Math.abs(v)) } },
        1e-6,
        F64_TOLERANCE,
        op,
      );
    });
  }
});

/** y = op(a, b) with the two shapes given (broadcast), both graph inputs. */
function binaryModel(op: string, aDims: number[], bDims: number[], yDims: number[], dtype = F64) {
  const b = new GraphBuilder({ opset: 17 });
  const y = b.op(op, [b.input('a', aDims, dtype), b.input('b', bDims, dtype)]);
  b.output(squaresLoss(b.graph, y, yDims, dtype));
  return b.model;
}

describe('broadcasting arithmetic gradients (float64)', () => {
  const cases: [string, number[], number[]][] = [
    ['same shape', SHAPE, SHAPE],
    ['[C, 1, 1] operand (per-channel constant)', SHAPE, [3, 1, 1]],
    ['scalar operand', SHAPE, []],
    ['both broadcast: [2, 1, 5, 1] vs [3, 1, 5]', [2, 1, 5, 1], [3, 1, 5]],
  ];
  const out = (a: number[], b: number[]) => {
    const rank = Math.max(a.length, b.length);
    const pa = [...Array(rank - a.length).fill(1), ...a];
    const pb = [...Array(rank - b.length).fill(1), ...b];
    return pa.map((d, k) => Math.max(d, pb[k]!));
  };
  for (const op of ['Add', 'Sub', 'Mul', 'Div']) {
    for (const [label, aDims, bDims] of cases) {
      it(`${op}, ${label}`, async () => {
        const bInput = randomInput(bDims, F64, 12);
        const inputs = {
          a: randomInput(aDims, F64, 11),
          b: op === 'Div' ? { ...bInput, data: bInput.data.map((v) => (v < 0 ? v - 0.5 : v + 0.5)) } : bInput,
        };
        await check(binaryModel(op, aDims, bDims, out(aDims, bDims)), inputs, 1e-6, F64_TOLERANCE, `${op} ${label}`);
      });
    }
  }
  it('Add of a [C, 1, 1] initializer: differentiating with respect to the initializer gives the graph-input gradient', async () => {
    const bias = randomInput([3, 1, 1], F64, 13);
    const a = randomInput(SHAPE, F64, 14);
    const b = new GraphBuilder({ opset: 17 });
    const y = b.op('Add', [
      b.input('a', SHAPE, F64),
      b.initializer('bias', Tensor.fromArray(F64, [3, 1, 1], bias.data)),
    ]);
    b.output(squaresLoss(b.graph, y, SHAPE, F64));
    const fromInitializer = gradientModel(b.model, { loss: 'loss', wrt: ['bias'] });
    const fromInput = gradientModel(binaryModel('Add', SHAPE, [3, 1, 1], SHAPE), { loss: 'loss', wrt: ['b'] });
    const feedA = { a: toOrtTensor(F64, SHAPE, a.data) };
    const got = (await outputsOf(fromInitializer.model, feedA))[fromInitializer.gradients.get('bias')!]!;
    const want = (await outputsOf(fromInput.model, { ...feedA, b: toOrtTensor(F64, [3, 1, 1], bias.data) }))[
      fromInput.gradients.get('b')!
    ]!;
    expect([...got.dims]).toEqual([3, 1, 1]);
    expect([...(got.data as Float64Array)]).toEqual([...(want.data as Float64Array)]);
  });
});

describe('reduction gradients (float64)', () => {
  const reduceModel = (op: string, axes: number[], keepdims: number, yDims: number[]) => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', SHAPE, F64);
    const y =
      op === 'ReduceSum' ? b.op(op, [x, b.ints('axes', axes)], { keepdims }) : b.op(op, [x], { axes, keepdims });
    b.output(squaresLoss(b.graph, y, yDims, F64));
    return b.model;
  };
  it('ReduceSum over [0, 2, 3], keepdims 0', async () =>
    check(
      reduceModel('ReduceSum', [0, 2, 3], 0, [3]),
      { x: randomInput(SHAPE, F64, 15) },
      1e-6,
      F64_TOLERANCE,
      'ReduceSum',
    ));
  it('ReduceSum over [1], keepdims 1', async () =>
    check(
      reduceModel('ReduceSum', [1], 1, [2, 1, 5, 5]),
      { x: randomInput(SHAPE, F64, 16) },
      1e-6,
      F64_TOLERANCE,
      'ReduceSum keepdims',
    ));
  it('ReduceMean over [2, 3], keepdims 0 (opset 17 attribute form)', async () =>
    check(
      reduceModel('ReduceMean', [2, 3], 0, [2, 3]),
      { x: randomInput(SHAPE, F64, 17) },
      1e-6,
      F64_TOLERANCE,
      'ReduceMean',
    ));
  it('ReduceMean over [-1], keepdims 1', async () =>
    check(
      reduceModel('ReduceMean', [-1], 1, [2, 3, 5, 1]),
      { x: randomInput(SHAPE, F64, 18) },
      1e-6,
      F64_TOLERANCE,
      'ReduceMean last axis',
    ));
});
