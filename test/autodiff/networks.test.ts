/**
 * Whole networks from fixtures/models.ts:
 *  - gradient check of every parameter tensor of small CNNs (residual Add, depthwise conv,
 *    squeeze-excitation Sigmoid·Mul broadcast, Split/Concat/Reshape/Transpose channel
 *    shuffle, Concat dense blocks, NHWC Transposes with a bias Add and ReduceMean head),
 *    BatchNormalization in training mode, loss Σ logits·R in float64, float32 network,
 *    ε = 1e-2, 4 random unit directions per tensor, relative error ≤ 1e-2. The kinked
 *    activations are swapped for smooth ones first (Relu, Clip → Tanh; MaxPool →
 *    AveragePool): a ±1e-2 step of a whole weight tensor moves hundreds of activations,
 *    and some cross a kink, which the differences cannot follow. The kinked ops are
 *    checked one by one in float64 (pointwise.test.ts, pool.test.ts) and train below;
 *  - overfitting: 30 steps of the training graph on one fixed synthetic batch, run with
 *    onnxruntime's default (all) graph optimisations, must cut the loss at least 4×.
 */
import { describe, expect, it } from 'vitest';
import { buildTrainingGraph } from '../../compiler/autodiff/training.js';
import type { OptimizerSpec } from '../../compiler/autodiff/types.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import { FIXTURES } from '../../fixtures/models.js';
import { gradCheck, projectionLoss, randomInput, type Inputs } from './gradcheck.js';
import { StepHarness, syntheticBatch } from './step.js';

/** Relu and Clip become Tanh, MaxPool becomes AveragePool (same window). */
function smoothen(model: Model): void {
  for (const node of model.graph.nodes()) {
    if (node.opType === 'Relu') node.opType = 'Tanh';
    if (node.opType === 'Clip') (node.opType = 'Tanh'), node.truncateInputs(1);
    if (node.opType === 'MaxPool') node.opType = 'AveragePool';
  }
}

/** The fixture at batch 2 with its trainable initializers turned into graph inputs, and a projection loss. */
function checkable(name: string): { model: Model; inputs: Inputs; params: string[] } {
  const model = FIXTURES[name]!().clone().model;
  const g = model.graph;
  smoothen(model);
  const input = g.inputs[0]!;
  const dims = input.type!.shape!.map((d) => (typeof d === 'number' ? d : 2));
  input.type = { dtype: DataType.FLOAT, shape: dims };
  const params = buildTrainingGraph(model, {
    loss: { kind: 'cross-entropy' },
    optimizer: { kind: 'sgd', momentum: 0, nesterov: false, weightDecay: 0 },
  }).params;
  const inputs: Inputs = { [input.name]: randomInput(dims, DataType.FLOAT, 71) };
  for (const p of params) {
    const value = g.initializers.get(p.name)!;
    inputs[p.name] = { dtype: DataType.FLOAT, dims: p.init.dims, data: p.init.toFloat64() };
    g.initializers.delete(p.name);
    value.constValue = undefined;
    g.inputs.push(value);
  }
  const logits = g.outputs[0]!;
  const loss = projectionLoss(g, logits, [2, 10], DataType.FLOAT);
  g.outputs.length = 0;
  g.outputs.push(loss);
  return { model, inputs, params: params.map((p) => p.name) };
}

describe('whole-network gradients (float32, BN in training mode)', () => {
  for (const name of [
    'resnet-basic',
    'mobilenet-v2-block',
    'se-block',
    'channel-shuffle',
    'densenet-concat',
    'nhwc-transposed',
    'vgg-chain',
  ]) {
    it(name, async () => {
      const { model, inputs, params } = checkable(name);
      const errors = await gradCheck(model, params, inputs, {
        eps: 1e-2,
        entries: 0,
        directions: 4,
        trainingBatchNorm: true,
      });
      const worst = Math.max(...Object.values(errors));
      console.log(`[gradcheck] network ${name}: ${params.length} tensors, max rel err ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-2);
    });
  }
});

describe('overfitting a fixed batch (30 steps, default graph optimisations)', () => {
  const sgd: OptimizerSpec = { kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 5e-4 };
  const adamw: OptimizerSpec = { kind: 'adamw', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-4 };
  const cases: [string, OptimizerSpec, number][] = [
    ['resnet-basic', adamw, 0.01],
    ['mobilenet-v2-block', adamw, 0.01],
    ['channel-shuffle', adamw, 0.01],
    ['vgg-chain', sgd, 0.05],
    ['flatten-gemm-head', sgd, 0.05],
  ];
  for (const [name, optimizer, lr] of cases) {
    it(`${name} with ${optimizer.kind}`, async () => {
      const model = FIXTURES[name]!();
      const dims = model.graph.inputs[0]!.type!.shape!.map((d) => (typeof d === 'number' ? d : 8));
      const h = await StepHarness.open(
        buildTrainingGraph(model, { loss: { kind: 'cross-entropy' }, optimizer }),
        'all',
      );
      const batch = syntheticBatch(dims, 10, 1);
      const losses: number[] = [];
      for (let step = 1; step <= 30; step++) losses.push(Number((await h.step(batch, lr, step)).loss!.data[0]));
      await h.release();
      console.log(`[overfit] ${name} ${optimizer.kind}: loss ${losses[0]!.toFixed(3)} → ${losses[29]!.toFixed(4)}`);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(losses[29]!).toBeLessThanOrEqual(0.25 * losses[0]!);
    });
  }
});
