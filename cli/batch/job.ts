/**
 * Run one batch job in its own process (job-child.ts) and publish its artifacts atomically:
 * the child writes into a private scratch folder `<results>/.scratch/<id>.<host>.<pid>.<n>`
 * on the same file system, and only a child that exited cleanly with result.json written has
 * its folder renamed to `<results>/<id>/`. A rename is atomic and refuses to replace a folder
 * that holds files, so a retried or duplicated job never leaves a half-written model and the
 * first finished copy wins; later copies are dropped as reused.
 */
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JobMessage, JobRequest, JobResult } from './job-child.js';
import type { JobSpec } from './spec.js';

export type { JobResult };

/** How a job ended: run here now, or found already finished. */
export interface JobOutcome {
  status: 'done' | 'reused';
  result: JobResult;
  /** Wall time spent here, including starting the process. */
  seconds: number;
}

/** A job that did not finish; `retryable` is false for bad input (a corrupt model), which fails the same way again. */
export class JobFailure extends Error {
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean) {
    super(message);
    this.name = 'JobFailure';
    this.retryable = retryable;
  }
}

export interface RunJobOptions {
  onProgress?: (fraction: number, stage: string) => void;
  /** Aborting kills the job's process and removes its scratch folder. */
  signal?: AbortSignal;
}

/** The folder a job's artifacts are published to. */
export function jobFolder(job: Pick<JobSpec, 'id' | 'results'>): string {
  return path.join(job.results, job.id);
}

/** The job's published result, or undefined when it has not finished (anywhere). */
export function finishedResult(job: Pick<JobSpec, 'id' | 'results'>): JobResult | undefined {
  const file = path.join(jobFolder(job), 'result.json');
  if (!fs.existsSync(file)) return undefined;
  return JSON.parse(fs.readFileSync(file, 'utf8')) as JobResult;
}

let scratchCounter = 0;

/** Run `job` in a child process unless its result is already published; see the file header. */
export async function runJob(job: JobSpec, options: RunJobOptions = {}): Promise<JobOutcome> {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const existing = finishedResult(job);
  if (existing) return { status: 'reused', result: existing, seconds: seconds() };
  const scratchRoot = path.join(job.results, '.scratch');
  fs.mkdirSync(scratchRoot, { recursive: true });
  // The job's process makes the folder itself: a runner killed before the process got its
  // request leaves nothing behind.
  const scratch = path.join(scratchRoot, `${job.id}.${os.hostname()}.${process.pid}.${scratchCounter++}`);
  try {
    const result = await runChild({ job, scratch }, options);
    if (!publish(scratch, jobFolder(job)))
      return { status: 'reused', result: finishedResult(job)!, seconds: seconds() };
    sweepScratch(scratchRoot, job.id);
    return { status: 'done', result, seconds: seconds() };
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/** Rename scratch → final; false when another run published the job first. */
function publish(scratch: string, final: string): boolean {
  try {
    fs.renameSync(scratch, final);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === 'ENOTEMPTY' || code === 'EEXIST') && fs.existsSync(path.join(final, 'result.json'))) return false;
    throw err;
  }
}

/** Once a job is published, the scratch folders of its other (dead or duplicate) runs are garbage. */
function sweepScratch(scratchRoot: string, id: string): void {
  for (const name of fs.readdirSync(scratchRoot))
    if (name.startsWith(`${id}.`)) fs.rmSync(path.join(scratchRoot, name), { recursive: true, force: true });
}

function runChild(request: JobRequest, options: RunJobOptions): Promise<JobResult> {
  return new Promise((resolve, reject) => {
    const child = fork(childEntry(), [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], signal: options.signal });
    const stderr: string[] = [];
    let last: JobMessage | undefined;
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr.push(chunk.toString('utf8'));
      if (stderr.length > 50) stderr.shift();
    });
    child.on('message', (message: JobMessage) => {
      if (message.type === 'progress') options.onProgress?.(message.fraction, message.stage);
      else last = message;
    });
    child.on('error', (err) => {
      if ((err as { name?: string }).name !== 'AbortError') reject(new JobFailure(err.message, true));
    });
    child.on('exit', (code, signal) => {
      if (code === 0 && last?.type === 'done') return resolve(last.result);
      if (last?.type === 'error') return reject(new JobFailure(`error[${last.code}]: ${last.message}`, !last.input));
      if (options.signal?.aborted) return reject(new JobFailure('aborted', true));
      const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
      const lines = stderr.join('').trim().split('\n');
      // An uncaught error prints its message first and a stack after it: keep the message.
      const tail = (lines.find((l) => /Error\b/.test(l)) ?? lines.at(-1) ?? '').trim();
      reject(
        new JobFailure(
          `job process ${how}${signal === 'SIGKILL' ? ' (out of memory?)' : ''}${tail ? `: ${tail}` : ''}`,
          true,
        ),
      );
    });
    child.send(request);
  });
}

/** job-child.js beside this module; from the TypeScript sources (tests) the compiled one in dist/. */
function childEntry(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return path.join(path.dirname(here), 'job-child.js');
  const root = path.resolve(path.dirname(here), '../..');
  return path.join(root, 'dist/cli/batch/job-child.js');
}
