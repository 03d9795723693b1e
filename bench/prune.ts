/**
 * Pruning benchmark: prune torchvision ResNet-18 (../shared/fixtures) to 50% of its MACs,
 * then time dense and pruned side by side in onnxruntime CPU (all graph optimisations on)
 * at batch 1 and 8. The figure of merit is the realised speed-up divided by the MACs
 * ratio (1.0 = latency falls exactly with MACs). Also: wall time and peak RSS of `prune`.
 * Run: npm run bench:prune [-- --round-to 8,16] [--runs 30]
 */
import { BenchArgs, requireFixtures, ROOT } from './args.js';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel } from '../compiler/onnx/io.js';
import { benchmark } from '../runtime/benchmark.js';

const root = ROOT;
const args = new BenchArgs();
const modelPath = args.string(
  '--model',
  path.resolve(root, '../shared/fixtures/models/torchvision/resnet18-torchscript-op17.onnx'),
);
const roundTos = args.numbers('--round-to', '8,16');
const runs = args.number('--runs', 30);
const keep = args.number('--keep-macs', 0.5);
requireFixtures([modelPath]);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-prune-bench-'));

interface Pruned {
  roundTo: number;
  file: string;
  macsRatio: number;
  seconds: number;
  peakMb: number | undefined;
}

function prune(roundTo: number): Pruned {
  const file = path.join(tmp, `pruned-r${roundTo}.onnx`);
  const timed = fs.existsSync('/usr/bin/time');
  const cli = [
    path.join(root, 'bin/regroup.js'),
    'prune',
    modelPath,
    '-o',
    file,
    '--keep-macs',
    String(keep),
    '--round-to',
    String(roundTo),
    '--json',
  ];
  const start = performance.now();
  const r = timed
    ? spawnSync('/usr/bin/time', ['-f', 'peak-kb %M', process.execPath, ...cli], { encoding: 'utf8' })
    : spawnSync(process.execPath, cli, { encoding: 'utf8' });
  const seconds = (performance.now() - start) / 1000;
  if (r.status !== 0) throw new Error(`prune failed: ${r.stderr}`);
  const report = JSON.parse(r.stdout);
  const peak = /peak-kb (\d+)/.exec(r.stderr ?? '');
  return { roundTo, file, macsRatio: report.macsRatio, seconds, peakMb: peak ? Number(peak[1]) / 1024 : undefined };
}

const dense = loadModel(modelPath);
const pruned = roundTos.map(prune);
console.log(
  `model: ${path.basename(modelPath)}, target ${keep} of MACs, ${runs} timed runs per cell, ${os.cpus().length} cores`,
);
for (const p of pruned)
  console.log(
    `prune --round-to ${p.roundTo}: MACs ratio ${p.macsRatio.toFixed(3)}, ${p.seconds.toFixed(2)} s wall (process start included), peak RSS ${p.peakMb?.toFixed(0) ?? '?'} MB`,
  );
console.log('');
console.log('batch  model            median ms   p90 ms   speed-up  MACs ratio  speed-up / (1/MACs ratio)');
for (const batch of [1, 8]) {
  // Interleave dense and pruned measurements so drift on a shared machine hits both alike.
  const medians = new Map<string, number[]>();
  const p90s = new Map<string, number[]>();
  for (let round = 0; round < 3; round++) {
    for (const [label, file, model] of [
      ['dense', modelPath, dense] as const,
      ...pruned.map((p) => [`pruned r${p.roundTo}`, p.file, loadModel(p.file)] as const),
    ]) {
      const stats = await benchmark(file, model, { batch, runs: Math.ceil(runs / 3), warmup: 3 });
      (medians.get(label) ?? medians.set(label, []).get(label)!).push(stats.medianMs);
      (p90s.get(label) ?? p90s.set(label, []).get(label)!).push(stats.p90Ms);
    }
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const denseMs = med(medians.get('dense')!);
  console.log(
    `${String(batch).padEnd(5)}  ${'dense'.padEnd(15)}  ${denseMs.toFixed(2).padStart(9)}  ${med(p90s.get('dense')!).toFixed(2).padStart(7)}`,
  );
  for (const p of pruned) {
    const label = `pruned r${p.roundTo}`;
    const ms = med(medians.get(label)!);
    const speedup = denseMs / ms;
    console.log(
      `${String(batch).padEnd(5)}  ${label.padEnd(15)}  ${ms.toFixed(2).padStart(9)}  ${med(p90s.get(label)!).toFixed(2).padStart(7)}  ${speedup.toFixed(2).padStart(8)}×  ${p.macsRatio.toFixed(3).padStart(10)}  ${(speedup * p.macsRatio).toFixed(2).padStart(10)}`,
    );
  }
}
fs.rmSync(tmp, { recursive: true, force: true });
