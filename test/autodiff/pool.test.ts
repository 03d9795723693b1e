/**
 * Pooling gradients against central differences. MaxPool runs in float64 (ε = 1e-6,
 * relative error ≤ 1e-5; random inputs, so no two elements of a window tie within ε);
 * AveragePool and GlobalAveragePool have only float32 kernels (ε = 1e-2, ≤ 1e-2, loss
 * summed in float64).
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder, type AttrInput } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { gradCheck, randomInput, squaresLoss } from './gradcheck.js';

const F64 = DataType.DOUBLE;
const F32 = DataType.FLOAT;

function poolModel(op: string, x: number[], y: number[], dtype: DataType, attrs: Record<string, AttrInput>) {
  const b = new GraphBuilder({ opset: 17 });
  const out = b.op(op, [b.input('x', x, dtype)], attrs);
  b.output(squaresLoss(b.graph, out, y, dtype));
  return b.model;
}

async function check(
  label: string,
  op: string,
  x: number[],
  y: number[],
  dtype: DataType,
  attrs: Record<string, AttrInput>,
) {
  const eps = dtype === F64 ? 1e-6 : 1e-2;
  const tolerance = dtype === F64 ? 1e-5 : 1e-2;
  const errors = await gradCheck(
    poolModel(op, x, y, dtype, attrs),
    ['x'],
    { x: randomInput(x, dtype, 21) },
    { eps, entries: 48 },
  );
  console.log(`[gradcheck] ${op} ${label}: ${JSON.stringify(errors)}`);
  expect(errors.x).toBeLessThanOrEqual(tolerance);
}

describe('MaxPool gradient (float64)', () => {
  it('2×2 stride 2 (disjoint windows)', () =>
    check('2×2/2', 'MaxPool', [2, 3, 6, 6], [2, 3, 3, 3], F64, { kernel_shape: [2, 2], strides: [2, 2] }));
  it('3×3 stride 1, overlapping windows', () =>
    check('3×3/1 overlap', 'MaxPool', [2, 3, 6, 6], [2, 3, 4, 4], F64, { kernel_shape: [3, 3] }));
  it('3×3 stride 2 pads 1 (ResNet stem), overlapping', () =>
    check('3×3/2 pads 1', 'MaxPool', [2, 3, 7, 7], [2, 3, 4, 4], F64, {
      kernel_shape: [3, 3],
      strides: [2, 2],
      pads: [1, 1, 1, 1],
    }));
  it('ceil_mode with asymmetric pads', () =>
    check('ceil_mode', 'MaxPool', [2, 2, 7, 6], [2, 2, 4, 3], F64, {
      kernel_shape: [2, 3],
      strides: [2, 2],
      pads: [1, 0, 0, 0],
      ceil_mode: 1,
    }));
  it('dilation 2', () =>
    check('dilation 2', 'MaxPool', [2, 2, 7, 7], [2, 2, 5, 5], F64, {
      kernel_shape: [2, 2],
      dilations: [2, 2],
      strides: [1, 1],
    }));
});

describe('AveragePool / GlobalAveragePool gradient (float32)', () => {
  it('2×2 stride 2', () =>
    check('2×2/2', 'AveragePool', [2, 3, 6, 6], [2, 3, 3, 3], F32, { kernel_shape: [2, 2], strides: [2, 2] }));
  it('3×3 stride 1 pads 1, count_include_pad 0 (overlap, border divisors)', () =>
    check('pads exclude', 'AveragePool', [2, 3, 5, 5], [2, 3, 5, 5], F32, {
      kernel_shape: [3, 3],
      pads: [1, 1, 1, 1],
    }));
  it('3×3 stride 2 pads 1, count_include_pad 1', () =>
    check('pads include', 'AveragePool', [2, 3, 7, 7], [2, 3, 4, 4], F32, {
      kernel_shape: [3, 3],
      strides: [2, 2],
      pads: [1, 1, 1, 1],
      count_include_pad: 1,
    }));
  it('ceil_mode, count_include_pad 1 (windows clipped past the padding)', () =>
    check('ceil include', 'AveragePool', [2, 2, 6, 6], [2, 2, 3, 3], F32, {
      kernel_shape: [3, 3],
      strides: [2, 2],
      pads: [0, 0, 1, 1],
      ceil_mode: 1,
      count_include_pad: 1,
    }));
  it('asymmetric 2×3 kernel, stride 3 leaves trailing columns unread', () =>
    check('uncovered', 'AveragePool', [2, 2, 6, 7], [2, 2, 3, 2], F32, { kernel_shape: [2, 3], strides: [2, 3] }));
  it('GlobalAveragePool', () => check('', 'GlobalAveragePool', [2, 4, 5, 5], [2, 4, 1, 1], F32, {}));
});
