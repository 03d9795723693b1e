/**
 * The training-step model (buildTrainingGraph) against updates computed in TypeScript.
 *
 * Reference gradients come from gradientModel on the same network with onnxruntime's own
 * SoftmaxCrossEntropyLoss as the loss and BatchNormalization in training mode, at the
 * step's starting parameters; the step model builds its cross-entropy from LogSoftmax, so
 * the two agree to float32 rounding. Updates are compared as Δ = w − w' against lr·d:
 * max|Δ − lr·d| ≤ 1e-3 · max|lr·d| (float32; a wrong rule is off by O(1)).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { Emitter } from '../../compiler/autodiff/emitter.js';
import { gradientModel } from '../../compiler/autodiff/gradients.js';
import { buildTrainingGraph } from '../../compiler/autodiff/training.js';
import type { LossSpec, OptimizerSpec, TrainingSpec } from '../../compiler/autodiff/types.js';
import { attr } from '../../compiler/ir/attribute.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { Random } from '../../compiler/util/random.js';
import { gapGemmHead } from '../../fixtures/models.js';
import { emitUniformNoise } from '../../passes/methods/msgc-gates.js';
import { runWithIntermediates, toOrtTensor, type Outputs } from '../../runtime/session.js';
import { outputsOf } from '../passes/compare.js';
import { StepHarness, syntheticBatch, type Batch } from './step.js';

const BATCH_DIMS = [4, 3, 8, 8];
const CLASSES = 10;

/** The model with a SoftmaxCrossEntropyLoss 'loss' output on its logits and an int64 'labels' input. */
function withReferenceLoss(model: Model): Model {
  const copy = model.clone().model;
  const g = copy.graph;
  const labels = g.addInput('labels', { dtype: DataType.INT64, shape: ['N'] });
  const loss = g
    .addNode('SoftmaxCrossEntropyLoss', [g.outputs[0]!, labels], {
      attributes: [attr.string('reduction', 'mean')],
      outputs: ['loss'],
    })
    .output(0);
  g.outputs.length = 0;
  g.outputs.push(loss);
  return copy;
}

/** Reference gradients by parameter name at the model's initial parameters. */
async function referenceGradients(
  model: Model,
  names: readonly string[],
  batch: Batch,
): Promise<Map<string, Float64Array>> {
  const gm = gradientModel(withReferenceLoss(model), { loss: 'loss', wrt: names, trainingBatchNorm: true });
  const out = await outputsOf(gm.model, { input: batch.data, labels: batch.labels });
  return new Map(names.map((name) => [name, Float64Array.from(out[gm.gradients.get(name)!]!.data as Float32Array)]));
}

function expectUpdate(
  name: string,
  before: ArrayLike<number>,
  after: ArrayLike<number>,
  expectedStep: ArrayLike<number>,
): void {
  let worst = 0;
  let scale = 0;
  for (let k = 0; k < before.length; k++) {
    worst = Math.max(worst, Math.abs(before[k]! - after[k]! - expectedStep[k]!));
    scale = Math.max(scale, Math.abs(expectedStep[k]!));
  }
  expect(scale, name).toBeGreaterThan(0);
  expect(worst / scale, `${name}: max|Δ − lr·d| / max|lr·d|`).toBeLessThanOrEqual(1e-3);
}

const randomArray = (length: number, seed: number, scale: number) =>
  Float32Array.from(new Random(seed).normals(length, scale));

describe('training step: optimizer updates equal the TypeScript formulas', () => {
  const model = gapGemmHead();
  const batch = syntheticBatch(BATCH_DIMS, CLASSES, 3);
  let grads: Map<string, Float64Array>;
  let names: string[];

  beforeAll(async () => {
    names = buildTrainingGraph(model, {
      loss: { kind: 'cross-entropy' },
      optimizer: { kind: 'sgd', momentum: 0, nesterov: false, weightDecay: 0 },
    }).params.map((p) => p.name);
    grads = await referenceGradients(model, names, batch);
  });

  it('default trainable set: conv weights, BN scale/bias and the Gemm weight/bias, in first-use order', () => {
    expect(names).toEqual([
      'features.0.conv.weight',
      'features.0.bn.weight',
      'features.0.bn.bias',
      'features.1.conv.weight',
      'features.1.bn.weight',
      'features.1.bn.bias',
      'head.fc.weight',
      'head.fc.bias',
    ]);
  });

  for (const nesterov of [false, true]) {
    it(`SGD momentum 0.9, ${nesterov ? 'Nesterov, ' : ''}weight decay 0.05, from a non-zero momentum buffer`, async () => {
      const spec: OptimizerSpec = { kind: 'sgd', momentum: 0.9, nesterov, weightDecay: 0.05 };
      const tg = buildTrainingGraph(model, { loss: { kind: 'cross-entropy' }, optimizer: spec });
      const h = await StepHarness.open(tg);
      const lr = 0.1;
      const v0 = new Map(names.map((name, k) => [name, randomArray(h.value(name).length, 100 + k, 0.01)]));
      for (const name of names) h.set(`${name}.momentum_buffer`, v0.get(name)!);
      const before = new Map(names.map((name) => [name, Float64Array.from(h.value(name))]));
      await h.step(batch, lr, 1);
      for (const name of names) {
        const w = before.get(name)!;
        const g = grads.get(name)!.map((gk, k) => gk + 0.05 * w[k]!);
        const v = g.map((gk, k) => 0.9 * v0.get(name)![k]! + gk);
        const d = nesterov ? g.map((gk, k) => gk + 0.9 * v[k]!) : v;
        expectUpdate(
          name,
          w,
          h.value(name),
          d.map((x) => lr * x),
        );
        expectUpdate(
          `${name}.momentum_buffer`,
          new Float64Array(v.length),
          h.value(`${name}.momentum_buffer`),
          v.map((x) => -x),
        );
      }
      await h.release();
    });
  }

  for (const kind of ['adam', 'adamw'] as const) {
    it(`${kind === 'adam' ? 'Adam (L2 weight decay)' : 'AdamW (decoupled decay)'} at step 3 from non-zero moments`, async () => {
      const spec: OptimizerSpec = { kind, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 };
      const tg = buildTrainingGraph(model, { loss: { kind: 'cross-entropy' }, optimizer: spec });
      const h = await StepHarness.open(tg);
      const [lr, t] = [0.01, 3];
      const m0 = new Map(names.map((name, k) => [name, randomArray(h.value(name).length, 200 + k, 0.01)]));
      const v0 = new Map(
        names.map((name, k) => [name, randomArray(h.value(name).length, 300 + k, 0.01).map((x) => x * x)]),
      );
      for (const name of names) h.set(`${name}.exp_avg`, m0.get(name)!), h.set(`${name}.exp_avg_sq`, v0.get(name)!);
      const before = new Map(names.map((name) => [name, Float64Array.from(h.value(name))]));
      await h.step(batch, lr, t);
      for (const name of names) {
        const w = before.get(name)!;
        const g = kind === 'adam' ? grads.get(name)!.map((gk, k) => gk + 0.1 * w[k]!) : grads.get(name)!;
        const m = g.map((gk, k) => 0.8 * m0.get(name)![k]! + 0.2 * gk);
        const v = g.map((gk, k) => 0.95 * v0.get(name)![k]! + 0.05 * gk * gk);
        const [c1, c2] = [1 - 0.8 ** t, 1 - 0.95 ** t];
        const step = m.map(
          (mk, k) =>
            (lr / c1) * (mk / (Math.sqrt(v[k]!) / Math.sqrt(c2) + 1e-6)) + (kind === 'adamw' ? lr * 0.1 * w[k]! : 0),
        );
        expectUpdate(name, w, h.value(name), step);
        expectUpdate(
          `${name}.exp_avg`,
          new Float64Array(m.length),
          h.value(`${name}.exp_avg`),
          m.map((x) => -x),
        );
      }
      await h.release();
    });
  }

  const optimizers: OptimizerSpec[] = [
    { kind: 'sgd', momentum: 0.9, nesterov: false, weightDecay: 0.05 },
    { kind: 'adamw', beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 },
  ];
  for (const optimizer of optimizers) {
    it(`learning-rate multipliers (${optimizer.kind}): a scaled parameter steps scale × as far, the others as before`, async () => {
      const scaled = new Map([
        ['head.fc.weight', 3],
        ['features.1.bn.bias', 0.25],
      ]);
      const deltas = async (lrScale?: ReadonlyMap<string, number>) => {
        const h = await StepHarness.open(
          buildTrainingGraph(model, { loss: { kind: 'cross-entropy' }, optimizer, ...(lrScale ? { lrScale } : {}) }),
        );
        const before = new Map(names.map((name) => [name, Float64Array.from(h.value(name))]));
        await h.step(batch, 0.05, 1);
        const out = new Map(names.map((name) => [name, before.get(name)!.map((w, k) => w - h.value(name)[k]!)]));
        await h.release();
        return out;
      };
      const [plain, withScales] = [await deltas(), await deltas(scaled)];
      for (const name of names)
        expectUpdate(
          name,
          new Float64Array(plain.get(name)!.length),
          withScales.get(name)!.map((d) => -d),
          plain.get(name)!.map((d) => d * (scaled.get(name) ?? 1)),
        );
    });
  }

  it('a learning-rate multiplier for a value that is not trained, or not above 0, is a usage error', () => {
    const build = (lrScale: ReadonlyMap<string, number>) => () =>
      buildTrainingGraph(model, {
        loss: { kind: 'cross-entropy' },
        optimizer: { kind: 'sgd', momentum: 0, nesterov: false, weightDecay: 0 },
        lrScale,
      });
    expect(build(new Map([['nope', 2]]))).toThrow(/learning-rate multiplier for 'nope'.*not a trainable parameter/);
    expect(build(new Map([['head.fc.weight', 0]]))).toThrow(/multiplier 0 for 'head.fc.weight'.*above 0/);
  });
});

describe('training step: BatchNormalization running statistics', () => {
  for (const statistics of ['reductions', 'fused'] as const)
    it(`follow PyTorch: (1 − m)·old + m·batch mean, and m·unbiased batch variance (statistics by ${statistics})`, async () => {
      const model = gapGemmHead();
      const batch = syntheticBatch(BATCH_DIMS, CLASSES, 4);
      const tg = buildTrainingGraph(
        model,
        {
          loss: { kind: 'cross-entropy' },
          optimizer: { kind: 'sgd', momentum: 0.9, nesterov: false, weightDecay: 0 },
          bnMomentum: 0.2,
        },
        { batchNormStatistics: statistics },
      );
      expect(tg.model.graph.nodeList().some((n) => n.getInt('training_mode', 0) === 1)).toBe(statistics === 'fused');
      const stats = tg.state.filter((s) => s.name.includes('running'));
      expect(stats.map((s) => s.name)).toEqual([
        'features.0.bn.running_mean',
        'features.0.bn.running_var',
        'features.1.bn.running_mean',
        'features.1.bn.running_var',
      ]);
      const conv = model.graph
        .nodeList()
        .find((n) => n.name === 'features.0.conv')!
        .output(0);
      const activation = (
        await runWithIntermediates(model, { input: batch.data }, [conv], { optimization: 'disabled' })
      )[conv.name]!;
      const [n, c, hw] = [activation.dims[0]!, activation.dims[1]!, activation.dims[2]! * activation.dims[3]!];
      const x = activation.data as Float32Array;
      const h = await StepHarness.open(tg);
      const oldMean = Float64Array.from(h.value('features.0.bn.running_mean'));
      const oldVar = Float64Array.from(h.value('features.0.bn.running_var'));
      await h.step(batch, 0.1, 1);
      const count = n * hw;
      for (let channel = 0; channel < c; channel++) {
        let sum = 0;
        let squares = 0;
        for (let s = 0; s < n; s++) for (let p = 0; p < hw; p++) sum += x[(s * c + channel) * hw + p]!;
        const mean = sum / count;
        for (let s = 0; s < n; s++)
          for (let p = 0; p < hw; p++) squares += (x[(s * c + channel) * hw + p]! - mean) ** 2;
        const unbiased = squares / (count - 1);
        expect(h.value('features.0.bn.running_mean')[channel]).toBeCloseTo(0.8 * oldMean[channel]! + 0.2 * mean, 5);
        const wantVar = 0.8 * oldVar[channel]! + 0.2 * unbiased;
        expect(Math.abs(h.value('features.0.bn.running_var')[channel]! - wantVar)).toBeLessThanOrEqual(1e-5 * wantVar);
      }
      await h.release();
    });

  it('fused statistics train step for step like the reductions (loss, parameters, running statistics)', async () => {
    const spec: TrainingSpec = {
      loss: { kind: 'cross-entropy' },
      optimizer: { kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
    };
    const [a, b] = (await Promise.all(
      (['reductions', 'fused'] as const).map((batchNormStatistics) =>
        // all graph optimisations, as training runs it (a merged or in-place buffer would show here)
        StepHarness.open(buildTrainingGraph(gapGemmHead(), spec, { batchNormStatistics }), 'all'),
      ),
    )) as [StepHarness, StepHarness];
    for (let step = 1; step <= 3; step++) {
      const batch = syntheticBatch(BATCH_DIMS, CLASSES, 10 + step);
      const [la, lb] = [await a.step(batch, 0.1, step), await b.step(batch, 0.1, step)];
      const loss = (o: Outputs, h: StepHarness) => Number(o[h.graph.outputs.loss]!.data[0]);
      expect(Math.abs(loss(la, a) - loss(lb, b))).toBeLessThanOrEqual(1e-5 * Math.abs(loss(la, a)));
      for (const c of [...a.graph.params, ...a.graph.state]) {
        const [x, y] = [a.value(c.name), b.value(c.name)];
        const scale = Math.max(1, ...x.map(Math.abs));
        let worst = 0;
        for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
        expect(worst, c.name).toBeLessThanOrEqual(1e-5 * scale);
      }
    }
    await Promise.all([a.release(), b.release()]);
  });
});

describe('training step: masks and frozen parameters', () => {
  const model = gapGemmHead();
  const batch = syntheticBatch(BATCH_DIMS, CLASSES, 5);
  const maskOf = (dims: readonly number[], seed: number) => {
    const random = new Random(seed);
    return Tensor.float32(
      dims,
      Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => (random.next() < 0.5 ? 0 : 1)),
    );
  };
  const weight = (name: string) => model.graph.initializers.get(name)!.constValue!;

  for (const optimizer of [
    { kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 5e-3 },
    { kind: 'adamw', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 },
  ] as OptimizerSpec[]) {
    it(`masked entries stay exactly 0 over 5 ${optimizer.kind} steps; the others move`, async () => {
      const masks = new Map([
        ['features.1.conv.weight', maskOf(weight('features.1.conv.weight').dims, 7)],
        ['head.fc.weight', maskOf(weight('head.fc.weight').dims, 8)],
      ]);
      const tg = buildTrainingGraph(model, { loss: { kind: 'cross-entropy' }, optimizer, masks });
      const h = await StepHarness.open(tg);
      for (const [name, mask] of masks)
        expect([...h.value(name)].every((w, k) => mask.data[k] === 1 || w === 0)).toBe(true);
      const start = new Map([...masks.keys()].map((name) => [name, Float32Array.from(h.value(name))]));
      for (let step = 1; step <= 5; step++) await h.step(batch, 0.05, step);
      for (const [name, mask] of masks) {
        const now = h.value(name);
        const masked = [...now].filter((_, k) => mask.data[k] === 0);
        const moved = [...now].filter((w, k) => mask.data[k] === 1 && w !== start.get(name)![k]).length;
        expect(masked.length).toBeGreaterThan(0);
        expect(
          masked.every((w) => w === 0),
          `${name} masked entries`,
        ).toBe(true);
        expect(moved, `${name} unmasked entries that moved`).toBe(now.length - masked.length);
      }
      await h.release();
    });
  }

  it("frozen parameters are not carried, stay the model's initializers, and layers around them still train", async () => {
    const frozen = ['features.0.conv.weight', 'features.1.bn.weight'];
    const tg = buildTrainingGraph(model, {
      loss: { kind: 'cross-entropy' },
      optimizer: { kind: 'sgd', momentum: 0.9, nesterov: false, weightDecay: 0 },
      frozen,
    });
    for (const name of frozen) {
      expect(tg.params.map((p) => p.name)).not.toContain(name);
      const kept = tg.model.graph.initializers.get(name)!.constValue!;
      expect([...(kept.data as Float32Array)]).toEqual([...(weight(name).data as Float32Array)]);
    }
    const h = await StepHarness.open(tg);
    const before = Float32Array.from(h.value('features.0.bn.weight'));
    const first = await h.step(batch, 0.1, 1);
    const second = await h.step(batch, 0.1, 2);
    expect(Number(second.loss!.data[0])).toBeLessThan(Number(first.loss!.data[0]));
    expect([...h.value('features.0.bn.weight')]).not.toEqual([...before]);
    await h.release();
  });

  it('unknown frozen or mask names are usage errors', () => {
    const base: TrainingSpec = {
      loss: { kind: 'cross-entropy' },
      optimizer: { kind: 'sgd', momentum: 0, nesterov: false, weightDecay: 0 },
    };
    expect(() => buildTrainingGraph(model, { ...base, frozen: ['nope'] })).toThrow(/frozen parameter 'nope'/);
    expect(() =>
      buildTrainingGraph(model, {
        ...base,
        masks: new Map([['features.0.bn.running_mean', Tensor.float32([8], new Float32Array(8))]]),
      }),
    ).toThrow(/not a trainable parameter/);
    expect(() =>
      buildTrainingGraph(model, {
        ...base,
        masks: new Map([['head.fc.weight', Tensor.float32([2], new Float32Array(2))]]),
      }),
    ).toThrow(/has shape \[2\]/);
  });
});

describe('training step: loss values and gradients by hand', () => {
  /** logits = x·Wᵀ + b over [N, 6] inputs, 5 classes. */
  function linearModel(): Model {
    const random = new Random(61);
    const b = new GraphBuilder({ opset: 17, seed: 61 });
    const x = b.input('input', ['N', 6]);
    const w = b.initializer('fc.weight', Tensor.float32([5, 6], random.normals(30, 0.5)));
    const bias = b.initializer('fc.bias', Tensor.float32([5], random.normals(5, 0.1)));
    const logits = b.graph
      .addNode('Gemm', [x, w, bias], { attributes: [attr.int('transB', 1)], outputs: ['logits'] })
      .output(0);
    b.output(logits, { dtype: DataType.FLOAT, shape: ['N', 5] });
    return b.model;
  }
  const softmax = (z: readonly number[], t = 1) => {
    const max = Math.max(...z.map((v) => v / t));
    const e = z.map((v) => Math.exp(v / t - max));
    const s = e.reduce((a, v) => a + v, 0);
    return e.map((v) => v / s);
  };
  const rows = (data: ArrayLike<number>, n: number, width: number) =>
    Array.from({ length: n }, (_, r) => Array.from({ length: width }, (_, k) => data[r * width + k]!));

  async function run(
    loss: LossSpec,
    teacher?: Float32Array,
  ): Promise<{ out: Outputs; logits: number[][]; x: number[][]; labels: number[]; gradW: number[][] }> {
    const model = linearModel();
    const tg = buildTrainingGraph(model, {
      loss,
      optimizer: { kind: 'sgd', momentum: 0, nesterov: false, weightDecay: 0 },
    });
    const h = await StepHarness.open(tg);
    const batch = syntheticBatch([4, 6], 5, 9);
    const w0 = Float32Array.from(h.value('fc.weight'));
    const out = await h.step(
      { ...batch, teacherLogits: teacher && toOrtTensor(DataType.FLOAT, [4, 5], teacher) },
      1,
      1,
    );
    const gradW = rows(
      w0.map((w, k) => w - h.value('fc.weight')[k]!),
      5,
      6,
    );
    await h.release();
    const labels = [...(batch.labels.data as BigInt64Array)].map(Number);
    return {
      out,
      logits: rows(out[tg.outputs.logits]!.data as Float32Array, 4, 5),
      x: rows(batch.data.data as Float32Array, 4, 6),
      labels,
      gradW,
    };
  }

  /** Σ_n dz_n ⊗ x_n. */
  const weightGradient = (dz: number[][], x: number[][]) =>
    Array.from({ length: 5 }, (_, o) =>
      Array.from({ length: 6 }, (_, i) => dz.reduce((s, row, n) => s + row[o]! * x[n]![i]!, 0)),
    );
  const expectClose = (got: number[][], want: number[][]) => {
    const scale = Math.max(...want.flat().map(Math.abs));
    got.flat().forEach((g, k) => expect(Math.abs(g - want.flat()[k]!)).toBeLessThanOrEqual(1e-4 * scale));
  };

  it('cross-entropy with label smoothing 0.1: loss value and ∂W', async () => {
    const { out, logits, x, labels, gradW } = await run({ kind: 'cross-entropy', labelSmoothing: 0.1 });
    const eps = 0.1;
    let loss = 0;
    const dz = logits.map((z, n) => {
      const p = softmax(z);
      loss += -p.reduce((s, pk, k) => s + ((1 - eps) * (k === labels[n] ? 1 : 0) + eps / 5) * Math.log(pk), 0) / 4;
      return p.map((pk, k) => (pk - ((1 - eps) * (k === labels[n] ? 1 : 0) + eps / 5)) / 4);
    });
    expect(Number(out.loss!.data[0])).toBeCloseTo(loss, 5);
    expectClose(gradW, weightGradient(dz, x));
  });

  it('distillation T = 3, α = 0.6: loss = α·T²·KL(p_t ‖ p_s) + (1 − α)·CE, and ∂W', async () => {
    const [T, alpha] = [3, 0.6];
    const teacher = new Random(62).normals(20, 2);
    const { out, logits, x, labels, gradW } = await run({ kind: 'distill', temperature: T, alpha }, teacher);
    const t = rows(teacher, 4, 5);
    let loss = 0;
    const dz = logits.map((z, n) => {
      const [ps, pt, p] = [softmax(z, T), softmax(t[n]!, T), softmax(z)];
      const kl = pt.reduce((s, q, k) => s + q * (Math.log(q) - Math.log(ps[k]!)), 0);
      loss += (alpha * T * T * kl - (1 - alpha) * Math.log(p[labels[n]!]!)) / 4;
      return z.map((_, k) => (alpha * T * (ps[k]! - pt[k]!) + (1 - alpha) * (p[k]! - (k === labels[n] ? 1 : 0))) / 4);
    });
    expect(Number(out.loss!.data[0])).toBeCloseTo(loss, 5);
    expectClose(gradW, weightGradient(dz, x));
  });
});

describe('models in other export styles', () => {
  /** Conv(Constant weight) → BN(Constant statistics) → GAP → Flatten → Gemm, input [N, 2, H, W]. */
  function constantWeights(spatial: number | string): Model {
    const random = new Random(81);
    const b = new GraphBuilder({ opset: 13 });
    const constant = (name: string, dims: number[], data: Float32Array) =>
      b.graph
        .addNode('Constant', [], { attributes: [attr.tensor('value', Tensor.float32(dims, data))], outputs: [name] })
        .output(0);
    const ones = (n: number) => new Float32Array(n).fill(1);
    const x = b.input('x', ['N', 2, spatial, spatial]);
    const conv = b.op('Conv', [x, constant('conv_w', [4, 2, 3, 3], random.normals(72, 0.4))], { pads: [1, 1, 1, 1] });
    const bn = b.op('BatchNormalization', [
      conv,
      constant('bn_scale', [4], ones(4)),
      constant('bn_offset', [4], new Float32Array(4)),
      constant('bn_mean', [4], new Float32Array(4)),
      constant('bn_var', [4], ones(4)),
    ]);
    const flat = b.op('Flatten', [b.op('GlobalAveragePool', [b.op('Relu', [bn])])], { axis: 1 });
    const logits = b.graph
      .addNode(
        'Gemm',
        [flat, constant('fc_w', [3, 4], random.normals(12, 0.5)), constant('fc_b', [3], new Float32Array(3))],
        { attributes: [attr.int('transB', 1)], outputs: ['logits'] },
      )
      .output(0);
    b.output(logits, { dtype: DataType.FLOAT, shape: ['N', 3] });
    return b.model;
  }

  it('weights held in Constant nodes (paddle2onnx style) train under their value names', async () => {
    const tg = buildTrainingGraph(constantWeights(6), {
      loss: { kind: 'cross-entropy' },
      optimizer: { kind: 'sgd', momentum: 0.9, nesterov: false, weightDecay: 0 },
    });
    expect(tg.params.map((p) => p.name)).toEqual(['conv_w', 'bn_scale', 'bn_offset', 'fc_w', 'fc_b']);
    expect(tg.state.map((s) => s.name)).toContain('bn_mean');
    const h = await StepHarness.open(tg, 'all');
    const batch = syntheticBatch([4, 2, 6, 6], 3, 1);
    const losses: number[] = [];
    for (let step = 1; step <= 10; step++) losses.push(Number((await h.step(batch, 0.1, step)).loss!.data[0]));
    await h.release();
    expect(losses[9]!).toBeLessThan(losses[0]!);
  });

  it('dynamic spatial dims: a typed error naming the value, fixed by inputShapes', async () => {
    const spec: TrainingSpec = {
      loss: { kind: 'cross-entropy' },
      optimizer: { kind: 'sgd', momentum: 0, nesterov: false, weightDecay: 0 },
    };
    expect(() => buildTrainingGraph(constantWeights('H'), spec)).toThrow(/must be static|give the graph inputs/);
    const tg = buildTrainingGraph(constantWeights('H'), spec, { inputShapes: { x: ['N', 2, 6, 6] } });
    const h = await StepHarness.open(tg);
    const out = await h.step(syntheticBatch([3, 2, 6, 6], 3, 2), 0.1, 1);
    await h.release();
    expect(Number.isFinite(Number(out.loss!.data[0]))).toBe(true);
    expect([...out[tg.outputs.logits]!.dims]).toEqual([3, 3]);
  });
});

describe("buildTrainingGraph leaves the caller's model alone", () => {
  it('encodes to the same bytes before and after', () => {
    const model = gapGemmHead();
    const before = encodeModel(model).bytes;
    buildTrainingGraph(model, {
      loss: { kind: 'distill', temperature: 2, alpha: 0.5 },
      optimizer: { kind: 'adam', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
    });
    gradientModel(withReferenceLoss(model), { loss: 'loss', wrt: ['head.fc.weight'], trainingBatchNorm: true });
    expect(Buffer.compare(Buffer.from(encodeModel(model).bytes), Buffer.from(before))).toBe(0);
  });
});

describe('training step: a model that reads the update count (TrainingSpec.stepValue)', () => {
  it('sees each update, repeats it for the same update, and refuses a value that is not a float scalar', async () => {
    const model = gapGemmHead();
    const g = model.graph;
    const step = g.addInitializer('regroup.step', Tensor.float32([], [0]));
    const logits = g.outputs[0]!;
    const e = new Emitter(g, 17, 'noise');
    const noisy = e.add(logits, e.mul(emitUniformNoise(e, logits, step, 7), e.scalar(0.01, DataType.FLOAT)));
    noisy.type = logits.type;
    g.outputs[0] = noisy;
    const spec: TrainingSpec = {
      loss: { kind: 'cross-entropy' },
      optimizer: { kind: 'sgd', momentum: 0, nesterov: false, weightDecay: 0 },
      stepValue: 'regroup.step',
    };
    const graph = buildTrainingGraph(model, spec);
    expect(graph.model.graph.initializers.has('regroup.step')).toBe(false);
    const harness = await StepHarness.open(graph);
    try {
      const batch = syntheticBatch(BATCH_DIMS, CLASSES, 3);
      const logitsAt = async (update: number) =>
        Float32Array.from((await harness.step(batch, 0, update))[graph.outputs.logits]!.data as Float32Array);
      const [a, again, next] = [await logitsAt(1), await logitsAt(1), await logitsAt(2)];
      expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(again.buffer))).toBe(0);
      expect(a.some((v, i) => v !== next[i])).toBe(true);
    } finally {
      await harness.release();
    }
    g.setInitializer(step, Tensor.float32([1], [0], 'regroup.step'));
    expect(() => buildTrainingGraph(model, spec)).toThrow(/stepValue 'regroup.step' must be a scalar initializer/);
  });
});

describe('training step: monitored values (TrainingSpec.monitor)', () => {
  it('outputs each monitored scalar as the step computed it, and refuses a value that is not a float scalar', async () => {
    const model = gapGemmHead();
    const g = model.graph;
    const logits = g.outputs[0]!;
    const e = new Emitter(g, 17, 'watch');
    const mean = e.reduceMean(logits, [0, 1], false);
    const spec: TrainingSpec = {
      loss: { kind: 'cross-entropy' },
      optimizer: { kind: 'sgd', momentum: 0, nesterov: false, weightDecay: 0 },
      monitor: [mean.name],
    };
    const graph = buildTrainingGraph(model, spec);
    const output = graph.outputs.monitored.get(mean.name)!;
    const harness = await StepHarness.open(graph);
    try {
      const out = await harness.step(syntheticBatch(BATCH_DIMS, CLASSES, 5), 0.1, 1);
      const values = out[graph.outputs.logits]!.data as Float32Array;
      const expected = values.reduce((s, v) => s + v, 0) / values.length;
      expect((out[output]!.data as Float32Array)[0]).toBeCloseTo(expected, 5);
    } finally {
      await harness.release();
    }
    expect(() => buildTrainingGraph(model, { ...spec, monitor: [logits.name] })).toThrow(
      new RegExp(`monitored value '${logits.name}' is not a float scalar`),
    );
    expect(() => buildTrainingGraph(model, { ...spec, monitor: ['nope'] })).toThrow(
      /'nope' is not a value of the model/,
    );
  });
});
