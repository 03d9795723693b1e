/**
 * `regroup eval` as a library call: accuracy on labelled data (top-1, top-5), agreement
 * with a reference model, latency at batch 1 and N, size and MACs — as a report that
 * `--report` writes as JSON and `--html` renders.
 */
import fs from 'node:fs';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import { loadModel } from '../compiler/onnx/io.js';
import type { LatencyStats } from '../runtime/benchmark.js';
import type { AccuracyResult } from '../runtime/evaluate.js';
import type { ExecutionProvider } from '../runtime/providers.js';
import { describePreprocessing, preprocessingJson, type PreprocessOptions } from '../runtime/data/preprocess-spec.js';
import { REPORT_FORMAT, REPORT_VERSION, type Report } from './report/schema.js';

export interface EvalOptions {
  /** Dataset spec: a folder, `DIR,labels.csv`, `mnist[:split]`, `fashion-mnist[:split]`, `idx:PATH`. */
  data: string;
  /** The preprocessing flags (cli/preprocess-flags.ts); absent: the model's metadata, else a preset by input shape. */
  preprocessing?: PreprocessOptions;
  /** Same as preprocessing.preset (which wins). */
  preset?: string;
  reference?: string;
  ep?: ExecutionProvider;
  limit?: number;
  batch?: number;
  strict?: boolean;
  /** Measure latency at batch 1 and `batch` (default true). */
  latency?: boolean;
  threads?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface EvalOutcome {
  report: Report;
  accuracy: AccuracyResult;
  latency: LatencyStats[];
  presetReason: string;
  dataset: string;
}

export async function evalModel(file: string, options: EvalOptions): Promise<EvalOutcome> {
  const [{ openDataset }, { inputSpecFor }, { evaluate }, { fixedBatchOf }, { benchmark }] = await Promise.all([
    import('../runtime/data/datasets.js'),
    import('../runtime/data/preprocess.js'),
    import('../runtime/evaluate.js'),
    import('../runtime/calibrate.js'),
    import('../runtime/benchmark.js'),
  ]);
  const model = loadModel(file);
  const cost = computeCost(model, inferShapes(model));
  const spec = inputSpecFor(model, {
    ...options.preprocessing,
    preset: options.preprocessing?.preset ?? options.preset,
  });
  const dataset = await openDataset(options.data, { strict: options.strict });
  const fixed = fixedBatchOf(model);
  const session = { ep: options.ep, threads: options.threads };
  let accuracy: AccuracyResult;
  try {
    accuracy = await evaluate(file, fixed, dataset, spec, {
      ...session,
      batchSize: options.batch ?? 32,
      limit: options.limit,
      reference: options.reference,
      strict: options.strict,
      onProgress: options.onProgress,
    });
  } finally {
    await dataset.close?.();
  }
  const latency: LatencyStats[] = [];
  if (options.latency !== false) {
    const sizes = fixed ? [fixed] : [...new Set([1, options.batch ?? 8])];
    for (const batch of sizes)
      latency.push(
        await benchmark(file, model, {
          ...session,
          batch,
          runs: 20,
          warmup: 3,
          shapes: { [spec.name]: shapeFor(spec, batch) },
        }),
      );
  }
  const notes = [`preprocessing: ${describePreprocessing(spec)}`];
  if (accuracy.skipped)
    notes.push(`${accuracy.skipped} unreadable image(s) skipped, e.g. ${accuracy.skippedSources.join(', ')}`);
  const report: Report = {
    format: REPORT_FORMAT,
    version: REPORT_VERSION,
    kind: 'eval',
    createdAt: new Date().toISOString(),
    model: { file, macs: cost.totals.macs, params: cost.totals.params, bytes: fileBytes(file) },
    accuracy: { top1: accuracy.top1, top5: accuracy.top5, samples: accuracy.samples, dataset: dataset.name },
    latency: latency.map((l) => ({ ep: l.ep, batch: l.batch, medianMs: l.medianMs, p90Ms: l.p90Ms })),
    totals: { macsAfter: cost.totals.macs, paramsAfter: cost.totals.params },
    notes,
    preprocessing: preprocessingJson(spec),
  };
  if (accuracy.agreement && options.reference)
    report.agreement = {
      ...accuracy.agreement,
      cosine: Math.min(1, Math.max(-1, accuracy.agreement.cosine)),
      samples: accuracy.samples,
      reference: options.reference,
    };
  return { report, accuracy, latency, presetReason: spec.presetReason, dataset: dataset.name };
}

function shapeFor(
  spec: { layout: 'NCHW' | 'NHWC'; channels: number; height: number; width: number },
  batch: number,
): number[] {
  return spec.layout === 'NCHW'
    ? [batch, spec.channels, spec.height, spec.width]
    : [batch, spec.height, spec.width, spec.channels];
}

/** Size on disk of a model and its external data files. */
export function fileBytes(file: string): number {
  let bytes = fs.statSync(file).size;
  const side = `${file}.data`;
  if (fs.existsSync(side)) bytes += fs.statSync(side).size;
  return bytes;
}
