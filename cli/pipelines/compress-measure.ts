/**
 * The compress pipeline's measurements and report: accuracy, MACs and parameters of a model,
 * latency of the dense and compressed models side by side, and the common report format.
 */
import fs from 'node:fs';
import type { Connectivity } from '../../compiler/analysis/connectivity.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node } from '../../compiler/ir/node.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import type { LayerChoice } from '../../passes/lower-grouped.js';
import type { LatencyStats } from '../../runtime/benchmark.js';
import type { ResolvedInputSpec } from '../../runtime/data/preprocess.js';
import type { Dataset } from '../../runtime/data/types.js';
import type { AccuracyResult } from '../../runtime/evaluate.js';
import type { ExecutionProvider } from '../../runtime/providers.js';
import { fileBytes } from '../evaluate.js';
import { encodeConnectivity } from '../report/connectivity.js';
import {
  REPORT_FORMAT,
  REPORT_VERSION,
  type Report,
  type ReportAccuracy,
  type ReportLayer,
  type ReportLoweringForm,
} from '../report/schema.js';

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
  /** The structure's grouped layers (Structured.connectivity), drawn per layer in the report. */
  connectivity: ReadonlyMap<Node, Connectivity>;
  steps: unknown[];
  choices: LayerChoice[];
  /** A latency target's search (cli/pipelines/latency-target.ts), when one was given. */
  latencySearch?: { chosen: unknown; probes: readonly unknown[]; wanted: number };
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
      structureMacsRatio: r.structuredMacsRatio,
    },
    latency: latency(r.compressed),
    layers: compressLayers(r, dense),
    notes: r.notes,
    extra: {
      method: r.method,
      keepMacs: options.keepMacs,
      ...(r.loweringError === undefined ? {} : { loweringError: r.loweringError }),
      steps: r.steps,
      ...(r.latencySearch ? { latencySearch: r.latencySearch } : {}),
      seconds: r.seconds,
      peakRssMb: r.peakRssMb,
    },
  };
  if (r.dense.accuracy) report.baseline!.accuracy = accuracyOf(r.dense.accuracy);
  if (r.dense.latency.length > 0) report.baseline!.latency = latency(r.dense);
  if (r.compressed.accuracy) report.accuracy = accuracyOf(r.compressed.accuracy);
  return report;
}

function accuracyOf(a: AccuracyResult): ReportAccuracy {
  return { top1: a.top1, top5: a.top5, samples: a.samples, dataset: 'test split' };
}

/** One row per grouped layer: dense → lowered cost, its lowering, and its connectivity. */
function compressLayers(r: ReportInput, dense: Model): ReportLayer[] {
  // The choices' nodes belong to the fine-tuned model, the connectivity's to the structured one
  // and the parameters' to dense: all three write the same output values (compiler/ir/match.ts).
  const outputOf = (node: Node) => node.outputs[0]?.name;
  const denseParams = new Map(computeCost(dense, inferShapes(dense)).layers.map((l) => [outputOf(l.node), l.params]));
  const connectivity = new Map([...r.connectivity].map(([node, conn]) => [outputOf(node), conn]));
  return r.choices.map((c) => {
    const form: ReportLoweringForm = c.form;
    const conn = connectivity.get(outputOf(c.node));
    return {
      name: c.label,
      op: c.node.opType,
      macsBefore: c.denseMacs,
      macsAfter: c.macs,
      paramsBefore: denseParams.get(outputOf(c.node)) ?? 0,
      paramsAfter: c.params,
      lowering: { form, ...(c.groups ? { groups: c.groups } : {}), reason: c.reason },
      ...(conn ? { connectivity: encodeConnectivity(conn) } : {}),
    };
  });
}
