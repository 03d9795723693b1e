/**
 * Codec benchmark: decode + encode throughput on the largest shared model (ResNet-18,
 * ~45 MB) and peak resident memory of `regroup convert` on it, against the file size.
 * Run: npm run bench:codec   (needs ../shared/fixtures)
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeModel } from '../compiler/onnx/decode.js';
import { encodeModel } from '../compiler/onnx/encode.js';
import { quantile } from '../runtime/benchmark.js';
import { requireFixtures, ROOT, SHARED_FIXTURES } from './args.js';

const root = ROOT;
const modelPath = process.argv[2] ?? path.join(SHARED_FIXTURES, 'models/torchvision/resnet18-torchscript-op17.onnx');
requireFixtures([modelPath]);
const bytes = fs.readFileSync(modelPath);
const mb = bytes.byteLength / 1e6;
const runs = 9;
const decodeMs: number[] = [];
const encodeMs: number[] = [];
for (let i = 0; i < runs + 2; i++) {
  const t0 = performance.now();
  const model = decodeModel(bytes, { source: modelPath });
  const t1 = performance.now();
  const out = encodeModel(model).bytes;
  const t2 = performance.now();
  if (out.byteLength < bytes.byteLength * 0.99) throw new Error('re-encoded model is unexpectedly small');
  if (i >= 2) {
    decodeMs.push(t1 - t0);
    encodeMs.push(t2 - t1);
  }
}
const totalMs = decodeMs.map((d, i) => d + encodeMs[i]!);
const med = (xs: number[]) => quantile(xs, 0.5);

/**
 * Peak RSS (KB) of a CLI run in a fresh process, read by GNU time from the child's rusage
 * (a child's own getrusage would report the forking parent's high-water mark after exec).
 */
function peakRss(args: string[]): number | undefined {
  if (!fs.existsSync('/usr/bin/time')) return undefined;
  const r = spawnSync(
    '/usr/bin/time',
    ['-f', 'peak-kb %M', process.execPath, path.join(root, 'bin/regroup.js'), ...args],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`regroup ${args.join(' ')} failed: ${r.stderr}`);
  const match = /peak-kb (\d+)/.exec(r.stderr);
  return match ? Number(match[1]) : undefined;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-bench-'));
const baseline = peakRss(['--version']);
const convert = peakRss(['convert', modelPath, '-o', path.join(tmp, 'out.onnx')]);
fs.rmSync(tmp, { recursive: true, force: true });

const row = (name: string, ms: number) =>
  `${name.padEnd(16)} ${ms.toFixed(1).padStart(8)} ms  ${(mb / (ms / 1000)).toFixed(0).padStart(6)} MB/s`;
console.log(`model: ${path.basename(modelPath)} (${mb.toFixed(1)} MB), ${runs} runs, medians`);
console.log(row('decode', med(decodeMs)));
console.log(row('encode', med(encodeMs)));
console.log(row('decode+encode', med(totalMs)));
const fileKb = bytes.byteLength / 1024;
if (convert === undefined || baseline === undefined)
  console.log('convert peak RSS: not measured (needs GNU time at /usr/bin/time)');
else
  console.log(
    `convert peak RSS: ${(convert / 1024).toFixed(0)} MB = ${(convert / fileKb).toFixed(2)}× file size (node + regroup at rest: ${(baseline / 1024).toFixed(0)} MB; convert's own share ${((convert - baseline) / fileKb).toFixed(2)}× file size)`,
  );
