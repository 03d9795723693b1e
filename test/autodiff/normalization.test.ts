/**
 * BatchNormalization gradients (inference form with constant running statistics, and
 * training form with batch statistics built by lowerTrainingBatchNorms) against central
 * differences in float64 (ε = 1e-4: ∂x of a normalisation is small where the loss is not,
 * so a smaller step lets the loss's rounding show; relative error ≤ 1e-5), and Dropout: the identity in
 * inference form, and in training form ∂x = ∂y·mask/(1 − ratio), checked against the mask
 * the same run drew (a random mask cannot be finite-differenced).
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { floatAttr } from '../../compiler/ir/builder.js';
import { gradientModel } from '../../compiler/autodiff/gradients.js';
import { toOrtTensor } from '../../runtime/session.js';
import { outputsOf } from '../passes/compare.js';
import { gradCheck, projectionLoss, randomInput, squaresLoss } from './gradcheck.js';

const F64 = DataType.DOUBLE;

function bnModel(xDims: number[]) {
  const b = new GraphBuilder({ opset: 17 });
  const c = xDims[1]!;
  const stat = (name: string, values: number[]) =>
    b.initializer(name, Tensor.fromArray(F64, [c], Float64Array.from(values)));
  const mean = stat(
    'running_mean',
    Array.from({ length: c }, (_, k) => 0.1 * k - 0.1),
  );
  const variance = stat(
    'running_var',
    Array.from({ length: c }, (_, k) => 0.5 + 0.25 * k),
  );
  const y = b.op(
    'BatchNormalization',
    [b.input('x', xDims, F64), b.input('gamma', [c], F64), b.input('beta', [c], F64), mean, variance],
    { epsilon: floatAttr(1e-3) },
  );
  b.output(squaresLoss(b.graph, y, xDims, F64));
  return b.model;
}

async function check(label: string, xDims: number[], trainingBatchNorm: boolean | 'fused') {
  const c = xDims[1]!;
  const inputs = {
    x: randomInput(xDims, F64, 51, 2),
    gamma: randomInput([c], F64, 52),
    beta: randomInput([c], F64, 53),
  };
  const errors = await gradCheck(bnModel(xDims), ['x', 'gamma', 'beta'], inputs, {
    eps: 1e-4,
    entries: 40,
    trainingBatchNorm,
  });
  console.log(`[gradcheck] BatchNormalization ${label}: ${JSON.stringify(errors)}`);
  for (const error of Object.values(errors)) expect(error).toBeLessThanOrEqual(1e-5);
}

describe('BatchNormalization gradient (float64)', () => {
  it('inference form, [N, C, H, W]', () => check('inference', [2, 3, 5, 5], false));
  it('training form (batch statistics), [N, C, H, W]', () => check('training', [2, 3, 5, 5], true));
  it('training form, [N, C] (BatchNorm1d)', () => check('training 2-D', [6, 4], true));
  it('training form with fused statistics, [N, C, H, W]', () => check('training fused', [2, 3, 5, 5], 'fused'));
  it('training form with fused statistics, [N, C]', () => check('training fused 2-D', [6, 4], 'fused'));
});

describe('Dropout gradient', () => {
  const dropoutModel = (training: boolean) => {
    const b = new GraphBuilder({ opset: 17 });
    const inputs = [
      b.input('x', [4, 50], F64),
      b.initializer('ratio', Tensor.fromArray(F64, [], Float64Array.of(0.3))),
    ];
    if (training) inputs.push(b.initializer('training', Tensor.fromArray(DataType.BOOL, [], Uint8Array.of(1))));
    b.output(projectionLoss(b.graph, b.op('Dropout', inputs), [4, 50], F64));
    return b.model;
  };

  it('inference form is the identity', async () => {
    const errors = await gradCheck(dropoutModel(false), ['x'], { x: randomInput([4, 50], F64, 54) }, { eps: 1e-6 });
    expect(errors.x).toBeLessThanOrEqual(1e-5);
  });

  it('training form: ∂x = R·mask/(1 − ratio), and Σ ∂x·x equals the loss of the same run', async () => {
    const gm = gradientModel(dropoutModel(true), { loss: 'loss', wrt: ['x'] });
    const x = randomInput([4, 50], F64, 55);
    const out = await outputsOf(gm.model, { x: toOrtTensor(F64, [4, 50], x.data) });
    const g = out[gm.gradients.get('x')!]!.data as Float64Array;
    const projection = randomInput([4, 50], F64, 99).data;
    let kept = 0;
    g.forEach((value, k) => {
      if (value === 0) return;
      kept++;
      expect(value).toBeCloseTo(projection[k]! / 0.7, 12);
    });
    expect(kept / g.length).toBeGreaterThan(0.5);
    expect(kept / g.length).toBeLessThan(0.9);
    // onnxruntime scales by 1/(1 − ratio) computed in float32 (relative 2e-8 off in float64).
    const dot = g.reduce((s, value, k) => s + value * x.data[k]!, 0);
    const loss = Number(out.loss!.data[0]);
    expect(Math.abs(dot - loss)).toBeLessThanOrEqual(1e-7 * Math.abs(loss));
  });
});
