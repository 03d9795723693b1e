/**
 * Calibration benchmark: per-channel statistics of every Conv and Relu output of the
 * PyTorch ResNet-20 over 1000 CIFAR-10 test JPEGs (batch 64), once without and once with
 * 3×3 patch sampling (256 rows per value), reporting wall time, images/s and peak RSS.
 * Peak RSS is read from the kernel (VmHWM) in a fresh process per configuration, so one
 * run's memory does not hide in the other's.
 * Run: node dist/bench/calibrate.js [--samples N]   (needs ../shared/fixtures)
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../compiler/onnx/io.js';
import { calibrate } from '../runtime/calibrate.js';
import { imageFolder } from '../runtime/data/datasets.js';
import { inputSpecFor } from '../runtime/data/preprocess.js';
import { requireFixtures, SHARED_FIXTURES } from './args.js';

const modelFile = path.join(SHARED_FIXTURES, 'models/resnet20-cifar10-pytorch/resnet20.onnx');
const dataDir = path.join(SHARED_FIXTURES, 'data/cifar10-test-jpg');
const args = process.argv.slice(2);
const at = args.indexOf('--samples');
const samples = at >= 0 ? Number(args[at + 1]) : 1000;
const child = args.indexOf('--child');

if (child >= 0) {
  await measure(Number(args[child + 1]));
} else {
  requireFixtures([modelFile, dataDir]);
  console.log(`calibration: ResNet-20 (CIFAR-10), ${samples} test JPEGs, batch 64, every Conv and Relu output`);
  console.log(
    `${'rows per value'.padEnd(16)} ${'values'.padStart(7)} ${'seconds'.padStart(8)} ${'images/s'.padStart(9)} ${'peak RSS'.padStart(9)}`,
  );
  for (const rows of [0, 256]) {
    const r = spawnSync(
      process.execPath,
      [fileURLToPath(import.meta.url), '--samples', String(samples), '--child', String(rows)],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(r.stderr);
    process.stdout.write(r.stdout);
  }
}

async function measure(rows: number): Promise<void> {
  const model = loadModel(modelFile);
  const spec = inputSpecFor(model);
  const values = model.graph
    .nodeList()
    .filter((n) => n.opType === 'Conv' || n.opType === 'Relu')
    .map((n) => n.outputs[0]!);
  const dataset = await imageFolder(dataDir);
  const started = performance.now();
  const stats = await calibrate(model, dataset, spec, values, { samples, batchSize: 64, rows, patch: 3 });
  const seconds = (performance.now() - started) / 1000;
  if (stats.size !== values.length) throw new Error(`statistics for ${stats.size} of ${values.length} values`);
  const label = rows ? `${rows} (3×3)` : 'none';
  console.log(
    `${label.padEnd(16)} ${String(values.length).padStart(7)} ${seconds.toFixed(2).padStart(8)} ${(samples / seconds).toFixed(0).padStart(9)} ${`${peakRssMb()} MB`.padStart(9)}`,
  );
}

function peakRssMb(): number {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}
