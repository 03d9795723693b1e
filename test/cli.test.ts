/**
 * The `regroup` command as a user runs it: exit codes, one-line errors, JSON that parses,
 * atomic outputs, inputs never overwritten.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../compiler/ir/builder.js';
import { saveModel, loadModel } from '../compiler/onnx/io.js';
import { encodeModel } from '../compiler/onnx/encode.js';
import { haveShared, PROJECT_ROOT, sharedModel } from './helpers/shared.js';
import { regroup } from './helpers/cli.js';

const _BIN = path.join(PROJECT_ROOT, 'bin/regroup.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A one-line `regroup: error[...]` message, no stack trace. */
function expectCleanError(r: Awaited<ReturnType<typeof regroup>>, pattern: RegExp) {
  expect(r.code).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^regroup: error\[[a-z-]+\]: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

function smallModel(withUnknownOp = false) {
  const b = new GraphBuilder({ seed: 3 });
  const x = b.input('x', [1, 3, 16, 16]);
  let y = b.op('Relu', [b.op('Conv', [x, b.weight('w1', [8, 3, 3, 3])], { pads: [1, 1, 1, 1] }, 'conv1')], {}, 'relu1');
  if (withUnknownOp) y = b.node('FancyNorm', [y], {}, { name: 'mystery', domain: 'com.example' }).output(0);
  y = b.op('Conv', [y, b.weight('w2', [4, 8, 1, 1])], {}, 'conv2');
  b.output(y, { dtype: 1, shape: [1, 4, 16, 16] });
  if (withUnknownOp) b.model.opsetImports.push({ domain: 'com.example', version: 1 });
  return b.model;
}

describe('regroup CLI', () => {
  it('prints help and exits 0; unknown options exit 2', async () => {
    const help = await regroup('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/inspect/);
    expect(help.stdout).toMatch(/convert/);
    expect(help.stdout).toMatch(/bench/);
    expect((await regroup('inspect', '--no-such-flag', 'x.onnx')).code).toBe(2);
  });

  it('inspect prints a table and valid JSON with the same totals', async () => {
    const file = path.join(tmp, 'small.onnx');
    saveModel(smallModel(), file);
    const text = await regroup('inspect', file);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/conv1\s+Conv\s+\[1,8,16,16\]/);
    const json = await regroup('inspect', file, '--json');
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout);
    // conv1: 8·16·16·3·9, conv2: 4·16·16·8
    expect(report.totals.macs).toBe(8 * 256 * 27 + 4 * 256 * 8);
    expect(report.totals.params).toBe(8 * 27 + 4 * 8);
    expect(report.layers.map((l: { name: string }) => l.name)).toEqual(['conv1', 'conv2']);
    expect(text.stdout).toContain(`(${report.totals.macs})`);
  });

  it('inspect reports an unknown op and analyses what it can', async () => {
    const file = path.join(tmp, 'unknown.onnx');
    saveModel(smallModel(true), file);
    const r = await regroup('inspect', file, '--json');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/mystery.*FancyNorm/);
    const report = JSON.parse(r.stdout);
    expect(report.issues.some((i: { node: string }) => i.node === 'mystery')).toBe(true);
    expect(report.layers.find((l: { name: string }) => l.name === 'conv1').macs).toBe(8 * 256 * 27);
  });

  it('convert round-trips, writes external data on request, and never overwrites its input', async () => {
    const file = path.join(tmp, 'conv-in.onnx');
    saveModel(smallModel(), file);
    const before = fs.readFileSync(file);
    const refused = await regroup('convert', file, '-o', file);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/refusing to overwrite the input/);
    expect(fs.readFileSync(file)).toEqual(before);

    const out = path.join(tmp, 'conv-out.onnx');
    expect((await regroup('convert', file, '-o', out)).code).toBe(0);
    expect(Buffer.from(encodeModel(loadModel(out)).bytes)).toEqual(before);

    const ext = path.join(tmp, 'conv-ext.onnx');
    const r = await regroup('convert', file, '-o', ext, '--external-data', '--threshold', '0', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).externalFile).toBe(`${ext}.data`);
    expect(fs.statSync(ext).size).toBeLessThan(before.byteLength);
    const back = loadModel(ext);
    expect(Array.from(back.graph.initializers.get('w1')!.constValue!.data as Float32Array)).toEqual(
      Array.from(loadModel(file).graph.initializers.get('w1')!.constValue!.data as Float32Array),
    );
  });

  describe('bad input gets a one-line error, non-zero exit and no output file', () => {
    const valid = encodeModel(smallModel()).bytes;
    const cases: [string, () => string, RegExp][] = [
      ['an empty file', () => write('empty.onnx', new Uint8Array()), /empty/],
      [
        'a truncated file',
        () => write('truncated.onnx', valid.subarray(0, Math.floor(valid.byteLength / 2))),
        /not a valid ONNX model|truncated/,
      ],
      [
        'random bytes',
        () =>
          write(
            'random.onnx',
            Uint8Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24),
          ),
        /not (a valid )?ONNX|damaged/,
      ],
      ['a missing file', () => path.join(tmp, 'nope.onnx'), /does not exist/],
      ['a folder', () => tmp, /folder/],
      [
        'missing external data',
        () => externalCase('missing', (dir) => fs.rmSync(path.join(dir, 'm.onnx.data'))),
        /does not exist/,
      ],
      [
        'external data outside the folder',
        () => externalCase('escape', (dir) => rewriteLocation(dir, '../secret.bin')),
        /climbs out/,
      ],
    ];
    for (const [what, make, pattern] of cases) {
      it(what, async () => {
        const input = make();
        const out = path.join(tmp, `out-${what.replace(/\W+/g, '-')}.onnx`);
        expectCleanError(await regroup('convert', input, '-o', out), pattern);
        expect(fs.existsSync(out)).toBe(false);
        expect(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp'))).toEqual([]);
        expectCleanError(await regroup('inspect', input), pattern);
      });
    }
  });

  it('bench gives latency figures as JSON, and a clear error for a missing CUDA provider', async () => {
    const file = path.join(tmp, 'bench.onnx');
    saveModel(smallModel(), file);
    const r = await regroup('bench', file, '--runs', '5', '--warmup', '1', '--json');
    expect(r.code).toBe(0);
    const stats = JSON.parse(r.stdout);
    expect(stats.runs).toBe(5);
    expect(stats.medianMs).toBeGreaterThan(0);
    expect(stats.p90Ms).toBeGreaterThanOrEqual(stats.medianMs);
    const cuda = await regroup('bench', file, '--ep', 'cuda', '--runs', '1');
    expectCleanError(cuda, /npm run install:cuda/);
  });

  it.skipIf(!haveShared)('inspect on ResNet-20 matches the published figures', async () => {
    const r = await regroup('inspect', sharedModel('resnet20'), '--json');
    expect(r.code).toBe(0);
    const { totals } = JSON.parse(r.stdout);
    expect(Math.abs(totals.macs / 41e6 - 1)).toBeLessThan(0.02);
    expect(Math.abs(totals.params / 0.27e6 - 1)).toBeLessThan(0.02);
  });
});

function write(name: string, bytes: Uint8Array): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, bytes);
  return file;
}

/** A model saved with external data in its own folder, then damaged by `spoil`. */
function externalCase(name: string, spoil: (dir: string) => void): string {
  const dir = path.join(tmp, `ext-${name}`);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'm.onnx');
  saveModel(smallModel(), file, { externalData: { threshold: 0 } });
  spoil(dir);
  return file;
}

function rewriteLocation(dir: string, location: string): void {
  const file = path.join(dir, 'm.onnx');
  const model = loadModel(file);
  const bytes = encodeModel(model, { externalData: { location, threshold: 0 } }).bytes;
  fs.writeFileSync(file, bytes);
}
