/**
 * DGConv (passes/methods/dgconv.ts): which convs get gates, that the emitted Conv(group)
 * model computes what the gated training graph computes, that a run ending above its MACs
 * target is closed down to it, and the command end to end — a learned model that runs as
 * grouped convs, byte-identical for the same seed, and the refusals.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { loadModel, saveModel } from '../../compiler/onnx/io.js';
import { Random } from '../../compiler/util/random.js';
import { validateReport } from '../../cli/report/schema.js';
import { dgconv, gateableLayers, type DgconvOptions } from '../../passes/methods/dgconv.js';
import type { StructureContext, Structured } from '../../passes/methods/method.js';
import { lowerGrouped } from '../../passes/lower-grouped.js';
import { resnetTiny } from '../../fixtures/models.js';
import { expectReproduces } from '../passes/compare.js';
import { regroup } from '../helpers/cli.js';
import { PROJECT_ROOT, SHARED_FIXTURES, haveShared, sharedModel } from '../helpers/shared.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-dgconv-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const TINY = path.join(PROJECT_ROOT, 'fixtures/models/resnet-tiny.onnx');

const OPTIONS: DgconvOptions = { init: 'open', order: 'contiguous', minGroupWidth: 8, minRealised: 0.01 };

async function structure(model: Model, keep: number, options = OPTIONS) {
  const notes: string[] = [];
  const ctx: StructureContext = {
    common: { keepMacs: keep, seed: 0, hasData: true, channelMultiple: 8, latencyBatch: 64 },
    log: () => {},
    note: (line) => notes.push(line),
  };
  return { structured: await dgconv.structure(model, options, keep, ctx), notes };
}

/** The training model with θ of every gated layer set by `theta(layer index, factor)`. */
function withGates(structured: Structured, theta: (layer: number, factor: number) => number): Model {
  const model = structured.hooks!.model!.clone().model;
  structured
    .hooks!.trainable!.filter((name) => name.endsWith('.dgconv_gates'))
    .forEach((name, layer) => {
      const value = model.graph.initializers.get(name)!;
      const k = value.constValue!.size;
      model.graph.setInitializer(
        value,
        Tensor.fromArray(
          DataType.FLOAT,
          [k],
          Float32Array.from({ length: k }, (_, f) => theta(layer, f)),
          { name },
        ),
      );
    });
  return model;
}

describe('dgconv', () => {
  it('gates every conv whose channel counts share a factor, no finer than the group width', () => {
    const { layers, skipped } = gateableLayers(resnetTiny(), { minWidth: 8, simdBlock: 8, batch: 64, realised: 0.01 });
    const factors = Object.fromEntries(layers.map((l) => [`${l.outChannels}x${l.inChannels}`, l.factors.join('·')]));
    // 16 channels: groups of ≥ 8 allow one factor 2; 32 two; 64 three.
    expect(factors).toMatchObject({ '16x16': '2', '32x32': '2·2', '64x64': '2·2·2', '32x16': '2' });
    expect(skipped.join('; ')).toMatch(/16 filters and 1 inputs share no factor/);
    // At batch 1 the latency model keeps the tiny network's narrow groups dense, and says so.
    const strict = gateableLayers(resnetTiny(), { minWidth: 8, simdBlock: 8, batch: 1, realised: 0.85 });
    expect(strict.layers.length).toBeLessThan(layers.length);
    expect(strict.skipped.join('; ')).toMatch(
      /would realise -?\d+% of their MACs saving at batch 1 \(modelled; 85% wanted/,
    );
  });

  it('emits Conv(group) that computes what the gated training graph computes (≤ 1e-5)', async () => {
    // Target 1: nothing is closed after training, so the finished model is the trained gates' own.
    const { structured } = await structure(resnetTiny(), 1);
    const random = new Random(7);
    const draws = Array.from({ length: 64 }, () => random.normal());
    const trained = withGates(structured, (layer, factor) => draws[(layer * 3 + factor) % 64]!);
    const finished = structured.hooks!.finish!(trained);
    const learned = await structured.learned!(finished);
    expect(learned.figures!.gatesForced).toBe(0);
    const groups = [...learned.connectivity.values()].map((c) => c.clusters.length);
    expect(groups.length).toBeGreaterThan(1);
    const lowered = await lowerGrouped(finished, learned.connectivity, { simdBlock: 8, form: 'grouped' });
    const grouped = lowered.model.graph.nodeList().filter((n) => n.opType === 'Conv' && n.getInt('group', 1) > 1);
    expect(grouped.map((n) => n.getInt('group', 1)).sort()).toEqual([...groups].sort());
    expect(lowered.choices.every((c) => c.form === 'grouped')).toBe(true);
    await expectReproduces(trained, lowered.model, 1e-5);
    // The executed MACs are the learned ones.
    const macs = (m: Model) => computeCost(m, inferShapes(m)).totals.macs;
    expect(macs(lowered.model) / macs(resnetTiny())).toBeCloseTo(learned.macsRatio, 6);
  });

  it("lowers the paper's interleaved (kronecker) groups to what the gated graph computes", async () => {
    const { structured } = await structure(resnetTiny(), 1, { ...OPTIONS, order: 'kronecker' });
    // Close only the last factor of every layer: groups interleaved across the channels.
    const sizes = structured.hooks!.trainable!.filter((n) => n.endsWith('.dgconv_gates'));
    const k = sizes.map((name) => structured.hooks!.model!.graph.initializers.get(name)!.constValue!.size);
    const trained = withGates(structured, (layer, factor) => (factor === k[layer]! - 1 ? -0.1 : 0.1));
    const finished = structured.hooks!.finish!(trained);
    const learned = await structured.learned!(finished);
    const interleaved = [...learned.connectivity.values()].find((c) => {
      const f = c.clusters[0]!.filters;
      return f[f.length - 1]! - f[0]! + 1 > f.length; // not one contiguous block
    });
    expect(interleaved).toBeDefined();
    const lowered = await lowerGrouped(finished, learned.connectivity, { simdBlock: 8 });
    await expectReproduces(trained, lowered.model, 1e-5);
  });

  it('closes the gates nearest to closing when training ends above the target', async () => {
    const { structured } = await structure(resnetTiny(), 0.6);
    const finished = structured.hooks!.finish!(withGates(structured, (layer, factor) => 0.01 * (1 + layer + factor)));
    const learned = await structured.learned!(finished);
    expect(learned.macsRatio).toBeLessThanOrEqual(0.6);
    expect(learned.figures!.gatesForced).toBeGreaterThan(0);
    // All gates open and a target of 1: nothing to close, nothing grouped.
    const { structured: dense } = await structure(resnetTiny(), 1);
    const open = await dense.learned!(dense.hooks!.finish!(withGates(dense, () => 0.05)));
    expect([open.macsRatio, open.connectivity.size, open.figures!.gatesForced]).toEqual([1, 0, 0]);
  });

  it('compresses on data end to end: grouped convs, the same bytes for the same seed', async () => {
    const run = async (name: string) => {
      const out = path.join(tmp, `${name}.onnx`);
      const flags = [
        '--method',
        'dgconv',
        '--keep-macs',
        '0.6',
        '--latency-batch',
        '64',
        '--min-realised',
        '0.01',
        '--data',
        'mnist',
        '--limit',
        '256',
      ];
      const r = await regroup('compress', TINY, '-o', out, ...flags, '--eval-limit', '100', '--no-latency', '--json');
      expect(r.code, r.stderr).toBe(0);
      return { out, report: validateReport(JSON.parse(r.stdout), 'stdout') };
    };
    const [a, b] = [await run('a'), await run('b')];
    expect(Buffer.compare(fs.readFileSync(a.out), fs.readFileSync(b.out))).toBe(0);
    const model = loadModel(a.out);
    expect(model.graph.nodeList().some((n) => n.opType === 'Conv' && n.getInt('group', 1) > 1)).toBe(true);
    expect(a.report.totals.macsAfter! / a.report.totals.macsBefore!).toBeLessThanOrEqual(0.6 + 1e-9);
    expect(a.report.notes.join('\n')).toMatch(/dgconv learned groups: .*×\d/);
  }, 120_000);

  it.skipIf(!haveShared)(
    'gates an opset-9 export (PyTorch ResNet-20) and writes grouped convs',
    async () => {
      const out = path.join(tmp, 'resnet20.onnx');
      const data = ['--data', path.join(SHARED_FIXTURES, 'data/cifar10-train-jpg')];
      const test = ['--test-data', path.join(SHARED_FIXTURES, 'data/cifar10-test-jpg'), '--eval-limit', '50'];
      const flags = ['--keep-macs', '0.5', '--latency-batch', '64', '--limit', '128', '--no-latency'];
      const r = await regroup(
        'compress',
        sharedModel('resnet20'),
        '-o',
        out,
        '--method',
        'dgconv',
        ...flags,
        ...data,
        ...test,
      );
      expect(r.code, r.stderr).toBe(0);
      const model = loadModel(out);
      expect(model.opset('')).toBe(9);
      expect(
        model.graph.nodeList().filter((n) => n.opType === 'Conv' && n.getInt('group', 1) > 1).length,
      ).toBeGreaterThan(3);
    },
    120_000,
  );

  it('writes a model with no groupable conv unchanged and says why (exit 0)', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('image', ['N', 1, 28, 28]);
    const conv = b.op('Conv', [x, b.initializer('w', Tensor.float32([8, 1, 3, 3], new Array(72).fill(0.1)))], {
      pads: [1, 1, 1, 1],
    });
    const pooled = b.op('Flatten', [b.op('GlobalAveragePool', [conv])]);
    b.output(
      b.op('Gemm', [pooled, b.initializer('fc', Tensor.float32([10, 8], new Array(80).fill(0.01)))], { transB: 1 }),
    );
    const input = path.join(tmp, 'plain.onnx');
    saveModel(b.model, input);
    const out = path.join(tmp, 'plain-out.onnx');
    const r = await regroup(
      'compress',
      input,
      '-o',
      out,
      '--method',
      'dgconv',
      '--keep-macs',
      '0.5',
      '--data',
      'mnist',
      '--limit',
      '128',
      '--no-latency',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/dgconv: no conv can be grouped: .*8 filters and 1 inputs share no factor/);
    const written = loadModel(out);
    expect(written.graph.initializers.get('w')!.constValue!.toFloat64()).toEqual(
      b.model.graph.initializers.get('w')!.constValue!.toFloat64(),
    );
  }, 60_000);

  it('refuses what it cannot do with one clear line', async () => {
    const out = path.join(tmp, 'refused.onnx');
    const dgconvOn = (...flags: string[]) => regroup('compress', TINY, '-o', out, '--method', 'dgconv', ...flags);
    const noData = await dgconvOn('--keep-macs', '0.5');
    expect(noData.code).not.toBe(0);
    expect(noData.stderr).toMatch(/dgconv learns its group counts while fine-tuning: pass --data/);
    const local = await dgconvOn('--keep-macs', '0.5', '--data', 'mnist', '--finetune', 'local+global');
    expect(local.stderr).toMatch(/--finetune local\+global does not apply to --method dgconv/);
    const latency = await dgconvOn('--keep-latency', '0.5', '--data', 'mnist');
    expect(latency.stderr).toMatch(/a latency target cannot be searched by probing structures/);
    expect(fs.existsSync(out)).toBe(false);
  }, 60_000);
});
