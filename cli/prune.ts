/**
 * `regroup prune` as a library call: prepare the graph, analyse channel groups, score,
 * plan (or load a plan), apply the channel map, tidy, verify the IR, save atomically, and
 * optionally compare the pruned model with the original in onnxruntime.
 *
 * A model with external data stays that way: its weights are read when scored, let go of
 * once the plan is made, read again one by one as they are cut, and the output keeps its
 * weights in a side file (`<output>.data`), so the run holds the weights about once.
 */
import fs from 'node:fs';
import { analyzeChannels, type ChannelAnalysis } from '../compiler/analysis/channel-groups.js';
import { computeCost, type CostReport } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import { RegroupError } from '../compiler/errors.js';
import { constantOf } from '../compiler/ir/constants.js';
import { nodeLabels } from '../compiler/ir/label.js';
import type { Model } from '../compiler/ir/model.js';
import type { Node } from '../compiler/ir/node.js';
import { outputChannels } from '../compiler/ir/op-roles.js';
import { releaseExternalBytes, usesExternalData } from '../compiler/onnx/external-data.js';
import { loadModel, saveModel, writeAtomic } from '../compiler/onnx/io.js';
import {
  applyChannelMap,
  channelImportance,
  planPruning,
  removalSet,
  runPasses,
  TIDY,
  type Aggregation,
  type Criterion,
  type PruningPlan,
} from '../passes/index.js';
import { criterionNamed } from '../passes/importance.js';
import { describeFolds, type FoldSummary } from '../passes/fold-log.js';
import { parseInputShapes, prepareForAnalysis } from './api.js';
import { fileBytes } from './evaluate.js';
import { REPORT_FORMAT, REPORT_VERSION, type Report } from './report/schema.js';

export interface PruneOptions {
  keepMacs?: number;
  keepParams?: number;
  criterion?: Criterion;
  aggregate?: Aggregation;
  uniform?: boolean;
  roundTo?: number;
  minChannels?: number;
  /** A saved plan to apply instead of planning. */
  plan?: string;
  savePlan?: string;
  verify?: boolean;
  force?: boolean;
  inputShapes?: readonly string[];
  /** Seeded inputs for --verify. */
  verifySamples?: number;
}

export interface LayerChange {
  name: string;
  op: string;
  channelsBefore: number;
  channelsAfter: number;
  macsBefore: number;
  macsAfter: number;
  paramsBefore: number;
  paramsAfter: number;
}

export interface PruneReport {
  input: string;
  output: string;
  changed: boolean;
  /** Constant subgraphs folded into initializers before the analysis. */
  folded: FoldSummary;
  criterion: string;
  target: { metric: 'macs' | 'params' | 'latency'; keep: number } | undefined;
  before: { macs: number; params: number };
  after: { macs: number; params: number };
  macsRatio: number;
  paramsRatio: number;
  groups: { total: number; prunable: number; pruned: number };
  layers: LayerChange[];
  notes: string[];
  seconds: number;
  verify?: { samples: number; cosine: number; top1Agreement: number; maxAbsDiff: number };
}

/** Prune a model file and write the result; see PruneOptions. */
export async function pruneModel(input: string, output: string, options: PruneOptions): Promise<PruneReport> {
  const started = performance.now();
  const model = loadModel(input);
  const external = usesExternalData(model);
  const names = model.graph.inputs.filter((v) => !v.isInitializer()).map((v) => v.name);
  const inputShapes = parseInputShapes(options.inputShapes ?? [], names);
  const folded = await prepareForAnalysis(model);
  const shapes = inferShapes(model, { inputShapes });
  const analysis = analyzeChannels(model, shapes);
  if (analysis.unsupported)
    throw new RegroupError(
      'unsupported',
      `${input}: ${analysis.unsupported}; prune a float model before quantizing it`,
    );
  const before = computeCost(model, shapes);
  const notes: string[] = [];
  const prunable = analysis.groups.filter((g) => g.prunable);
  if (prunable.length === 0) {
    const reasons = [...new Set(analysis.groups.flatMap((g) => g.reasons))].slice(0, 3);
    notes.push(
      `nothing to prune: every channel group is pinned (${reasons.join('; ') || 'no channel groups'}); the model was written unchanged`,
    );
    writeUnchanged(input, output, options.force, external);
    return report(input, output, before, before, analysis, undefined, [], notes, started, 'none', false, folded);
  }
  const { ceiling } = criterionNamed(options.criterion ?? 'l1');
  const plan = options.plan
    ? readPlan(options.plan)
    : planPruning(
        analysis,
        before,
        channelImportance(analysis, options),
        { ...options, ceiling },
        options.criterion ?? 'l1',
      );
  // Scoring read every weight; the plan holds none of them, so they go back to their file.
  if (external) releaseExternalBytes(model);
  if (options.savePlan) writeAtomic(options.savePlan, [Buffer.from(`${JSON.stringify(plan, null, 2)}\n`)]);
  const layersBefore = channelsOf(model);
  const labels = nodeLabels(model.graph);
  applyChannelMap(model, analysis, removalSet(plan, analysis, options.plan ?? 'plan'));
  runPasses(model, TIDY, {}, { fixpoint: true });
  model.graph.verify();
  const after = computeCost(model, inferShapes(model, { inputShapes }));
  explainShortfall(plan, before, after, notes);
  saveModel(model, output, { protect: [input], force: options.force, externalData: external });
  const layers = layerChanges(layersBefore, channelsOf(model), before, after, labels);
  const result = report(
    input,
    output,
    before,
    after,
    analysis,
    plan,
    layers,
    notes,
    started,
    plan.criterion,
    true,
    folded,
  );
  if (options.verify) result.verify = await compareOutputs(input, output, options.verifySamples ?? 8, inputShapes);
  return result;
}

function report(
  input: string,
  output: string,
  before: CostReport,
  after: CostReport,
  analysis: ChannelAnalysis,
  plan: PruningPlan | undefined,
  layers: LayerChange[],
  notes: string[],
  started: number,
  criterion: string,
  changed: boolean,
  folded: FoldSummary,
): PruneReport {
  return {
    input,
    output,
    changed,
    folded,
    criterion,
    target: plan?.target,
    before: { macs: before.totals.macs, params: before.totals.params },
    after: { macs: after.totals.macs, params: after.totals.params },
    macsRatio: after.totals.macs / before.totals.macs,
    paramsRatio: after.totals.params / before.totals.params,
    groups: {
      total: analysis.groups.length,
      prunable: analysis.groups.filter((g) => g.prunable).length,
      pruned: plan ? plan.groups.filter((g) => g.removed.length > 0).length : 0,
    },
    layers,
    notes,
    seconds: (performance.now() - started) / 1000,
  };
}

function readPlan(file: string): PruningPlan {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new RegroupError(
      'io',
      `cannot read plan ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  try {
    return JSON.parse(text) as PruningPlan;
  } catch (err) {
    throw new RegroupError('usage', `plan ${file} is not valid JSON: ${(err as Error).message}`);
  }
}

function writeUnchanged(input: string, output: string, force: boolean | undefined, external: boolean): void {
  // The file names its data file, so an external-data model is written anew beside the output.
  if (external) {
    saveModel(loadModel(input), output, { protect: [input], force, externalData: true });
    return;
  }
  const bytes = fs.readFileSync(input);
  if (!force && fs.existsSync(output) && fs.realpathSync(output) === fs.realpathSync(input)) {
    throw new RegroupError(
      'usage',
      `refusing to overwrite the input ${input}; choose another output path or pass --force`,
    );
  }
  writeAtomic(output, [bytes]);
}

/** Output channels (compiler/ir/op-roles.ts) of every layer with a constant weight, by Node: pruning keeps the nodes. */
function channelsOf(model: Model): Map<Node, { op: string; channels: number }> {
  const out = new Map<Node, { op: string; channels: number }>();
  for (const node of model.graph.nodes()) {
    const w = constantOf(node.inputs[1]);
    const channels = w && outputChannels(node, w.dims);
    if (channels !== undefined) out.set(node, { op: node.opType, channels });
  }
  return out;
}

/** One row per layer, named by its label (node names may be empty or repeated). */
function layerChanges(
  beforeLayers: ReturnType<typeof channelsOf>,
  afterLayers: ReturnType<typeof channelsOf>,
  before: CostReport,
  after: CostReport,
  labels: ReadonlyMap<Node, string>,
): LayerChange[] {
  const byNode = (cost: CostReport) => new Map(cost.layers.map((l) => [l.node, l] as const));
  const [lb, la] = [byNode(before), byNode(after)];
  return [...beforeLayers].map(([node, { op, channels }]) => ({
    name: labels.get(node) ?? node.name,
    op,
    channelsBefore: channels,
    channelsAfter: afterLayers.get(node)?.channels ?? channels,
    macsBefore: lb.get(node)?.macs ?? 0,
    macsAfter: la.get(node)?.macs ?? 0,
    paramsBefore: lb.get(node)?.params ?? 0,
    paramsAfter: la.get(node)?.params ?? 0,
  }));
}

/** Say why the result is not within 3% of the target, when it is not. */
function explainShortfall(plan: PruningPlan, before: CostReport, after: CostReport, notes: string[]): void {
  const metric = plan.target.metric;
  const achieved =
    metric === 'macs' ? after.totals.macs / before.totals.macs : after.totals.params / before.totals.params;
  if (Math.abs(achieved - plan.target.keep) <= 0.03) return;
  const why =
    achieved > plan.target.keep
      ? `the constraints stop it: pinned groups, --min-channels ${plan.minChannels} and --round-to ${plan.roundTo} leave ${(achieved * 100).toFixed(1)}% at most pruning`
      : `--round-to ${plan.roundTo} steps are coarse for this model's channel counts`;
  notes.push(
    `kept ${(achieved * 100).toFixed(1)}% of ${metric} instead of ${(plan.target.keep * 100).toFixed(1)}%: ${why}`,
  );
}

/** Run original and pruned models on the same seeded inputs: cosine, top-1 agreement, max |diff|. */
async function compareOutputs(
  original: string,
  pruned: string,
  samples: number,
  inputShapes: Record<string, readonly (number | string | null)[]>,
) {
  const { compareModels } = await import('../runtime/compare.js');
  const shapes: Record<string, number[]> = {};
  for (const [name, dims] of Object.entries(inputShapes))
    if (dims.every((d) => typeof d === 'number')) shapes[name] = dims as number[];
  return compareModels(original, pruned, { samples, shapes });
}

/** The common report format (`--report`, `--html`) for a prune run. */
export function pruneReportToReport(r: PruneReport): Report {
  const notes = [...describeFolds(r.folded), ...r.notes];
  if (r.verify)
    notes.push(
      `verify on ${r.verify.samples} seeded random inputs (not data): cosine ${r.verify.cosine.toFixed(4)}, top-1 agreement ${(100 * r.verify.top1Agreement).toFixed(1)}%`,
    );
  return {
    format: REPORT_FORMAT,
    version: REPORT_VERSION,
    kind: 'prune',
    createdAt: new Date().toISOString(),
    model: { file: r.output, macs: r.after.macs, params: r.after.params, bytes: fileBytes(r.output) },
    baseline: { file: r.input, macs: r.before.macs, params: r.before.params },
    layers: r.layers.map((l) => ({ ...l })),
    totals: {
      macsBefore: r.before.macs,
      macsAfter: r.after.macs,
      paramsBefore: r.before.params,
      paramsAfter: r.after.params,
    },
    notes,
    extra: { criterion: r.criterion, target: r.target, groups: r.groups, seconds: r.seconds },
  };
}
