/**
 * `regroup eval` and `regroup report` as a user runs them: figures in JSON, reports that
 * validate and render, one-line errors with exit code 1 on bad data.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { validateReport } from '../cli/report/schema.js';
import { haveShared, PROJECT_ROOT, SHARED_FIXTURES, sharedModel } from './helpers/shared.js';
import { regroup } from './helpers/cli.js';

const _BIN = path.join(PROJECT_ROOT, 'bin/regroup.js');
const TINY = path.join(PROJECT_ROOT, 'fixtures/models/resnet-tiny.onnx');
const MNIST_TEST = path.join(SHARED_FIXTURES, 'data/mnist-test');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-cli-eval-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('regroup eval', () => {
  it.skipIf(!haveShared)(
    'prints accuracy, self-agreement, latency, size and MACs as JSON and writes the report and page',
    async () => {
      const json = path.join(tmp, 'eval.json');
      const html = path.join(tmp, 'eval.html');
      const model = sharedModel('mnistCnn');
      const r = await regroup(
        'eval',
        model,
        '--data',
        `idx:${MNIST_TEST}`,
        '--limit',
        '500',
        '--ref',
        model,
        '--batch',
        '50',
        '--json',
        '--report',
        json,
        '--html',
        html,
      );
      expect(r.code, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout);
      expect(validateReport(report, 'stdout')).toEqual(report);
      expect(report.kind).toBe('eval');
      expect(report.accuracy.samples).toBe(500);
      expect(report.accuracy.top1).toBeGreaterThan(0.97);
      expect(report.agreement.top1Agreement).toBe(1);
      expect(report.agreement.maxAbsDiff).toBe(0);
      expect(report.latency.map((l: { batch: number }) => l.batch)).toEqual([1, 50]);
      expect(
        report.latency.every((l: { medianMs: number; p90Ms: number }) => l.medianMs > 0 && l.p90Ms >= l.medianMs),
      ).toBe(true);
      expect(report.model.params).toBeGreaterThan(400_000);
      expect(report.model.bytes).toBe(fs.statSync(model).size);
      expect(JSON.parse(fs.readFileSync(json, 'utf8')).accuracy).toEqual(report.accuracy);
      expect(fs.readFileSync(html, 'utf8')).toMatch(/<html/);
    },
    60_000,
  );

  it('runs on the embedded MNIST with the preset chosen from the input, printing the choice', async () => {
    const r = await regroup('eval', TINY, '--data', 'mnist', '--limit', '64', '--no-latency');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/mnist \(test split\)|mnist/);
    expect(r.stdout).toMatch(/top-1 \d+\.\d+%/);
    expect(r.stdout).toMatch(/note: preprocessing: /);
  }, 30_000);

  it('an empty folder and a wrong preset fail with one line naming the problem', async () => {
    const empty = fs.mkdtempSync(path.join(tmp, 'empty-'));
    const r = await regroup('eval', TINY, '--data', empty);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^regroup: error\[bad-data\]: .*empty/);
    const p = await regroup('eval', TINY, '--data', 'mnist', '--preset', 'imagenet');
    expect(p.code).toBe(2); // a usage error: the flag does not fit the model
    expect(p.stderr).toMatch(/preset 'imagenet'.*1 channel.*presets that fit: mnist/);
  }, 30_000);
});

describe('regroup report', () => {
  it('renders several eval reports into one page with an accuracy-against-MACs chart', async () => {
    const files = ['a', 'b'].map((name) => path.join(tmp, `${name}.json`));
    for (const [i, file] of files.entries()) {
      const r = await regroup(
        'eval',
        TINY,
        '--data',
        'mnist',
        '--limit',
        String(32 * (i + 1)),
        '--no-latency',
        '--report',
        file,
      );
      expect(r.code, r.stderr).toBe(0);
    }
    const page = path.join(tmp, 'both.html');
    const r = await regroup('report', ...files, '--html', page);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/2 report\(s\), [1-9]\d* chart\(s\)/);
    expect(fs.readFileSync(page, 'utf8')).toContain('resnet-tiny.onnx');
  }, 60_000);

  it('refuses a file that is not a regroup report, naming it', async () => {
    const bogus = path.join(tmp, 'bogus.json');
    fs.writeFileSync(bogus, '{"hello": 1}');
    const r = await regroup('report', bogus, '--html', path.join(tmp, 'never.html'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^regroup: error\[usage\]: .*bogus\.json: field 'format'/);
    expect(fs.existsSync(path.join(tmp, 'never.html'))).toBe(false);
  });
});
