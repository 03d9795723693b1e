/**
 * Batch benchmark: a 20-job batch of small models (3 from fixtures/, 2 from ../shared/fixtures;
 * l1 and l1-uniform at 0.5 and 0.7 of the MACs; no data, no latency) through the embedded runner
 * and through the Redis queue, each with 1 and with 3 workers, each run into a fresh results
 * folder. Prints wall time, jobs per minute and the per-job overhead beyond the job's own work:
 * (wall × workers − Σ compress seconds measured inside each job) / jobs, which counts the job
 * process's start and module loading, publishing, and for the queue BullMQ's hand-offs.
 * Starts its own redis-server on a free loopback port (needs redis-server and ioredis).
 * Run: npm run bench:batch
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { runEmbedded } from '../cli/batch/embedded.js';
import { enqueueJobs, queueUnavailable, waitForJobs } from '../cli/batch/queue.js';
import { expandJobs, type JobSpec, validateSpec } from '../cli/batch/spec.js';
import { finishedJobs } from '../cli/batch/zoo-report.js';
import { requireFixtures, ROOT, SHARED_FIXTURES } from './args.js';

const MODELS = [
  path.join(ROOT, 'fixtures/models/resnet-tiny.onnx'),
  path.join(ROOT, 'fixtures/models/fmnist-vgg.onnx'),
  path.join(ROOT, 'fixtures/models/fmnist-mobilenet.onnx'),
  path.join(SHARED_FIXTURES, 'models/cifar10-cnn-winml-pytorch/ImageClassifier.onnx'),
  path.join(SHARED_FIXTURES, 'models/resnet20-cifar10-pytorch/resnet20.onnx'),
];
requireFixtures(MODELS);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-bench-batch-'));
const BIN = path.join(ROOT, 'bin/regroup.js');

function jobsInto(results: string): JobSpec[] {
  const spec = validateSpec(
    {
      models: MODELS,
      methods: ['l1', 'l1-uniform'],
      targets: [{ 'keep-macs': 0.5 }, { 'keep-macs': 0.7 }],
      options: { latency: false },
      results,
    },
    path.join(tmp, 'jobs.json'),
  );
  return expandJobs(spec);
}

interface Row {
  runner: string;
  workers: number;
  jobs: number;
  wall: number;
  own: number;
}

function rowOf(runner: string, workers: number, results: string, wall: number): Row {
  const done = finishedJobs(results);
  if (done.length !== 20) throw new Error(`${runner} ×${workers}: ${done.length} of 20 jobs finished`);
  return { runner, workers, jobs: done.length, wall, own: done.reduce((s, j) => s + j.seconds, 0) };
}

async function embedded(workers: number): Promise<Row> {
  const results = path.join(tmp, `embedded-${workers}`);
  const jobs = jobsInto(results);
  const started = performance.now();
  const summary = await runEmbedded(path.join(tmp, 'jobs.json'), jobs, { workers });
  if (summary.failed.length > 0) throw new Error(`embedded: ${JSON.stringify(summary.failed)}`);
  return rowOf('embedded', workers, results, (performance.now() - started) / 1000);
}

async function queued(url: string, workers: number): Promise<Row> {
  const results = path.join(tmp, `queue-${workers}`);
  const name = `bench-${workers}-${process.pid}`;
  const procs = await Promise.all(Array.from({ length: workers }, () => startWorker(url, name)));
  try {
    const jobs = jobsInto(results);
    const started = performance.now();
    await enqueueJobs(jobs, { url, name });
    const waited = await waitForJobs(jobs, { url, name, pollMs: 100 });
    if (waited.failed.length > 0) throw new Error(`queue: ${JSON.stringify(waited.failed)}`);
    return rowOf('queue', workers, results, (performance.now() - started) / 1000);
  } finally {
    for (const p of procs) p.kill('SIGTERM');
  }
}

/** A `regroup worker` process, resolved once it is connected and waiting for jobs. */
function startWorker(url: string, name: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'worker', '--queue', url, '--name', name], { stdio: 'pipe' });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes(`worker ${child.pid} on`)) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`worker exited (${code}): ${out}`)));
  });
}

async function startRedis(): Promise<{ url: string; stop: () => void }> {
  const port = await new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = server.address() as net.AddressInfo;
      server.close(() => resolve(p));
    });
  });
  const dir = path.join(tmp, 'redis');
  fs.mkdirSync(dir);
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', ''];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.on('error', reject);
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('Ready to accept connections')) resolve();
    });
  });
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill('SIGTERM') };
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const workers of [1, 3]) rows.push(await embedded(workers));
  const missing = queueUnavailable();
  if (missing) console.log(`queue runs skipped: ${missing}`);
  else {
    const redis = await startRedis();
    try {
      for (const workers of [1, 3]) rows.push(await queued(redis.url, workers));
    } finally {
      redis.stop();
    }
  }
  console.log(`20 jobs (5 models × l1, l1-uniform × keep-macs 0.5, 0.7), ${os.availableParallelism()} CPUs`);
  console.log('runner    workers  wall (s)  jobs/min  own work (s)  overhead/job (s)');
  for (const r of rows) {
    const overhead = (r.wall * r.workers - r.own) / r.jobs;
    console.log(
      `${r.runner.padEnd(9)} ${String(r.workers).padStart(7)} ${r.wall.toFixed(1).padStart(9)} ${((60 * r.jobs) / r.wall).toFixed(1).padStart(9)} ${r.own.toFixed(1).padStart(13)} ${overhead.toFixed(2).padStart(17)}`,
    );
  }
  for (const workers of [1, 3]) {
    const e = rows.find((r) => r.runner === 'embedded' && r.workers === workers);
    const q = rows.find((r) => r.runner === 'queue' && r.workers === workers);
    if (e && q)
      console.log(
        `queue beyond embedded, ${workers} worker(s): ${((q.wall - e.wall) / 20).toFixed(2)} s per job of wall time`,
      );
  }
  fs.rmSync(tmp, { recursive: true, force: true });
}

await main();
