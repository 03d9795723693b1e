/**
 * The compress pipeline's measurements and report: accuracy, MACs and parameters of a model,
 * latency of the dense and compressed models side by side, and the common report format.
 */
import fs from 'node:fs';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import type { Model } from '../../compiler/ir/model.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import type { LayerChoice } from '../../passes/lower-grouped.js';
import type { LatencyStats } from '../../runtime/benchmark.js';
import type { ResolvedInputSpec } from '../../runtime/data/preprocess.js';
import type { Dataset } from '../../runtime/data/types.js';
import type { AccuracyResult } from '../../runtime/evaluate.js';
import type { ExecutionProvider } from '../../runtime/providers.js';
import { fileBytes } from '../evaluate.js';
import { REPORT_FORMAT, REPORT_VERSION, type Report } from '../report/schema.js';

/** One model's measurements: MACs and parameters as stored, accuracy, latency. */
export interface Side {
  macs: number;
  params: number;
  accuracy?: AccuracyResult;
  latency: LatencyStats[];
}

interface MeasureOptions {
  evalLimit?: number;
  ep?: ExecutionProvider;
  threads?: number;
  log?: (line: string) => void;
}

/** MACs, parameters and (with a test split) accuracy of `model`. */
export async function measureSide(
  model: Model,
  data: { test: Dataset | undefined; spec: ResolvedInputSpec } | undefined,
  options: MeasureOptions,
  label: string,
): Promise<Side> {
  const cost = computeCost(model, inferShapes(model)).totals;
  const side: Side = { macs: cost.macs, params: cost.params, latency: [] };
  if (data?.test) {
    const [{ evaluate }, { fixedBatchOf }] = await Promise.all([
      import('../../runtime/evaluate.js'),
      import('../../runtime/calibrate.js'),
    ]);
    side.accuracy = await evaluate(model.clone().model, fixedBatchOf(model), data.test, data.spec, {
      limit: options.evalLimit,
      batchSize: 100,
      ep: options.ep,
      threads: options.threads,
    });
  }
  options.log?.(`${label} measured`);
  return side;
}

const LATENCY_ROUNDS = 5;

/**
 * Latency of dense and compressed at each batch (default 1 and 8), side by side: rounds
 * alternate the two models so load on a shared machine hits both alike; each figure is the
 * median over the rounds' medians (p90 likewise).
 */
export async function measureLatency(
  dense: Model,
  compressed: Model,
  options: MeasureOptions,
  batches: readonly number[] = [1, 8],
): Promise<[LatencyStats[], LatencyStats[]]> {
  const { quantile } = await import('../../runtime/benchmark.js');
  const result: [LatencyStats[], LatencyStats[]] = [[], []];
  for (const batch of batches) {
    const rounds = await interleavedRounds([dense, compressed], batch, options, LATENCY_ROUNDS);
    rounds.forEach((stats, i) => {
      const median = quantile(
        stats.map((s) => s.medianMs),
        0.5,
      );
      result[i]!.push({
        ...stats[0]!,
        runs: stats.reduce((a, s) => a + s.runs, 0),
        medianMs: median,
        p90Ms: quantile(
          stats.map((s) => s.p90Ms),
          0.5,
        ),
        meanMs: stats.reduce((a, s) => a + s.meanMs, 0) / stats.length,
        minMs: Math.min(...stats.map((s) => s.minMs)),
        throughput: (1000 * batch) / median,
      });
    });
  }
  return result;
}

/**
 * Compressed latency over dense at one batch, robust to load that comes and goes: the median
 * over interleaved rounds of each round's ratio (the two medians of a round ran back to back),
 * with the dense median over the rounds.
 */
export async function measureRatio(
  dense: Model,
  compressed: Model,
  options: MeasureOptions,
  batch: number,
  rounds = 2 * LATENCY_ROUNDS - 1,
): Promise<{ ratio: number; denseMs: number }> {
  const { quantile } = await import('../../runtime/benchmark.js');
  const [d, c] = await interleavedRounds([dense, compressed], batch, options, rounds);
  const ratio = quantile(
    c!.map((s, r) => s.medianMs / d![r]!.medianMs),
    0.5,
  );
  return {
    ratio,
    denseMs: quantile(
      d!.map((s) => s.medianMs),
      0.5,
    ),
  };
}

/** `rounds` rounds, each timing every model in turn (10 runs after 2 warm-ups); per model, its rounds' stats. */
async function interleavedRounds(
  models: readonly Model[],
  batch: number,
  options: MeasureOptions,
  rounds: number,
): Promise<LatencyStats[][]> {
  const { benchmark } = await import('../../runtime/benchmark.js');
  const sides = models.map((m) => ({ model: m, bytes: encodeModel(m).bytes }));
  const stats: LatencyStats[][] = sides.map(() => []);
  for (let round = 0; round < rounds; round++) {
    for (const [i, side] of sides.entries())
      stats[i]!.push(
        await benchmark(side.bytes, side.model, {
          ep: options.ep,
          threads: options.threads,
          batch,
          runs: 10,
          warmup: 2,
        }),
      );
  }
  return stats;
}

/** What the report is made from. */
export interface ReportInput {
  method: string;
  dense: Side;
  compressed: Side;
  loweringError: number | undefined;
  structuredMacsRatio: number;
  steps: unknown[];
  choices: LayerChoice[];
  notes: string[];
  seconds: number;
  peakRssMb: number;
}

/** The common report format (`--report`, `--html`) for a compress run. */
export function compressReport(
  file: string,
  options: { output: string; keepMacs: number },
  r: ReportInput,
  dense: Model,
): Report {
  // Dense parameters by the structured layer's first output (its nodes are the lowered model's, not dense's).
  const byOutput = new Map(
    computeCost(dense, inferShapes(dense)).layers.map((l) => [l.node.outputs[0]?.name, l.params]),
  );
  const latency = (s: Side) =>
    s.latency.map((l) => ({ ep: l.ep, batch: l.batch, medianMs: l.medianMs, p90Ms: l.p90Ms }));
  const report: Report = {
    format: REPORT_FORMAT,
    version: REPORT_VERSION,
    kind: 'compress',
    createdAt: new Date().toISOString(),
    model: {
      file: options.output,
      macs: r.compressed.macs,
      params: r.compressed.params,
      bytes: fs.existsSync(options.output) ? fileBytes(options.output) : 0,
    },
    baseline: { file, macs: r.dense.macs, params: r.dense.params },
    totals: {
      macsBefore: r.dense.macs,
      macsAfter: r.compressed.macs,
      paramsBefore: r.dense.params,
      paramsAfter: r.compressed.params,
    },
    latency: latency(r.compressed),
    layers: r.choices.map((c) => {
      const paramsBefore = byOutput.get(c.node.outputs[0]?.name) ?? 0;
      return {
        name: c.label,
        op: `${c.node.opType} → ${c.form}`,
        macsBefore: c.denseMacs,
        macsAfter: c.macs,
        paramsBefore,
        paramsAfter: c.params,
      };
    }),
    notes: r.notes,
    extra: {
      method: r.method,
      keepMacs: options.keepMacs,
      denseLatency: latency(r.dense),
      ...(r.dense.accuracy
        ? {
            denseAccuracy: {
              top1: r.dense.accuracy.top1,
              top5: r.dense.accuracy.top5,
              samples: r.dense.accuracy.samples,
            },
          }
        : {}),
      ...(r.loweringError === undefined ? {} : { loweringError: r.loweringError }),
      lowering: r.choices.map((c) => ({ node: c.label, form: c.form, reason: c.reason, groups: c.groups ?? null })),
      structuredMacsRatio: r.structuredMacsRatio,
      steps: r.steps,
      seconds: r.seconds,
      peakRssMb: r.peakRssMb,
    },
  };
  if (r.compressed.accuracy)
    report.accuracy = {
      top1: r.compressed.accuracy.top1,
      top5: r.compressed.accuracy.top5,
      samples: r.compressed.accuracy.samples,
      dataset: 'test split',
    };
  return report;
}
