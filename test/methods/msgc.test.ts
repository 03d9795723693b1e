/**
 * MSGC (passes/methods/msgc.ts): which convs get heads, that the dynamic form computes the
 * dense model while every mask is open, that the static form computes what the dynamic form
 * computes when the masks do not depend on the image, and the command end to end — a static
 * grouped model and the dynamic one beside it, byte-identical for the same seed, and the refusals.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataType } from '../../compiler/ir/dtype.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import type { Model } from '../../compiler/ir/model.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { loadModel, saveModel } from '../../compiler/onnx/io.js';
import { Random } from '../../compiler/util/random.js';
import { validateReport } from '../../cli/report/schema.js';
import { lowerGrouped } from '../../passes/lower-grouped.js';
import type { Measurements, StructureContext } from '../../passes/methods/method.js';
import { msgc, type MsgcOptions } from '../../passes/methods/msgc.js';
import { resnetTiny } from '../../fixtures/models.js';
import { randomFeeds } from '../../runtime/inputs.js';
import { runWithIntermediates } from '../../runtime/session.js';
import { expectReproduces } from '../passes/compare.js';
import { regroup } from '../helpers/cli.js';
import { PROJECT_ROOT, SHARED_FIXTURES, haveShared, sharedModel } from '../helpers/shared.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-msgc-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const TINY = path.join(PROJECT_ROOT, 'fixtures/models/resnet-tiny.onnx');

const OPTIONS: MsgcOptions = { heads: 4, maskThreshold: 0.5, maskLrScale: 100, minGroupWidth: 8, minRealised: 0.01 };

/** Mean |value| per channel over 16 seeded random images, by running the model (the pipeline calibrates on data). */
const measure = {
  async channelMeanAbs(model: Model, values: readonly { name: string }[]) {
    const out = await runWithIntermediates(model, randomFeeds(model, { seed: 3, batch: 16 }), values as never);
    return new Map(
      values.map((v) => {
        const t = out[v.name]!;
        const [n, c] = [t.dims[0]!, t.dims[1]!];
        const per = (t.data as Float32Array).length / (n * c);
        const mean = new Float64Array(c);
        (t.data as Float32Array).forEach((x, i) => (mean[Math.floor(i / per) % c]! += Math.abs(x) / (n * per)));
        return [v, mean] as const;
      }),
    );
  },
} as unknown as Measurements;

async function structure(model: Model, keep: number, options = OPTIONS, batch = 64) {
  const notes: string[] = [];
  const ctx: StructureContext = {
    common: { keepMacs: keep, seed: 0, hasData: true, channelMultiple: 8, latencyBatch: batch },
    measure,
    log: () => {},
    note: (line) => notes.push(line),
  };
  return { structured: await msgc.structure(model, options, keep, ctx), notes };
}

/** The training model with every gate network's last conv set: weight 0 (masks the same for every image), bias from `bias(k)`. */
function constantMasks(training: Model, bias: (k: number) => number): Model {
  const model = training.clone().model;
  for (const [name, value] of model.graph.initializers) {
    const t = value.constValue!;
    if (name.endsWith('.msgc_gate.fc2.weight'))
      model.graph.setInitializer(value, Tensor.fromArray(DataType.FLOAT, t.dims, new Float32Array(t.size), { name }));
    if (name.endsWith('.msgc_gate.fc2.bias'))
      model.graph.setInitializer(
        value,
        Tensor.fromArray(
          DataType.FLOAT,
          t.dims,
          Float32Array.from({ length: t.size }, (_, k) => bias(k)),
          { name },
        ),
      );
  }
  return model;
}

describe('msgc', () => {
  it('puts a gate on every residual block, heads per conv as the latency model allows', async () => {
    const { structured, notes } = await structure(resnetTiny(), 0.5);
    const hooks = structured.hooks!;
    expect(hooks.stepValue).toBe('msgc.step');
    expect(hooks.monitor).toHaveLength(1);
    // The gate networks' parameters learn faster than the backbone.
    expect([...hooks.lrScale!.values()].every((s) => s === 100)).toBe(true);
    expect([...hooks.lrScale!.keys()].filter((k) => k.endsWith('fc2.bias'))).toHaveLength(3);
    const text = notes.join('\n');
    // 16 channels: two heads of 8 filters; 32 and 64: four.
    expect(text).toMatch(/layer1\.1\.conv×2/);
    expect(text).toMatch(/layer3\.1\.conv×4/);
    // At batch 1 the latency model offers this small network no heads: input-channel pruning.
    const strict = await structure(resnetTiny(), 0.5, { ...OPTIONS, minRealised: 0.85 }, 1);
    expect(strict.notes.join('\n')).not.toMatch(/×[2-4]/);
  });

  it('its dynamic form computes the dense model while every mask is open', async () => {
    const { structured } = await structure(resnetTiny(), 0.5);
    const dynamic = structured.hooks!.finish!(constantMasks(structured.hooks!.model!, () => 2));
    // One conv per head (2 on each of the 16-channel block's two convs, 4 on the 32- and 64-channel
    // blocks' four) and two 1×1 convs per gate network; the stem and shortcuts stay.
    const convs = (m: Model) => m.graph.nodeList().filter((n) => n.opType === 'Conv').length;
    expect(convs(dynamic) - convs(resnetTiny())).toBe(2 * (2 - 1) + 4 * (4 - 1) + 3 * 2);
    expect(dynamic.graph.initializers.has('msgc.step')).toBe(false);
    await expectReproduces(resnetTiny(), dynamic, 1e-5);
  });

  it('its static form computes what the dynamic form computes when the masks do not depend on the image (≤ 1e-5)', async () => {
    const { structured } = await structure(resnetTiny(), 0.5);
    const random = new Random(5);
    const signs = Array.from({ length: 4096 }, () => (random.uniform() < 0.45 ? -1 : 1));
    const dynamic = structured.hooks!.finish!(constantMasks(structured.hooks!.model!, (k) => signs[k % 4096]!));
    const learned = await structured.learned!(dynamic);
    expect(learned.connectivity.size).toBeGreaterThan(3);
    // Masks the same for every image: the static form keeps exactly what the dynamic one reads.
    expect(learned.figures!.staticMacsShare).toBeCloseTo(learned.figures!.dynamicMacsShare!, 9);
    expect(learned.macsRatio).toBeLessThan(0.75);
    const heads = [...learned.connectivity.values()].map((c) => c.clusters.length);
    expect(new Set(heads)).toEqual(new Set([2, 4]));
    const lowered = await lowerGrouped(learned.model, learned.connectivity, { simdBlock: 8, batch: 64 });
    await expectReproduces(dynamic, lowered.model, 1e-5);
    expect(learned.companions?.map((c) => c.suffix)).toEqual(['dynamic']);
  });

  it('compresses on data end to end: the static model and the dynamic one beside it, the same bytes for the same seed', async () => {
    const run = async (name: string) => {
      const out = path.join(tmp, `${name}.onnx`);
      const flags = ['--method', 'msgc', '--keep-macs', '0.6', '--latency-batch', '64', '--min-realised', '0.01'];
      const data = ['--data', 'mnist', '--limit', '256', '--eval-limit', '100', '--no-latency', '--json'];
      const r = await regroup('compress', TINY, '-o', out, ...flags, ...data);
      expect(r.code, r.stderr).toBe(0);
      return {
        out,
        dynamic: path.join(tmp, `${name}.dynamic.onnx`),
        stderr: r.stderr,
        report: validateReport(JSON.parse(r.stdout), 'stdout'),
      };
    };
    const [a, b] = [await run('a'), await run('b')];
    for (const file of ['out', 'dynamic'] as const)
      expect(Buffer.compare(fs.readFileSync(a[file]), fs.readFileSync(b[file])), file).toBe(0);
    const notes = a.report.notes.join('\n');
    expect(notes).toMatch(/msgc learned masks: the dynamic form keeps [\d.]+% of the MACs/);
    expect(notes).toMatch(/msgc dynamic form .*written to .*a\.dynamic\.onnx; top-1 [\d.]+%/);
    expect(notes).toMatch(/msgc training: the masks kept [\d.]+% of the MACs on average per epoch \(target 0.6\)/);
    // The dynamic form carries the gate networks; the static one none.
    const ops = (file: string) =>
      new Set(
        loadModel(file)
          .graph.nodeList()
          .map((n) => n.opType),
      );
    expect(ops(a.dynamic).has('GlobalAveragePool') && ops(a.dynamic).has('Less')).toBe(true);
    expect(ops(a.out).has('Less')).toBe(false);
  }, 180_000);

  it.skipIf(!haveShared)(
    'gates an opset-9 export (PyTorch ResNet-20): the static form keeps its opset, the dynamic form is upgraded to 13',
    async () => {
      const out = path.join(tmp, 'resnet20.onnx');
      const data = ['--data', path.join(SHARED_FIXTURES, 'data/cifar10-train-jpg'), '--limit', '128'];
      const test = ['--test-data', path.join(SHARED_FIXTURES, 'data/cifar10-test-jpg'), '--eval-limit', '50'];
      const flags = ['--method', 'msgc', '--keep-macs', '0.5', '--latency-batch', '64', '--no-latency', '--no-tune'];
      const r = await regroup('compress', sharedModel('resnet20'), '-o', out, ...flags, ...data, ...test);
      expect(r.code, r.stderr).toBe(0);
      expect(loadModel(out).opset('')).toBe(9);
      expect(loadModel(path.join(tmp, 'resnet20.dynamic.onnx')).opset('')).toBe(13);
    },
    120_000,
  );

  it('writes a network without residual blocks unchanged and says where gates can go and where not (exit 0)', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('image', ['N', 1, 28, 28]);
    const w = (name: string, dims: number[]) =>
      b.initializer(name, Tensor.float32(dims, new Array(dims.reduce((p, d) => p * d, 1)).fill(0.05)));
    const y = b.op('Conv', [x, w('w0', [8, 1, 3, 3])], { pads: [1, 1, 1, 1] });
    // An Add of a 1×1 conv and a ReLU of the same value: a residual shape with no spatial conv to split.
    const sum = b.op('Add', [b.op('Conv', [y, w('w1', [8, 8, 1, 1])]), b.op('Relu', [y])]);
    const pooled = b.op('Flatten', [b.op('GlobalAveragePool', [sum])]);
    b.output(b.op('Gemm', [pooled, w('fc', [10, 8])], { transB: 1 }));
    const input = path.join(tmp, 'plain.onnx');
    saveModel(b.model, input);
    const out = path.join(tmp, 'plain-out.onnx');
    const flags = ['--method', 'msgc', '--keep-macs', '0.5', '--data', 'mnist', '--limit', '128', '--no-latency'];
    const r = await regroup('compress', input, '-o', out, ...flags);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /msgc: no residual block to put a gate on — gates go on the input of a block whose Add sums a path of plain spatial convs.*; not here: .*no plain spatial conv between the block input and the Add/,
    );
    expect(loadModel(out).graph.initializers.get('w0')!.constValue!.toFloat64()).toEqual(
      b.model.graph.initializers.get('w0')!.constValue!.toFloat64(),
    );
    expect(fs.existsSync(path.join(tmp, 'plain-out.dynamic.onnx'))).toBe(false);
  }, 60_000);

  it('refuses what it cannot do with one clear line', async () => {
    const out = path.join(tmp, 'refused.onnx');
    const on = (...flags: string[]) => regroup('compress', TINY, '-o', out, '--method', 'msgc', ...flags);
    const noData = await on('--keep-macs', '0.5');
    expect(noData.code).not.toBe(0);
    expect(noData.stderr).toMatch(/msgc learns its masks while fine-tuning: pass --data/);
    const threshold = await on('--keep-macs', '0.5', '--data', 'mnist', '--mask-threshold', '0');
    expect(threshold.code).not.toBe(0);
    expect(threshold.stderr).toMatch(/--mask-threshold <fraction>' argument '0' is invalid/);
    const wrongMethod = await regroup(
      'compress',
      TINY,
      '-o',
      out,
      '--method',
      'l1',
      '--keep-macs',
      '0.5',
      '--heads',
      '2',
    );
    expect(wrongMethod.stderr).toMatch(/--heads.*msgc/);
    expect(fs.existsSync(out)).toBe(false);
  }, 60_000);
});
