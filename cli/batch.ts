/**
 * The `regroup batch` and `regroup worker` commands: a job spec (cli/batch/spec.ts) run on
 * this machine by a small process pool (cli/batch/embedded.ts), or enqueued on BullMQ for
 * workers on any number of machines (cli/batch/queue.ts); `--status` for either; the zoo
 * report over every finished job (cli/batch/zoo-report.ts).
 */
import path from 'node:path';
import type { Command } from 'commander';
import { RegroupError } from '../compiler/errors.js';
import { positiveInt } from './args.js';
import { defaultWorkers, formatSeconds, readState, runEmbedded, runnerAlive } from './batch/embedded.js';
import { finishedResult } from './batch/job.js';
import { DEFAULT_QUEUE, enqueueJobs, queueStatus, startWorker, waitForJobs } from './batch/queue.js';
import { expandJobs, readSpec } from './batch/spec.js';
import { writeZooReport } from './batch/zoo-report.js';

interface BatchFlags {
  workers?: number;
  queue?: string;
  name: string;
  wait?: boolean;
  status?: boolean;
  zoo?: string;
}

const err = (line: string) => process.stderr.write(`${line}\n`);

export function registerBatchCommands(program: Command): void {
  program
    .command('batch')
    .description(
      'run a job spec (models × methods × targets × data × fine-tuning) on this machine, or enqueue it for `regroup worker`s with --queue',
    )
    .argument('[spec]', 'job spec JSON (see README, Batch jobs)')
    .option('--workers <n>', `jobs run at once on this machine (default ${defaultWorkers()})`, positiveInt)
    .option('--queue <url>', 'enqueue on this Redis (redis://HOST:PORT) instead of running here')
    .option('--name <queue>', 'queue name', DEFAULT_QUEUE)
    .option('--wait', 'with --queue: follow the jobs until each is done or failed, then write the zoo report')
    .option('--status', 'show queued, running, done and failed jobs (with reasons) instead of running')
    .option('--zoo <file>', 'where the zoo report goes (default <results>/zoo.html)')
    .addHelpText(
      'after',
      `
A job spec (paths relative to it; every combination of the lists is one compress job):
  { "models": ["zoo/resnet20.onnx"],
    "methods": ["wsp", "l1", { "method": "msgc", "heads": 4 }],
    "targets": [{ "keep-macs": 0.5 }, { "keep-latency": 0.7, "latency-batch": 8 }],
    "data": ["cifar/"], "finetune": [{ "scheme": "global", "epochs": 2, "limit": 20000 }],
    "options": { "seed": 0, "latency": true }, "results": "results/" }
Each job's id hashes the model's bytes and the flags: a finished job is never run again.`,
    )
    .action(async (specFile: string | undefined, flags: BatchFlags) => {
      if (flags.status) return printStatus(specFile, flags);
      if (!specFile) throw new RegroupError('usage', 'give the job spec: regroup batch jobs.json');
      const spec = readSpec(specFile);
      const jobs = expandJobs(spec);
      const zoo = flags.zoo ?? path.join(spec.results, 'zoo.html');
      if (flags.queue) {
        if (flags.workers !== undefined)
          throw new RegroupError(
            'usage',
            '--workers sizes the pool on this machine; with --queue, start `regroup worker`s',
          );
        const added = await enqueueJobs(jobs, { url: flags.queue, name: flags.name });
        console.log(
          `${jobs.length} jobs: ${added.added} enqueued, ${added.present} already queued, ${added.retried} failed ones retried, ${added.finished} already done (${spec.results})`,
        );
        if (!flags.wait) return;
        const waited = await waitForJobs(jobs, { url: flags.queue, name: flags.name, onLine: err });
        finish(
          jobs.length,
          waited.failed,
          `${waited.completed} done in ${formatSeconds(waited.seconds)}`,
          spec.results,
          zoo,
        );
        return;
      }
      if (flags.wait)
        throw new RegroupError('usage', '--wait goes with --queue; without it the batch runs here and waits');
      const workers = flags.workers ?? defaultWorkers();
      err(`${jobs.length} jobs, ${workers} at a time, results in ${spec.results}`);
      const summary = await runEmbedded(spec.file, jobs, { workers, onLine: err });
      const text = `${summary.done} done, ${summary.reused} reused in ${formatSeconds(summary.seconds)}`;
      finish(jobs.length, summary.failed, text, spec.results, zoo);
    });

  program
    .command('worker')
    .description('take batch jobs from a Redis queue (run on any number of machines sharing the results folder)')
    .requiredOption('--queue <url>', 'the Redis the batch was enqueued on (redis://HOST:PORT)')
    .option('--concurrency <n>', 'jobs this worker runs at once, each in its own process', positiveInt, 1)
    .option('--name <queue>', 'queue name', DEFAULT_QUEUE)
    .option(
      '--lock-ms <ms>',
      "a job's lock lifetime: a worker that dies gives its job back after about this long",
      positiveInt,
      30_000,
    )
    .action(async (flags: { queue: string; concurrency: number; name: string; lockMs: number }) => {
      const log = (line: string) => console.log(line);
      const worker = startWorker({
        url: flags.queue,
        name: flags.name,
        concurrency: flags.concurrency,
        lockMs: flags.lockMs,
        onLine: log,
      });
      await worker.waitUntilReady();
      log(`worker ${process.pid} on ${flags.queue} (${flags.name}), concurrency ${flags.concurrency}`);
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log(`${signal}: finishing running jobs, then exiting`);
          void worker.close().then(resolve);
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
    });
}

function finish(
  total: number,
  failed: { id: string; description: string; reason: string }[],
  text: string,
  results: string,
  zoo: string,
): void {
  console.log(`${total} jobs: ${text}, ${failed.length} failed`);
  for (const f of failed) console.log(`failed ${f.id} ${f.description}: ${f.reason}`);
  if (failed.length < total) {
    const shown = writeZooReport(results, zoo);
    console.log(`wrote ${zoo} (${shown} finished jobs)`);
  }
  if (failed.length > 0)
    throw new RegroupError(
      'runtime',
      `${failed.length} of ${total} jobs failed (reasons above); fix them and run the batch again — finished jobs are reused`,
    );
}

async function printStatus(specFile: string | undefined, flags: BatchFlags): Promise<void> {
  if (flags.queue) {
    const status = await queueStatus({ url: flags.queue, name: flags.name });
    const c = status.counts;
    const queued = (c.waiting ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0);
    console.log(`queued ${queued}, running ${c.active ?? 0}, done ${c.completed ?? 0}, failed ${c.failed ?? 0}`);
    for (const r of status.running) console.log(`running ${r.id} ${r.name}: ${r.progress}%`);
    for (const f of status.failed) console.log(`failed ${f.id} ${f.name}: ${f.reason}`);
    return;
  }
  if (!specFile) throw new RegroupError('usage', '--status needs the job spec (or --queue URL for a queued batch)');
  const spec = readSpec(specFile);
  const jobs = expandJobs(spec);
  const state = readState(spec.results);
  // A job recorded as running by a batch process that is gone was interrupted: it waits for the next run.
  const gone = state ? runnerAlive(state) === false : false;
  const counts = { queued: 0, running: 0, done: 0, failed: 0, interrupted: 0 };
  const failed: string[] = [];
  for (const job of jobs) {
    const entry = state?.jobs[job.id];
    if (finishedResult(job)) counts.done++;
    else if (entry?.state === 'failed') {
      counts.failed++;
      failed.push(`failed ${job.id} ${entry.description}: ${entry.reason ?? ''}`);
    } else if (entry?.state === 'running' && !gone) counts.running++;
    else {
      counts.queued++;
      if (entry?.state === 'running') counts.interrupted++;
    }
  }
  console.log(`queued ${counts.queued}, running ${counts.running}, done ${counts.done}, failed ${counts.failed}`);
  if (counts.interrupted > 0)
    console.log(
      `${counts.interrupted} of the queued were interrupted (the batch process ${state!.runner!.pid} that ran them is gone); run \`regroup batch ${specFile}\` again to resume`,
    );
  for (const line of failed) console.log(line);
}
