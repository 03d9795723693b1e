/**
 * The embedded batch runner: the spec's jobs on this machine, a few at a time, each in its own
 * process (job.ts). Resumable: a job whose folder is published is never run again, so running
 * the same spec after an interruption picks up where it stopped. `<results>/batch-state.json`
 * (written atomically after every change) records each job's state and failure reason for
 * `regroup batch --status`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeAtomic } from '../../compiler/onnx/io.js';
import { JobFailure, runJob, type JobOutcome } from './job.js';
import { describeJob, type JobSpec } from './spec.js';

export type JobState = 'queued' | 'running' | 'done' | 'reused' | 'failed';

export interface StateEntry {
  description: string;
  state: JobState;
  reason?: string;
  seconds?: number;
  attempts: number;
}

export interface BatchState {
  spec: string;
  updatedAt: string;
  /** The process running the batch: a 'running' job whose runner is gone was interrupted. */
  runner?: { host: string; pid: number };
  jobs: Record<string, StateEntry>;
}

export interface EmbeddedOptions {
  /** Jobs run at once (default: a small pool sized to the CPUs). */
  workers?: number;
  /** Extra tries for a job whose process crashed (bad input is never retried); default 1. */
  retries?: number;
  onLine?: (line: string) => void;
}

export interface BatchSummary {
  done: number;
  reused: number;
  failed: { id: string; description: string; reason: string }[];
  seconds: number;
  outcomes: Map<string, JobOutcome>;
}

export const STATE_FILE = 'batch-state.json';

/** A small default pool: half the CPUs, at least 1, at most 4. */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(4, Math.floor(os.availableParallelism() / 2)));
}

/** Run `jobs` (all with the same results folder) on this machine; see the file header. */
export async function runEmbedded(
  specFile: string,
  jobs: JobSpec[],
  options: EmbeddedOptions = {},
): Promise<BatchSummary> {
  const started = performance.now();
  const log = options.onLine ?? (() => {});
  const results = jobs[0]?.results;
  const state: BatchState = {
    spec: specFile,
    updatedAt: '',
    runner: { host: os.hostname(), pid: process.pid },
    jobs: {},
  };
  for (const job of jobs) state.jobs[job.id] = { description: describeJob(job), state: 'queued', attempts: 0 };
  const save = () => {
    if (!results) return;
    state.updatedAt = new Date().toISOString();
    fs.mkdirSync(results, { recursive: true });
    writeAtomic(path.join(results, STATE_FILE), [Buffer.from(`${JSON.stringify(state, null, 2)}\n`)]);
  };
  save();
  const summary: BatchSummary = { done: 0, reused: 0, failed: [], seconds: 0, outcomes: new Map() };
  const pending = [...jobs];
  const workers = Math.max(1, Math.min(options.workers ?? defaultWorkers(), jobs.length));
  let finished = 0;
  let workSeconds = 0;
  let ran = 0;
  const eta = () => {
    const left = jobs.length - finished;
    if (ran === 0 || left === 0) return '';
    return `, ETA ${formatSeconds(((workSeconds / ran) * left) / workers)}`;
  };
  const worker = async () => {
    for (let job = pending.shift(); job; job = pending.shift()) {
      const entry = state.jobs[job.id]!;
      entry.state = 'running';
      save();
      const outcome = await runWithRetries(job, entry, options.retries ?? 1, save);
      finished++;
      if (outcome instanceof JobFailure) {
        entry.state = 'failed';
        entry.reason = outcome.message;
        summary.failed.push({ id: job.id, description: entry.description, reason: outcome.message });
        log(`[${finished}/${jobs.length}] failed ${job.id} ${entry.description}: ${outcome.message}${eta()}`);
      } else {
        entry.state = outcome.status;
        entry.seconds = outcome.seconds;
        summary.outcomes.set(job.id, outcome);
        if (outcome.status === 'done') {
          summary.done++;
          ran++;
          workSeconds += outcome.seconds;
        } else summary.reused++;
        const how = outcome.status === 'done' ? `done in ${outcome.seconds.toFixed(1)} s` : 'reused (already done)';
        log(`[${finished}/${jobs.length}] ${how} ${job.id} ${entry.description}${eta()}`);
      }
      save();
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}

async function runWithRetries(
  job: JobSpec,
  entry: StateEntry,
  retries: number,
  save: () => void,
): Promise<JobOutcome | JobFailure> {
  for (;;) {
    entry.attempts++;
    try {
      return await runJob(job);
    } catch (err) {
      const failure = err instanceof JobFailure ? err : new JobFailure((err as Error).message, false);
      if (!failure.retryable || entry.attempts > retries) return failure;
      entry.reason = `attempt ${entry.attempts}: ${failure.message}; retrying`;
      save();
    }
  }
}

/** The state file of a results folder, or undefined when no embedded batch ran there. */
export function readState(results: string): BatchState | undefined {
  const file = path.join(results, STATE_FILE);
  if (!fs.existsSync(file)) return undefined;
  return JSON.parse(fs.readFileSync(file, 'utf8')) as BatchState;
}

/**
 * Whether the batch that wrote `state` is still running: true while its process is alive,
 * false when it is gone (killed, crashed, machine rebooted), undefined when this machine cannot
 * tell (it ran on another host).
 */
export function runnerAlive(state: BatchState): boolean | undefined {
  if (!state.runner || state.runner.host !== os.hostname()) return undefined;
  try {
    process.kill(state.runner.pid, 0);
    return true;
  } catch (err) {
    // EPERM: a process with that id exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function formatSeconds(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
