/**
 * Batch benchmark: a 20-job batch of small models (3 from fixtures/, 2 from ../shared/fixtures;
 * l1 and l1-uniform at 0.5 and 0.7 of the MACs; no data, no latency) through the embedded runner
 * and through the Redis queue, each with 1 and with 3 workers, each run into a fresh results
 * folder. Prints wall time, jobs per minute and the per-job overhead beyond the job's own work,
 * measured per job rather than from the wall time (which, with more workers than cores, mixes
 * in contention and the idle tail of the batch):
 * - process: the runner's time for the job (fork, module loading, the job, publishing) minus
 *   the job's own work measured inside its process (result.json `seconds`);
 * - hand-off: from a worker slot coming free to its next job starting. For the queue, from
 *   BullMQ's timestamps: the k-th job start is matched with the k-th moment a slot came free
 *   (the enqueue for the first `workers` jobs) — exact for one worker, and for several the
 *   waiting time of a queue that never leaves a slot idle while a job waits.
 * Starts its own redis-server on a free loopback port (needs redis-server and ioredis).
 * Run: npm run bench:batch
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { runEmbedded } from '../cli/batch/embedded.js';
import { connectionOf, enqueueJobs, queueJobId, queueUnavailable, waitForJobs } from '../cli/batch/queue.js';
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
  /** Σ of each job's own work, measured inside its process. */
  own: number;
  /** Σ of each job's time in its runner slot (process start to published). */
  slot: number;
  /** Σ of the waits from a slot coming free to its next job starting. */
  handoff: number;
}

function rowOf(
  runner: string,
  workers: number,
  results: string,
  wall: number,
  slotOf: (id: string) => number,
  handoff: number,
): Row {
  const done = finishedJobs(results);
  if (done.length !== 20) throw new Error(`${runner} ×${workers}: ${done.length} of 20 jobs finished`);
  const own = done.reduce((s, j) => s + j.seconds, 0);
  const slot = done.reduce((s, j) => s + slotOf(j.id), 0);
  return { runner, workers, jobs: done.length, wall, own, slot, handoff };
}

async function embedded(workers: number): Promise<Row> {
  const results = path.join(tmp, `embedded-${workers}`);
  const jobs = jobsInto(results);
  const started = performance.now();
  const summary = await runEmbedded(path.join(tmp, 'jobs.json'), jobs, { workers });
  if (summary.failed.length > 0) throw new Error(`embedded: ${JSON.stringify(summary.failed)}`);
  const wall = (performance.now() - started) / 1000;
  // The pool's loop takes the next job as soon as one finishes: its hand-off is the slot's idle
  // time while jobs remain, which the per-job timestamps do not separate; count it as none.
  return rowOf('embedded', workers, results, wall, (id) => summary.outcomes.get(id)!.seconds, 0);
}

async function queued(url: string, workers: number): Promise<Row> {
  const results = path.join(tmp, `queue-${workers}`);
  const name = `bench-${workers}-${process.pid}`;
  const procs = await Promise.all(Array.from({ length: workers }, () => startWorker(url, name)));
  try {
    const jobs = jobsInto(results);
    const started = performance.now();
    const enqueuedAt = Date.now();
    await enqueueJobs(jobs, { url, name });
    const waited = await waitForJobs(jobs, { url, name, pollMs: 100 });
    if (waited.failed.length > 0) throw new Error(`queue: ${JSON.stringify(waited.failed)}`);
    const wall = (performance.now() - started) / 1000;
    const times = await queueTimes(url, name, jobs, enqueuedAt, workers);
    return rowOf('queue', workers, results, wall, (id) => times.slot.get(id)!, times.handoff);
  } finally {
    for (const p of procs) p.kill('SIGTERM');
  }
}

/**
 * Per job, the worker's time for it (BullMQ's processedOn → finishedOn), and the total hand-off:
 * the k-th start matched with the k-th moment a slot came free (see the file header).
 */
async function queueTimes(
  url: string,
  name: string,
  jobs: JobSpec[],
  enqueuedAt: number,
  workers: number,
): Promise<{ slot: Map<string, number>; handoff: number }> {
  const queue = new Queue(name, { connection: connectionOf(url) });
  try {
    const slot = new Map<string, number>();
    const starts: number[] = [];
    const frees: number[] = Array.from({ length: workers }, () => enqueuedAt);
    for (const spec of jobs) {
      const job = await queue.getJob(queueJobId(spec.id));
      if (!job?.processedOn || !job.finishedOn) throw new Error(`queue: no timestamps for ${spec.id}`);
      slot.set(spec.id, (job.finishedOn - job.processedOn) / 1000);
      starts.push(job.processedOn);
      frees.push(job.finishedOn);
    }
    starts.sort((a, b) => a - b);
    frees.sort((a, b) => a - b);
    const handoff = starts.reduce((sum, start, k) => sum + Math.max(0, start - frees[k]!), 0) / 1000;
    return { slot, handoff };
  } finally {
    await queue.close();
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
  console.log(
    'runner    workers  wall (s)  jobs/min  own work (s)  process/job (s)  hand-off/job (s)  overhead/job (s)  idle/job (s)',
  );
  for (const r of rows) {
    const process = (r.slot - r.own) / r.jobs;
    const handoff = r.handoff / r.jobs;
    // Slot time not spent on jobs or hand-offs: mostly the batch's tail, when fewer jobs than workers remain.
    const idle = (r.wall * r.workers - r.slot - r.handoff) / r.jobs;
    console.log(
      [
        r.runner.padEnd(9),
        String(r.workers).padStart(7),
        r.wall.toFixed(1).padStart(9),
        ((60 * r.jobs) / r.wall).toFixed(1).padStart(9),
        r.own.toFixed(1).padStart(13),
        process.toFixed(2).padStart(16),
        handoff.toFixed(2).padStart(17),
        (process + handoff).toFixed(2).padStart(17),
        idle.toFixed(2).padStart(13),
      ].join(' '),
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
