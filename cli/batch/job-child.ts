/**
 * The process one batch job runs in (forked by job.ts with an IPC channel): it receives the
 * job and a private scratch folder, runs the compress pipeline writing everything into that
 * folder, reports progress, and exits. A crash or an out-of-memory kill here costs this job
 * only. When the parent goes away (a killed worker) the channel closes and this process
 * removes its scratch folder and exits, so a dead worker leaves no job running on its behalf.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RegroupError } from '../../compiler/errors.js';
import { writeAtomic } from '../../compiler/onnx/io.js';
import { compressModel, type CompressOptions } from '../pipelines/compress.js';
import { writeReport } from '../report/command.js';
import { renderHtml } from '../report/html.js';
import { describeJob, sha256File, type JobSpec } from './spec.js';

/** Parent → child: run this job into `scratch`. */
export interface JobRequest {
  job: JobSpec;
  scratch: string;
}

/** Child → parent messages. */
export type JobMessage =
  | { type: 'progress'; fraction: number; stage: string }
  | { type: 'done'; result: JobResult }
  | { type: 'error'; code: string; message: string; input: boolean };

/** What a finished job leaves in `<results>/<id>/result.json` beside model.onnx and its reports. */
export interface JobResult {
  id: string;
  description: string;
  job: JobSpec;
  seconds: number;
  host: string;
  macsRatio: number;
  top1Before?: number;
  top1After?: number;
  /** Median latency (ms) at the first measured batch, dense and compressed, when measured. */
  latencyBatch?: number;
  latencyBeforeMs?: number;
  latencyAfterMs?: number;
  modelSha256: string;
}

let scratch: string | undefined;

function send(message: JobMessage): void {
  process.send?.(message);
}

/** The compress options a job stands for. */
export function compressOptionsOf(job: JobSpec, output: string): CompressOptions {
  const budget =
    'keepMacs' in job.target
      ? { keepMacs: job.target.keepMacs }
      : {
          keepMacs: 0.5,
          latencyTarget: { keep: job.target.keepLatency, batch: job.target.latencyBatch, plan: 'macs' as const },
          latencyBatch: job.target.latencyBatch,
        };
  return {
    output,
    method: job.method,
    methodOptions: job.methodOptions,
    ...budget,
    data: job.data ?? undefined,
    finetune: job.finetune.scheme,
    epochs: job.finetune.epochs,
    limit: job.finetune.limit,
    evalLimit: job.options.evalLimit,
    seed: job.options.seed,
    latency: job.options.latency,
  };
}

async function run({ job, scratch: dir }: JobRequest): Promise<JobResult> {
  scratch = dir;
  fs.mkdirSync(dir);
  const started = performance.now();
  if (sha256File(job.model) !== job.modelSha256)
    throw new RegroupError(
      'bad-model',
      `${job.model} changed since the job was made (its sha256 differs); enqueue the spec again to make a new job`,
    );
  send({ type: 'progress', fraction: 0.05, stage: 'compress' });
  const finalDir = path.join(job.results, job.id);
  const outcome = await compressModel(job.model, {
    ...compressOptionsOf(job, path.join(dir, 'model.onnx')),
    onProgress: (event) => {
      if (event.phase === 'train' && event.total > 0)
        send({ type: 'progress', fraction: 0.1 + (0.8 * event.done) / event.total, stage: 'fine-tune' });
    },
  });
  send({ type: 'progress', fraction: 0.95, stage: 'write' });
  const report = outcome.report;
  report.model.file = path.join(finalDir, 'model.onnx');
  writeReport(path.join(dir, 'report.json'), report);
  writeAtomic(path.join(dir, 'report.html'), [
    Buffer.from(renderHtml([report], { title: `regroup batch job ${job.id}: ${describeJob(job)}` })),
  ]);
  const [latencyDense] = outcome.dense.latency;
  const [latencyCompressed] = outcome.compressed.latency;
  const result: JobResult = {
    id: job.id,
    description: describeJob(job),
    job,
    seconds: (performance.now() - started) / 1000,
    host: os.hostname(),
    macsRatio: outcome.compressed.macs / outcome.dense.macs,
    top1Before: outcome.dense.accuracy?.top1,
    top1After: outcome.compressed.accuracy?.top1,
    latencyBatch: latencyDense?.batch,
    latencyBeforeMs: latencyDense?.medianMs,
    latencyAfterMs: latencyCompressed?.medianMs,
    modelSha256: sha256File(path.join(dir, 'model.onnx')),
  };
  // result.json is written last: a folder holding it holds a whole job.
  writeAtomic(path.join(dir, 'result.json'), [Buffer.from(`${JSON.stringify(result, null, 2)}\n`)]);
  return result;
}

function removeScratch(): void {
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
}

let finishing = false;

/** Send the last message, then exit (the channel is flushed before the process goes). */
function finish(message: JobMessage, code: number): void {
  finishing = true;
  if (process.send) process.send(message, () => process.exit(code));
  else process.exit(code);
}

process.on('disconnect', () => {
  if (finishing) return;
  removeScratch();
  process.exit(1);
});

process.once('message', (request: JobRequest) => {
  // The parent may have gone between sending the request and this process reading it.
  if (!process.connected) process.exit(1);
  run(request).then(
    (result) => finish({ type: 'done', result }, 0),
    (err: unknown) => {
      removeScratch();
      // Bad input fails the same way on every try; runtime and I/O errors may not (a flaky share).
      const input = err instanceof RegroupError && err.code !== 'runtime' && err.code !== 'io';
      const code = err instanceof RegroupError ? err.code : 'internal';
      finish({ type: 'error', code, message: (err as Error)?.message ?? String(err), input }, 1);
    },
  );
});
