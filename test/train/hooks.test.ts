/**
 * Training hooks (TrainOptions.hooks, a method's TrainingHooks): loss terms enter the
 * gradient exactly, fed tensors are inputs no update changes, and DCFF fine-tunes its full
 * filter banks through the in-graph fusion with P_top refreshed once per epoch — a resumed
 * hooked run ending bit for bit where an uninterrupted one does.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTrainingGraph } from '../../compiler/autodiff/training.js';
import type { LossTerm, TrainingSpec } from '../../compiler/autodiff/types.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { Random } from '../../compiler/util/random.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { dcff, refreshCodes } from '../../passes/methods/dcff.js';
import type { TrainingHooks } from '../../passes/methods/method.js';
import { openDataset } from '../../runtime/data/datasets.js';
import { presetSpec } from '../../runtime/data/preprocess.js';
import type { Dataset } from '../../runtime/data/types.js';
import { ort } from '../../runtime/session.js';
import { finetune, type FinetuneOptions } from '../../runtime/train/finetune.js';
import { StepRunner } from '../../runtime/train/step-runner.js';
import { train } from '../../runtime/train/trainer.js';
import { bnCnn, plainCnn } from './models.js';

ort.env.logLevel = 'error';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-hooks-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const SGD = { kind: 'sgd', momentum: 0, nesterov: false, weightDecay: 0 } as const;

function batch(seed: number, n = 4): { data: ort.Tensor; labels: ort.Tensor } {
  const random = new Random(seed);
  const data = new ort.Tensor('float32', random.normals(n * 28 * 28), [n, 1, 28, 28]);
  const labels = new ort.Tensor(
    'int64',
    BigInt64Array.from({ length: n }, () => BigInt(random.int(10))),
    [n],
  );
  return { data, labels };
}

async function stepOnce(model: Model, spec: TrainingSpec, lr: number) {
  const runner = await StepRunner.create(buildTrainingGraph(model, spec), { optimization: 'disabled' });
  try {
    const out = await runner.step({ ...batch(3), lr, step: 1 });
    return { loss: out.loss, values: runner.trainedValues(() => true) };
  } finally {
    await runner.release();
  }
}

describe('loss terms and fed tensors in the step model', () => {
  it('λ·Σw² adds λΣw² to the loss and −lr·2λ·w to the update of w (and nothing to the others)', async () => {
    const model = plainCnn();
    const lambda = 0.25;
    const lr = 0.1;
    const l2: LossTerm = (e, value) => {
      const w = value('conv2.weight');
      return e.mul(e.scalar(lambda, DataType.FLOAT), e.reduceSum(e.mul(w, w), [], false));
    };
    const plain = await stepOnce(model, { loss: { kind: 'cross-entropy' }, optimizer: SGD }, lr);
    const withTerm = await stepOnce(model, { loss: { kind: 'cross-entropy' }, optimizer: SGD, lossTerms: [l2] }, lr);
    const w = model.graph.initializers.get('conv2.weight')!.constValue!.toFloat64();
    const sumSquares = w.reduce((s, x) => s + x * x, 0);
    expect(Math.abs(withTerm.loss - plain.loss - lambda * sumSquares)).toBeLessThan(1e-5 * (1 + lambda * sumSquares));
    const trainedValue = (r: typeof plain, name: string) => r.values.get(name)!.data as Float32Array;
    const bad: string[] = [];
    const a = trainedValue(withTerm, 'conv2.weight');
    const b = trainedValue(plain, 'conv2.weight');
    for (let i = 0; i < w.length; i++) {
      const want = -lr * 2 * lambda * w[i]!;
      if (Math.abs(a[i]! - b[i]! - want) > 1e-6 + 1e-4 * Math.abs(want)) bad.push(`[${i}] ${a[i]! - b[i]!} vs ${want}`);
    }
    expect(bad.slice(0, 5)).toEqual([]);
    expect(
      Buffer.from(trainedValue(withTerm, 'conv1.weight').buffer).equals(
        Buffer.from(trainedValue(plain, 'conv1.weight').buffer),
      ),
    ).toBe(true);
  });

  it('a fed initializer is a step input that no update changes; setFed replaces it for the next steps', async () => {
    const model = plainCnn();
    const graph = buildTrainingGraph(model, {
      loss: { kind: 'cross-entropy' },
      optimizer: SGD,
      fed: ['conv1.bias'],
      trainable: ['head.fc.bias'],
    });
    expect(graph.fed.map((f) => f.name)).toEqual(['conv1.bias']);
    expect(graph.params.map((p) => p.name)).not.toContain('conv1.bias');
    expect(graph.model.graph.inputs.map((v) => v.name)).toContain('conv1.bias');
    const runner = await StepRunner.create(graph, { optimization: 'disabled' });
    try {
      const { data, labels } = batch(5);
      const before = runner
        .trainedValues(() => true)
        .get('conv1.bias')!
        .data.slice();
      await runner.step({ data, labels, lr: 0.1, step: 1 });
      expect(Array.from(runner.trainedValues(() => true).get('conv1.bias')!.data as Float32Array)).toEqual(
        Array.from(before as Float32Array),
      );
      const logits = (await runner.forward(data, labels)).data as Float32Array;
      runner.setFed('conv1.bias', Tensor.float32([6], new Float32Array(6).fill(3)));
      const moved = (await runner.forward(data, labels)).data as Float32Array;
      expect(moved.some((x, i) => x !== logits[i])).toBe(true);
      expect(() => runner.setFed('conv1.bias', Tensor.float32([5], new Float32Array(5)))).toThrow(
        /must keep shape \[6\]/,
      );
      expect(() => runner.setFed('conv2.bias', Tensor.float32([8], new Float32Array(8)))).toThrow(/not a fed tensor/);
    } finally {
      await runner.release();
    }
    expect(() =>
      buildTrainingGraph(model, {
        loss: { kind: 'cross-entropy' },
        optimizer: SGD,
        fed: ['conv1.bias'],
        trainable: ['conv1.bias'],
      }),
    ).toThrow(/trainable and as frozen or fed/);
  });
});

describe('DCFF fine-tuning through the hooks', () => {
  const spec = presetSpec('mnist', { name: 'input' });
  let trainSet: Dataset;
  beforeAll(async () => {
    trainSet = await openDataset('mnist:train');
  });

  const options = (hooks: TrainingHooks, overrides: Partial<FinetuneOptions> = {}): FinetuneOptions => ({
    train: trainSet,
    spec,
    epochs: 2,
    batchSize: 32,
    limit: 64,
    seed: 4,
    hooks,
    optimizer: { kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 0 },
    schedule: { kind: 'cosine', baseLr: 0.05 },
    ...overrides,
  });

  async function structured() {
    const s = await dcff.structure(bnCnn(), { fromScratch: false, roundTo: 1 }, 0.6, {
      common: { keepMacs: 0.6, seed: 0, hasData: true },
      log: () => {},
      note: () => {},
    });
    expect(s.hooks!.frozen!.length).toBeGreaterThan(0);
    return s;
  }

  /** The hooks, recording every beforeEpoch call and the model handed to finish. */
  function recording(hooks: TrainingHooks) {
    const calls: { epoch: number; epochs: number; returned: Map<string, Tensor> }[] = [];
    let trained: Model | undefined;
    const wrapped: TrainingHooks = {
      ...hooks,
      beforeEpoch: (epoch, epochs, current) => {
        const returned = new Map(hooks.beforeEpoch!(epoch, epochs, current));
        calls.push({ epoch, epochs, returned });
        return returned;
      },
      finish: (model) => {
        trained = model;
        return hooks.finish!(model);
      },
    };
    return { wrapped, calls, trained: () => trained! };
  }

  it('updates every row of the full filter banks, keeps the structured P_top in epoch 0, refreshes it before every later epoch and holds it within the epoch; returns the baked model', async () => {
    const s = await structured();
    const { wrapped, calls, trained } = recording(s.hooks!);
    const result = await finetune(s.model, options(wrapped));
    expect(calls.map((c) => [c.epoch, c.epochs])).toEqual([
      [0, 2],
      [1, 2],
    ]);
    const training = trained();
    for (const name of s.hooks!.trainable!) {
      const before = s.hooks!.model!.graph.initializers.get(name)!.constValue!;
      const after = training.graph.initializers.get(name)!.constValue!.toFloat64();
      const rowSize = before.size / before.dims[0]!;
      const initial = before.toFloat64();
      const unchangedRows = Array.from({ length: before.dims[0]! }, (_, row) => row).filter((row) =>
        initial.subarray(row * rowSize, (row + 1) * rowSize).every((x, k) => x === after[row * rowSize + k]),
      );
      expect({ name, unchangedRows }).toEqual({ name, unchangedRows: [] });
    }
    for (const name of s.hooks!.frozen!) {
      const last = calls[1]!.returned.get(name)!;
      expect(
        Buffer.from(training.graph.initializers.get(name)!.constValue!.rawBytes()).equals(Buffer.from(last.rawBytes())),
        name,
      ).toBe(true);
      // Epoch 0 keeps the codes the structure was built with; epoch 1 refreshes them at T(1) ≠ T(0).
      expect(calls[0]!.returned.size).toBe(0);
      const initial = s.hooks!.model!.graph.initializers.get(name)!.constValue!;
      expect(Buffer.from(last.rawBytes()).equals(Buffer.from(initial.rawBytes()))).toBe(false);
    }
    const ops = [...result.model.graph.nodes()].map((n) => n.opType);
    expect(ops).not.toContain('MatMul');
    expect(ops).toEqual([...s.model.graph.nodes()].map((n) => n.opType));
    result.model.graph.verify();
  }, 60_000);

  it('a hooked run stopped after epoch 1 and resumed ends bit for bit where the straight run does', async () => {
    const s = await structured();
    const straightFile = path.join(tmp, 'straight.onnx');
    const resumedFile = path.join(tmp, 'resumed.onnx');
    const straight = await train(s.model, options(s.hooks!, { checkpoint: straightFile }));
    await train(s.model, options(s.hooks!, { checkpoint: resumedFile, stopAfterEpochs: 1 }));
    const resumed = await train(s.model, options(s.hooks!, { checkpoint: resumedFile, resume: true }));
    expect(resumed.resumedAfter).toBe(1);
    expect(resumed.lossCurve).toEqual(straight.lossCurve);
    const bytes = (file: string) =>
      new Map(
        [...loadModel(file).graph.initializers].map(([name, v]) => [name, Buffer.from(v.constValue!.rawBytes())]),
      );
    const [a, b] = [bytes(straightFile), bytes(resumedFile)];
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [name, data] of a) expect(data.equals(b.get(name)!), name).toBe(true);
    expect([...loadModel(straightFile).graph.nodes()].some((n) => n.opType === 'MatMul')).toBe(false); // checkpoints are baked
    await expect(
      train(s.model, options({ ...s.hooks!, trainable: [] }, { checkpoint: resumedFile, resume: true })),
    ).rejects.toThrow(/other settings \(hookTrainable/);
  }, 90_000);

  it('masks come from the trained model, never from its fed tensors: a P_top with exact zeros (T = 1e4) trains', async () => {
    const s = await structured();
    const model = s.hooks!.model!;
    const current = (name: string) => model.graph.initializers.get(name)!.constValue!;
    const groups = s.hooks!.frozen!.map((pTop) => ({
      pTop,
      keep: current(pTop).dims[0]!,
      channels: current(pTop).dims[1]!,
      weights: s.hooks!.trainable!.filter(
        (n) =>
          n.endsWith('.weight.full') && current(n).dims[0] === current(pTop).dims[1] && pTop.startsWith(n.slice(0, -5)),
      ),
      tensors: [],
    }));
    for (const [name, tensor] of refreshCodes(groups, 1e4, current))
      model.graph.setInitializer(model.graph.initializers.get(name)!, tensor);
    expect(s.hooks!.frozen!.some((name) => current(name).toFloat64().includes(0))).toBe(true);
    const result = await finetune(s.model, options({ ...s.hooks!, beforeEpoch: undefined }, { epochs: 1, limit: 32 }));
    expect(result.masks.tensors).toBe(0);
  });

  it('refuses the local phase with hooks that train another model and cannot adopt a refit', async () => {
    const s = await structured();
    const { adopt: _, ...withoutAdopt } = s.hooks!;
    await expect(finetune(s.model, options(withoutAdopt, { local: 'then-global', dense: bnCnn() }))).rejects.toThrow(
      /trains another graph/,
    );
  });

  it('runs the local phase first and trains the adopted refit when the hooks can adopt it', async () => {
    const s = await structured();
    const result = await finetune(s.model, options(s.hooks!, { local: 'then-global', dense: bnCnn() }));
    expect(result.local?.layers.some((l) => l.status === 'refitted')).toBe(true);
    expect(result.global?.steps).toBeGreaterThan(0);
    result.model.graph.verify();
  });
});
