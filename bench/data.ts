/**
 * Data-loading benchmark: images read, decoded and preprocessed (cifar10 preset → float32
 * NCHW tensor) per second on the CIFAR-10 test JPEG folder, batch 64, with decoding on the
 * main thread and in 1…N worker threads. Each configuration makes `runs` full passes after
 * one warm-up pass (which also fills the OS file cache); the table shows the median pass.
 * Run: node dist/bench/data.js [DIR] [--limit N] [--runs R]   (needs ../shared/fixtures)
 */
import { BenchArgs, ROOT } from './args.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { imageFolder } from '../runtime/data/datasets.js';
import { batches } from '../runtime/data/loader.js';
import { presetSpec, toTensor } from '../runtime/data/preprocess.js';
import { quantile } from '../runtime/benchmark.js';

const root = ROOT;
const args = new BenchArgs();
const limit = args.number('--limit', 10_000);
const runs = args.number('--runs', 5);
const dir = args.rest[0] ?? path.resolve(root, '../shared/fixtures/data/cifar10-test-jpg');
if (!fs.existsSync(dir)) {
  console.error(`bench/data: ${dir} not found (needs ../shared/fixtures)`);
  process.exit(1);
}

const batchSize = 64;
const dataset = await imageFolder(dir);
const spec = presetSpec('cifar10');
const cores = os.availableParallelism();
const configs = [0, ...Array.from({ length: Math.max(1, Math.min(4, cores)) }, (_, k) => k + 1)];

async function pass(workers: number): Promise<{ seconds: number; images: number }> {
  const started = performance.now();
  let images = 0;
  for await (const batch of batches(dataset, { batchSize, limit, workers })) {
    const tensor = toTensor(batch.images, spec);
    if (tensor.dims[0] !== batch.images.length) throw new Error('tensor batch size does not match the batch');
    images += batch.images.length;
  }
  return { seconds: (performance.now() - started) / 1000, images };
}

console.log(
  `data: ${dir}, ${Math.min(limit, dataset.size)} images, batch ${batchSize}, cifar10 preset (float32 NCHW), ${cores} cores, median of ${runs} passes`,
);
console.log(`${'decode on'.padEnd(20)} ${'pass s'.padStart(8)} ${'images/s'.padStart(10)} ${'vs main'.padStart(8)}`);
let baseline = 0;
for (const workers of configs) {
  await pass(workers);
  const times: number[] = [];
  let images = 0;
  for (let r = 0; r < runs; r++) {
    const result = await pass(workers);
    times.push(result.seconds);
    images = result.images;
  }
  const seconds = quantile(times, 0.5);
  const rate = images / seconds;
  if (workers === 0) baseline = rate;
  const label = workers === 0 ? 'main thread' : `${workers} worker${workers > 1 ? 's' : ''}`;
  console.log(
    `${label.padEnd(20)} ${seconds.toFixed(2).padStart(8)} ${rate.toFixed(0).padStart(10)} ${`${(rate / baseline).toFixed(2)}×`.padStart(8)}`,
  );
}
