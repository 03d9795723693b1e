/**
 * Batch jobs across machines on BullMQ (Redis). The producer adds each job under its content
 * id, so enqueuing the same spec twice adds nothing; workers on any number of machines take
 * jobs with BullMQ's per-worker concurrency, report progress, retry a crashed job with
 * exponential backoff, and — through BullMQ's stalled-job check — give back the job of a
 * worker that died (its lock expires and another worker takes it). Bad input (a corrupt
 * model) fails at once with its reason instead of being retried. Artifacts go through
 * job.ts: scratch folder, then an atomic rename into `<results>/<id>/` on the shared folder.
 */
import { createRequire } from 'node:module';
import { type ConnectionOptions, type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import { RegroupError } from '../../compiler/errors.js';
import { finishedResult, JobFailure, runJob, type JobOutcome } from './job.js';
import { describeJob, type JobSpec } from './spec.js';

export const DEFAULT_QUEUE = 'regroup-batch';

export interface QueueOptions {
  url: string;
  /** Queue name (default regroup-batch); producers and workers must agree. */
  name?: string;
}

export interface WorkerOptions extends QueueOptions {
  concurrency?: number;
  /** How long a job's lock lives without renewal: a dead worker's job is given back after about this long. */
  lockMs?: number;
  onLine?: (line: string) => void;
}

/** Tries per job (a crashed process is retried; bad input is not). */
export const ATTEMPTS = 3;
const BACKOFF_MS = 2000;

/**
 * Why the queue cannot run here, or undefined when it can: BullMQ 6 loads its Redis client,
 * ioredis, as an optional peer, and fails late (on every call) when it is absent.
 */
export function queueUnavailable(): string | undefined {
  try {
    const fromBullmq = createRequire(createRequire(import.meta.url).resolve('bullmq'));
    fromBullmq.resolve('ioredis');
    return undefined;
  } catch {
    return "the job queue needs BullMQ's Redis client, the 'ioredis' package, which is not installed; install it beside bullmq (npm install ioredis)";
  }
}

/** `redis://[:password@]host:port[/db]` as ioredis options; BullMQ's blocking calls need no retry limit. */
export function connectionOf(url: string): ConnectionOptions {
  const missing = queueUnavailable();
  if (missing) throw new RegroupError('unsupported', missing);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RegroupError('usage', `--queue '${url}' is not a URL; give redis://HOST:PORT`);
  }
  if (parsed.protocol !== 'redis:')
    throw new RegroupError('usage', `--queue '${url}' must start with redis:// (e.g. redis://10.0.0.5:6379)`);
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0)
    throw new RegroupError('usage', `--queue '${url}': the database '${parsed.pathname.slice(1)}' is not a number`);
  return {
    host: parsed.hostname || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    username: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    db,
    maxRetriesPerRequest: null,
  };
}

/** BullMQ refuses integer-looking custom ids and ':'; ours are hex, so prefix them. */
export function queueJobId(id: string): string {
  return `job-${id}`;
}

export interface EnqueueSummary {
  added: number;
  /** Already in the queue (waiting, running, done or failed there): not added again. */
  present: number;
  /** Failed jobs put back to wait by this call. */
  retried: number;
  /** Published in the results folder already: not enqueued. */
  finished: number;
}

/** Enqueue jobs that are neither published nor already queued; failed ones are retried. */
export async function enqueueJobs(jobs: JobSpec[], options: QueueOptions): Promise<EnqueueSummary> {
  const queue = new Queue(options.name ?? DEFAULT_QUEUE, { connection: connectionOf(options.url) });
  try {
    const summary: EnqueueSummary = { added: 0, present: 0, retried: 0, finished: 0 };
    const toAdd: JobSpec[] = [];
    for (const job of jobs) {
      if (finishedResult(job)) summary.finished++;
      else toAdd.push(job);
    }
    const before = new Map<string, Job | undefined>();
    for (const job of toAdd) before.set(job.id, await queue.getJob(queueJobId(job.id)));
    await queue.addBulk(
      toAdd.map((job) => ({
        name: describeJob(job),
        data: job,
        opts: {
          jobId: queueJobId(job.id),
          attempts: ATTEMPTS,
          backoff: { type: 'exponential', delay: BACKOFF_MS },
          removeOnComplete: false,
          removeOnFail: false,
        },
      })),
    );
    for (const job of toAdd) {
      const existing = before.get(job.id);
      if (!existing) summary.added++;
      else if ((await existing.getState()) === 'failed') {
        await existing.retry('failed');
        summary.retried++;
      } else summary.present++;
    }
    return summary;
  } finally {
    await queue.close();
  }
}

/** Start a worker; it runs until `close()` (which lets running jobs finish). */
export function startWorker(options: WorkerOptions): Worker<JobSpec, JobOutcome> {
  const log = options.onLine ?? (() => {});
  const lockDuration = options.lockMs ?? 30_000;
  const worker = new Worker<JobSpec, JobOutcome>(
    options.name ?? DEFAULT_QUEUE,
    async (job) => {
      const spec = job.data;
      log(`start ${spec.id} ${describeJob(spec)} (attempt ${job.attemptsMade + 1} of ${ATTEMPTS})`);
      try {
        const outcome = await runJob(spec, {
          onProgress: (fraction) => void job.updateProgress(Math.round(100 * fraction)),
        });
        log(`${outcome.status} ${spec.id} in ${outcome.seconds.toFixed(1)} s`);
        return outcome;
      } catch (err) {
        const failure = err instanceof JobFailure ? err : new JobFailure((err as Error).message, true);
        log(`failed ${spec.id}: ${failure.message}${failure.retryable ? ' (will retry)' : ''}`);
        throw failure.retryable ? failure : new UnrecoverableError(failure.message);
      }
    },
    {
      connection: connectionOf(options.url),
      concurrency: options.concurrency ?? 1,
      lockDuration,
      stalledInterval: Math.max(1000, Math.round(lockDuration / 2)),
      maxStalledCount: 2,
    },
  );
  worker.on('error', (err) => log(`queue error: ${err.message}`));
  return worker;
}

export interface QueueStatus {
  counts: Record<string, number>;
  running: { id: string; name: string; progress: number }[];
  failed: { id: string; name: string; reason: string }[];
}

/** Counts by state, the running jobs with progress, and every failed job with its reason. */
export async function queueStatus(options: QueueOptions): Promise<QueueStatus> {
  const queue = new Queue(options.name ?? DEFAULT_QUEUE, { connection: connectionOf(options.url) });
  try {
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized');
    const active = await queue.getJobs(['active'], 0, -1);
    const failed = await queue.getJobs(['failed'], 0, -1);
    return {
      counts,
      running: active.map((j) => ({ id: j.id ?? '', name: j.name, progress: Number(j.progress) || 0 })),
      failed: failed.map((j) => ({ id: j.id ?? '', name: j.name, reason: j.failedReason ?? '' })),
    };
  } finally {
    await queue.close();
  }
}

export interface WaitSummary {
  completed: number;
  failed: { id: string; description: string; reason: string }[];
  seconds: number;
}

/** Follow `jobs` in the queue until each is completed or failed for good, printing progress and an ETA. */
export async function waitForJobs(
  jobs: JobSpec[],
  options: QueueOptions & { onLine?: (line: string) => void; pollMs?: number },
): Promise<WaitSummary> {
  const log = options.onLine ?? (() => {});
  const started = performance.now();
  const queue = new Queue(options.name ?? DEFAULT_QUEUE, { connection: connectionOf(options.url) });
  try {
    const open = new Map(jobs.map((j) => [j.id, j]));
    const summary: WaitSummary = { completed: 0, failed: [], seconds: 0 };
    for (const job of jobs)
      if (finishedResult(job) && !(await queue.getJob(queueJobId(job.id)))) {
        open.delete(job.id);
        summary.completed++;
      }
    while (open.size > 0) {
      for (const [id, spec] of open) {
        const job = await queue.getJob(queueJobId(id));
        const state = job ? await job.getState() : 'unknown';
        if (state === 'completed') summary.completed++;
        else if (state === 'failed')
          summary.failed.push({ id, description: describeJob(spec), reason: job?.failedReason ?? '' });
        else continue;
        open.delete(id);
        const done = jobs.length - open.size;
        const elapsed = (performance.now() - started) / 1000;
        const eta = open.size > 0 ? `, ETA ${Math.round((elapsed / done) * open.size)} s` : '';
        log(`[${done}/${jobs.length}] ${state} ${id} ${describeJob(spec)}${eta}`);
      }
      if (open.size > 0) await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 500));
    }
    summary.seconds = (performance.now() - started) / 1000;
    return summary;
  } finally {
    await queue.close();
  }
}
