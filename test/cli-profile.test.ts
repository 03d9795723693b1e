/**
 * `regroup profile` as a user runs it: the per-layer table, the whole model against its
 * layers, the cache file, a second run that measures nothing, JSON that parses, and one-line
 * errors for a missing file, a file that is not ONNX, an unknown provider and missing CUDA.
 * Timings are never asserted (shared, noisy machine).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../compiler/ir/builder.js';
import { saveModel } from '../compiler/onnx/io.js';
import { ortBinaryDir } from '../runtime/providers.js';
import { regroup } from './helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-cli-profile-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
// The spawned CLI inherits this environment: its cache goes to a fresh folder.
const cacheDir = path.join(tmp, 'cache');
process.env.REGROUP_CACHE_DIR = cacheDir;

/** Conv 8→16 3×3 on 8×8 (labelled 'conv_a'), ReLU, global pooling, Gemm 16→4 ('fc'). */
function tinyModelFile(): string {
  const b = new GraphBuilder({ opset: 17, seed: 5 });
  const x = b.input('input', ['N', 8, 8, 8]);
  const conv = b.op('Conv', [x, b.weight('w', [16, 8, 3, 3])], { pads: [1, 1, 1, 1] }, 'conv_a');
  const flat = b.op('Flatten', [b.op('GlobalAveragePool', [b.op('Relu', [conv])])], { axis: 1 });
  b.output(b.op('Gemm', [flat, b.weight('fcw', [4, 16]), b.constant('fcb', [4], 0)], { transB: 1 }, 'fc'));
  const file = path.join(tmp, 'tiny.onnx');
  saveModel(b.model, file);
  return file;
}

function expectOneLineError(r: Awaited<ReturnType<typeof regroup>>, code: number, pattern: RegExp): void {
  expect(r.code).toBe(code);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^regroup: error\[[a-z-]+\]: /);
  expect(lines[0]).toMatch(pattern);
}

describe('regroup profile', () => {
  const file = tinyModelFile();

  it('prints the table, then reuses the cache on a second run', async () => {
    const first = await regroup('profile', file, '--batch', '2');
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^conv_a\s+8→16 3x3\/s1 @8x8\s+\d+\.\d{3}/m);
    expect(first.stdout).toMatch(/^fc\s+16→4 gemm\s+\d+\.\d{3}/m);
    expect(first.stdout).toMatch(/whole model \d+\.\d+ ms; Σ layers \d+\.\d+ ms; fixed rest -?\d+\.\d+ ms/);
    const measured = /measured (\d+), reused 0 from cache/.exec(first.stdout);
    expect(measured).not.toBeNull();
    const tableFile = /^table: (.+)$/m.exec(first.stdout)![1]!;
    expect(path.dirname(tableFile)).toBe(cacheDir);
    expect(JSON.parse(fs.readFileSync(tableFile, 'utf8')).key.batch).toBe(2);
    expect(first.stderr).toMatch(/profile cpu batch 2/);

    const second = await regroup('profile', file, '--batch', '2', '--json');
    expect(second.code, second.stderr).toBe(0);
    const report = JSON.parse(second.stdout);
    expect(report.measured).toBe(0);
    expect(report.reused).toBe(Number(measured![1]));
    expect(report.tableFile).toBe(tableFile);
    expect(report.rows.map((r: { label: string }) => r.label)).toEqual(['conv_a', 'fc']);
    expect(report.fixedMs).toBeCloseTo(report.wholeMs - report.layersMs, 9);
    expect(report.rows[0].shape).toBe('conv cin=8 cout=16 g=1 k=3x3 s=1x1 p=1,1,1,1 d=1x1 in=8x8');
  });

  it('explains the table in --help', async () => {
    const help = await regroup('profile', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/planner/);
    expect(help.stdout).toMatch(/REGROUP_CACHE_DIR/);
    expect(help.stdout).toMatch(/--refresh/);
  });

  it('names a missing file, refuses a non-ONNX file and an unknown provider', async () => {
    const missing = path.join(tmp, 'nope.onnx');
    expectOneLineError(await regroup('profile', missing), 1, new RegExp(`${missing}.*does not exist`));
    const text = path.join(tmp, 'notes.onnx');
    fs.writeFileSync(text, 'this is not a protobuf model\n');
    expectOneLineError(await regroup('profile', text), 1, /notes\.onnx/);
    expectOneLineError(await regroup('profile', file, '--ep', 'tpu'), 2, /unknown execution provider 'tpu'/);
  });

  it.skipIf(fs.existsSync(path.join(ortBinaryDir(), 'libonnxruntime_providers_cuda.so')))(
    'says how to install CUDA when its binaries are missing',
    async () => {
      expectOneLineError(await regroup('profile', file, '--ep', 'cuda'), 1, /CUDA execution provider is not installed/);
    },
  );
});
