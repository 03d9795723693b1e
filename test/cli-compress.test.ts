/**
 * `regroup compress` end to end on the shipped tiny ResNet: every method writes a model
 * that loads, whose lowered graph matches its masked-dense reference, at the MACs the
 * structure promises; fine-tuning runs on the embedded MNIST; bad flags fail cleanly.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import { loadModel } from '../compiler/onnx/io.js';
import { readReport } from '../cli/report/command.js';
import { validateReport, type Report } from '../cli/report/schema.js';
import { doubleGroups, uniformGroup, type GroupableLayer } from '../passes/uniform-group.js';
import { resnetTiny } from '../fixtures/models.js';
import { PROJECT_ROOT } from './helpers/shared.js';
import { regroup } from './helpers/cli.js';

const _BIN = path.join(PROJECT_ROOT, 'bin/regroup.js');
const TINY = path.join(PROJECT_ROOT, 'fixtures/models/resnet-tiny.onnx');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-cli-compress-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A step of the report's `extra.steps` (cli/pipelines/compress.ts StepRecord). */
interface Step {
  keepMacs: number;
  macsRatio: number;
  figures: Record<string, number | undefined>;
  finetune: { scheme: string; samples: number | undefined; epochs: number; seed: number };
}

/** The report's grouped layers (those with a lowering) by lowering form. */
function lowered(report: Report, form?: string) {
  return (report.layers ?? []).filter((l) => l.lowering && (form === undefined || l.lowering.form === form));
}

async function compress(name: string, ...flags: string[]) {
  const out = path.join(tmp, `${name}.onnx`);
  const r = await regroup('compress', TINY, '-o', out, '--no-latency', '--json', ...flags);
  expect(r.code, r.stderr).toBe(0);
  return { out, report: validateReport(JSON.parse(r.stdout), 'stdout') };
}

describe('regroup compress', () => {
  it('sg-cnn: masked, lowered and checked; the written model loads and costs what the report says', async () => {
    const page = path.join(tmp, 'sg.html');
    const json = path.join(tmp, 'sg.json');
    const out = path.join(tmp, 'sg.onnx');
    const flags = ['--method', 'sg-cnn', '--keep-macs', '0.5', '--groups', '2'];
    const run = await regroup('compress', TINY, '-o', out, ...flags, '--report', json, '--html', page);
    expect(run.code, run.stderr).toBe(0);
    const report = readReport(json);
    const extra = report.extra as { loweringError: number; method: string };
    expect(extra.method).toBe('sg-cnn');
    expect(extra.loweringError).toBeLessThanOrEqual(1e-4);
    const grouped = lowered(report);
    expect(grouped.length).toBeGreaterThan(0);
    const model = loadModel(out);
    expect(computeCost(model, inferShapes(model)).totals.macs).toBe(report.totals.macsAfter);
    expect(report.totals.macsAfter).toBeLessThanOrEqual(report.totals.macsBefore!);
    expect(report.totals.structureMacsRatio).toBeLessThanOrEqual(0.5);
    // Dense and compressed latency, measured alongside each other, at batch 1 and 8.
    expect(report.baseline!.latency!.map((l) => l.batch)).toEqual([1, 8]);
    expect(report.latency!.map((l) => l.batch)).toEqual([1, 8]);
    expect(run.stdout).toMatch(/^latency, batch 8 \(cpu\)\s+\d+\.\d{3} ms\s+\d+\.\d{3} ms\s+speed-up \d+\.\d\d×$/m);
    // Each grouped layer carries its 2-cluster connectivity, drawn once on the page.
    for (const layer of grouped) {
      const conn = layer.connectivity!;
      expect(conn.clusters).toHaveLength(2);
      expect(conn.clusters.flatMap((c) => c.filters).sort((a, b) => a - b)).toEqual(
        Array.from({ length: conn.filters }, (_, f) => f),
      );
    }
    const html = fs.readFileSync(page, 'utf8');
    expect(html).toContain('sg.onnx');
    expect(html.match(/<svg class="connectivity"/g)).toHaveLength(grouped.length);
    // The printed summary: dense and compressed side by side, structure and executed MACs.
    expect(run.stdout).toMatch(/^\s+dense\s+compressed\s+change$/m);
    expect(run.stdout).toMatch(/^MACs of the structure\s+\S+\s+\S+\s+\d+\.\d%$/m);
    expect(run.stdout).toMatch(/^MACs executed\s+\S+\s+\S+\s+\d+\.\d%/m);
    // `regroup report` without --html prints the same comparison from the file.
    const text = await regroup('report', json);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^compress report: .*sg\.onnx from .*resnet-tiny\.onnx/);
    expect(text.stdout).toMatch(/^MACs of the structure\s+\S+\s+\S+\s+\d+\.\d%$/m);
    const masked = lowered(report, 'masked-dense').length;
    if (masked > 0)
      expect(text.stdout).toContain(
        `${masked} of ${grouped.length} grouped layers stay masked dense: parameter sparsity only`,
      );
  }, 60_000);

  it('uniform: equal groups become Conv(group > 1) nodes and cut MACs', async () => {
    const { out, report } = await compress('uniform', '--method', 'uniform', '--keep-macs', '0.5');
    const groups = loadModel(out)
      .graph.nodeList()
      .filter((n) => n.opType === 'Conv')
      .map((n) => n.getInt('group', 1));
    const grouped = lowered(report, 'grouped').length;
    expect(groups.filter((g) => g > 1)).toHaveLength(grouped);
    if (grouped > 0) expect(report.totals.macsAfter).toBeLessThan(report.totals.macsBefore!);
  }, 60_000);

  it('sg-balanced: learned equal groups lower exactly and meet the target', async () => {
    const { report } = await compress('balanced', '--method', 'sg-balanced', '--keep-macs', '0.6');
    const extra = report.extra as { loweringError: number };
    expect(extra.loweringError).toBeLessThanOrEqual(1e-4);
    expect(report.notes.join('\n')).toMatch(/balanced self-grouping: layer/);
    expect(report.totals.macsAfter).toBeLessThanOrEqual(report.totals.macsBefore!);
  }, 60_000);

  it('l1: channel pruning reaches the MACs target', async () => {
    const { report } = await compress('l1', '--method', 'l1', '--keep-macs', '0.5', '--round-to', '1');
    expect(report.totals.macsAfter / report.totals.macsBefore!).toBeGreaterThan(0.45);
    expect(report.totals.macsAfter / report.totals.macsBefore!).toBeLessThan(0.55);
  }, 60_000);

  it('l1-uniform: every prunable group narrowed by the same fraction, where global l1 may spare some', async () => {
    const { report } = await compress('l1u', '--method', 'l1-uniform', '--keep-macs', '0.5', '--round-to', '1');
    const note = report.notes.find((n) => n.startsWith('l1 channel pruning'))!;
    const [, pruned, prunable] = /: (\d+) of (\d+) prunable groups narrowed/.exec(note)!;
    expect(note).toMatch(/same fraction/);
    expect(Number(pruned)).toBe(Number(prunable));
    expect(report.totals.macsAfter / report.totals.macsBefore!).toBeLessThan(0.56);
  }, 60_000);

  it('fine-tunes on data (local then global with distillation) and reports accuracy before and after', async () => {
    const { report } = await compress(
      'tuned',
      '--method',
      'sg-cnn',
      '--keep-macs',
      '0.6',
      '--groups',
      '2',
      '--data',
      'mnist',
      '--limit',
      '256',
      '--eval-limit',
      '200',
    );
    expect(report.accuracy!.samples).toBe(200);
    expect(report.baseline!.accuracy!.samples).toBe(200);
    expect(report.notes.join('\n')).toMatch(/fine-tuning: local\+global, 1 epoch\(s\) on 256 samples, distillation/);
    expect(report.notes.join('\n')).toMatch(/local: \d+ of \d+ layers refitted/);
    // With data, sg-cnn gives each layer its own cp from the sensitivity scan, within the budget.
    const [step] = (report.extra as { steps: Step[] }).steps;
    expect(step!.figures.perLayerCp).toBe(1);
    expect(step!.figures.cp).toBeGreaterThanOrEqual(step!.figures.cpMin!);
    expect(step!.figures.cp).toBeLessThanOrEqual(step!.figures.cpMax!);
    expect(step!.finetune).toEqual({ scheme: 'local+global', samples: 256, epochs: 1, seed: 0 });
    const structured = report.totals.structureMacsRatio!;
    expect(structured).toBeLessThanOrEqual(0.6);
    expect(structured).toBeGreaterThan(0.55);
  }, 120_000);

  it('is deterministic: the same command and seed write byte-identical models; another seed does not', async () => {
    const flags = [
      ...['--method', 'sg-cnn', '--keep-macs', '0.5', '--groups', '4'],
      ...['--data', 'mnist', '--limit', '256', '--eval-limit', '100'],
    ];
    const runs = await Promise.all(
      [
        ['a', '0'],
        ['b', '0'],
        ['c', '1'],
      ].map(([name, seed]) => compress(`seed-${name}`, ...flags, '--seed', seed!)),
    );
    const [a, b, c] = runs.map((r) => fs.readFileSync(r.out));
    expect(Buffer.compare(a!, b!)).toBe(0);
    expect(Buffer.compare(a!, c!)).not.toBe(0);
  }, 180_000);

  it('a rising cp schedule self-groups step by step with fine-tuning between steps', async () => {
    const { report } = await compress(
      'schedule',
      '--method',
      'sg-cnn',
      '--cp',
      '20,50',
      '--keep-macs',
      '0.5',
      '--data',
      'mnist',
      '--limit',
      '128',
      '--eval-limit',
      '100',
      '--finetune',
      'global',
    );
    const steps = (report.extra as { steps: Step[] }).steps;
    expect(steps.map((s) => s.figures.cp)).toEqual([20, 50]);
    expect(steps.map((s) => s.finetune.scheme)).toEqual(['global', 'global']);
    expect(steps[0]!.macsRatio).toBeGreaterThan(steps[1]!.macsRatio);
    const falling = await regroup(
      'compress',
      TINY,
      '-o',
      path.join(tmp, 'z.onnx'),
      '--method',
      'sg-cnn',
      '--keep-macs',
      '0.5',
      '--cp',
      '50,20',
    );
    expect(falling.code).toBe(2);
    expect(falling.stderr).toMatch(/must rise/);
  }, 120_000);

  it('--steps reaches the target in even steps and splits the fine-tuning samples between them', async () => {
    const { report } = await compress(
      'steps',
      '--method',
      'sg-cnn',
      '--steps',
      '2',
      '--keep-macs',
      '0.5',
      '--groups',
      '2',
      '--data',
      'mnist',
      '--limit',
      '128',
      '--eval-limit',
      '100',
      '--finetune',
      'global',
      '--allocate',
      'uniform',
    );
    const steps = (report.extra as { steps: Step[] }).steps;
    expect(steps.map((s) => s.keepMacs)).toEqual([0.75, 0.5]);
    expect(steps[0]!.figures.cp).toBeLessThan(steps[1]!.figures.cp!);
    expect(steps.map((s) => s.finetune.samples)).toEqual([64, 64]);
    expect(steps.map((s) => s.finetune.seed)).toEqual([0, 1]);
    expect(report.totals.structureMacsRatio).toBeLessThanOrEqual(0.5);
    const l1 = await regroup(
      'compress',
      TINY,
      '-o',
      path.join(tmp, 'w.onnx'),
      '--keep-macs',
      '0.5',
      '--method',
      'l1',
      '--steps',
      '2',
    );
    expect(l1.code).toBe(2);
    expect(l1.stderr).toMatch(/--steps applies to --method sg-cnn/);
  }, 120_000);

  it('refuses fine-tuning without data, and a bad fraction, with one line', async () => {
    const r = await regroup(
      'compress',
      TINY,
      '-o',
      path.join(tmp, 'x.onnx'),
      '--keep-macs',
      '0.5',
      '--finetune',
      'global',
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^regroup: error\[usage\]: --finetune global needs --data/);
    expect(fs.existsSync(path.join(tmp, 'x.onnx'))).toBe(false);
    const f = await regroup('compress', TINY, '-o', path.join(tmp, 'y.onnx'), '--keep-macs', '1.5');
    expect(f.code).toBe(2);
    expect(f.stderr).toMatch(/not a fraction/);
    const blind = await regroup(
      'compress',
      TINY,
      '-o',
      path.join(tmp, 'y.onnx'),
      '--keep-macs',
      '0.5',
      '--method',
      'sg-cnn',
      '--allocate',
      'sensitivity',
    );
    expect(blind.code).toBe(2);
    expect(blind.stderr).toMatch(/--allocate sensitivity measures each layer on training images; pass --data/);
    const l1 = await regroup(
      'compress',
      TINY,
      '-o',
      path.join(tmp, 'y.onnx'),
      '--keep-macs',
      '0.5',
      '--method',
      'l1',
      '--allocate',
      'uniform',
    );
    expect(l1.code).toBe(2);
    expect(l1.stderr).toMatch(/--allocate applies to --method sg-cnn/);
  }, 30_000);
});

describe('uniform-group pass', () => {
  it('doubles groups on the largest layers until the target is met, masking block-diagonally', async () => {
    const dense = resnetTiny();
    const r = uniformGroup(dense, { keepMacs: 0.6 });
    expect(r.stats.targetMet).toBe(true);
    expect(r.stats.macsRatio).toBeLessThanOrEqual(0.6);
    for (const [node, conn] of r.connectivity) {
      expect(r.model.graph.nodeList()).toContain(node);
      const w = node.input(1).constValue!;
      const [out, inCh, kh, kw] = w.dims as number[];
      const data = w.data as Float32Array;
      const g = conn.clusters.length;
      for (let o = 0; o < out!; o++) {
        for (let i = 0; i < inCh!; i++) {
          const sameBlock = Math.floor(o / (out! / g)) === Math.floor(i / (inCh! / g));
          const block = data.subarray((o * inCh! + i) * kh! * kw!, (o * inCh! + i + 1) * kh! * kw!);
          if (!sameBlock) expect(block.every((x) => x === 0)).toBe(true);
        }
      }
    }
    // The input model is untouched.
    expect(computeCost(dense, inferShapes(dense)).totals.macs).toBe(r.stats.macsBefore);
  });

  it('finishes with the smallest doubling that reaches the budget, not the next large layer', () => {
    const layer = (name: string, macs: number): GroupableLayer => ({
      node: { name } as GroupableLayer['node'],
      outChannels: 64,
      inChannels: 64,
      macs,
      groups: 1,
    });
    const layers = [layer('a', 100), layer('b', 60), layer('c', 10)];
    // 170 MACs, budget 119: halving a (−50) leaves 120; halving b next would land at 90, c at 115.
    expect(doubleGroups(layers, 170, 119, {})).toBe(115);
    expect(Object.fromEntries(layers.map((l) => [l.node.name, l.groups]))).toEqual({ a: 2, b: 1, c: 2 });
    // Unreachable budgets still double everything that can.
    const small = [layer('a', 100)];
    expect(doubleGroups(small, 100, 1, { maxGroups: 4 })).toBe(25);
  });
});
