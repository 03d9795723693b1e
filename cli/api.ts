/**
 * The library API behind the `regroup` commands: each command is a thin wrapper that parses
 * flags, calls one of these, and prints the result.
 */
import fs from 'node:fs';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import { computeCost } from '../compiler/analysis/cost.js';
import { RegroupError } from '../compiler/errors.js';
import { nodeLabels } from '../compiler/ir/label.js';
import type { Dim } from '../compiler/ir/node.js';
import { loadModel, saveModel, type SaveResult } from '../compiler/onnx/io.js';
import type { Model } from '../compiler/ir/model.js';
import type { FoldSummary } from '../passes/fold-log.js';
import type { ConstantEvaluator } from '../passes/prepare.js';
// The runtime (onnxruntime's native library, ~200 MB resident) is loaded only by commands that run models.
import type { BenchOptions, LatencyStats } from '../runtime/benchmark.js';

export interface InspectOptions {
  /** Value for a symbolic batch dimension in MACs and bytes (default 1). */
  batch?: number;
  /** `--input-shape` specs: `name=1x3x224x224`, or `1x3x224x224` for a single-input model. */
  inputShapes?: readonly string[];
  /** List every node, not only those with MACs or parameters. */
  all?: boolean;
}

export interface LayerRow {
  name: string;
  op: string;
  outputShape: Dim[] | null;
  macs: number;
  params: number;
  bytes: number;
  /** Share of total MACs, 0..1. */
  share: number;
}

export interface GroupRow {
  id: number;
  channels: number;
  prunableChannels: number;
  prunable: boolean;
  reasons: string[];
  producers: string[];
  members: { node: string; op: string; role: string; offset: number; count: number }[];
}

/** onnxruntime as the constant evaluator, loaded only when a model has constants the kernels cannot fold. */
export const runtimeEvaluator: ConstantEvaluator = async (model) =>
  (await import('../runtime/constant-evaluator.js')).evaluateConstants(model);

/** The PREPARE passes to a fixpoint, onnxruntime folding what the kernels cannot; what was folded. */
export async function prepareForAnalysis(model: Model): Promise<FoldSummary> {
  const { prepareModel } = await import('../passes/prepare.js');
  return prepareModel(model, { evaluate: runtimeEvaluator });
}

/** Channel groups of a model file, as `prune` sees them (after constant folding). */
export async function inspectGroups(
  file: string,
  options: { inputShapes?: readonly string[] } = {},
): Promise<{ file: string; groups: GroupRow[]; folded: FoldSummary; unsupported?: string }> {
  const model = loadModel(file);
  const inputShapes = parseInputShapes(options.inputShapes ?? [], inputNames(model));
  const { analyzeChannels } = await import('../compiler/analysis/channel-groups.js');
  const folded = await prepareForAnalysis(model);
  const analysis = analyzeChannels(model, inferShapes(model, { inputShapes }));
  const labels = nodeLabels(model.graph);
  const groups = analysis.groups.map((g) => ({
    id: g.id,
    channels: g.channels,
    prunableChannels: g.prunableChannels,
    prunable: g.prunable,
    reasons: g.reasons,
    producers: g.producers,
    members: g.members.map((m) => ({
      node: labels.get(m.node) ?? m.node.name,
      op: m.node.opType,
      role: m.role,
      offset: m.offset,
      count: m.count,
    })),
  }));
  return { file, groups, folded, ...(analysis.unsupported ? { unsupported: analysis.unsupported } : {}) };
}

export interface InspectReport {
  file: string;
  irVersion: number;
  opsets: Record<string, number>;
  producer: string;
  /** Nodes in the file, before constant folding. */
  nodes: number;
  /** Constant subgraphs folded into initializers before counting. */
  folded: FoldSummary;
  totals: { macs: number; params: number; bytes: number };
  layers: LayerRow[];
  /** Ops or values the analysis could not follow (analysis went on past them). */
  issues: { node: string; op: string; message: string }[];
}

/** Per-layer MACs, parameters and bytes of a model file, after folding its constant subgraphs. */
export async function inspectModel(file: string, options: InspectOptions = {}): Promise<InspectReport> {
  const model = loadModel(file);
  const nodes = model.graph.nodeCount;
  const folded = await prepareForAnalysis(model);
  const inputShapes = parseInputShapes(options.inputShapes ?? [], inputNames(model));
  const shapes = inferShapes(model, { inputShapes });
  const cost = computeCost(model, shapes, { batch: options.batch ?? 1 });
  const total = cost.totals.macs;
  const layers = cost.layers
    .filter((l) => options.all || l.macs > 0 || l.params > 0)
    .map((l) => ({
      name: l.name,
      op: l.opType,
      outputShape: l.outputShape ? [...l.outputShape] : null,
      macs: l.macs,
      params: l.params,
      bytes: l.bytes,
      share: total > 0 ? l.macs / total : 0,
    }));
  return {
    file,
    irVersion: model.irVersion,
    opsets: Object.fromEntries(model.opsetImports.map((o) => [o.domain || 'ai.onnx', o.version])),
    producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
    nodes,
    folded,
    totals: { ...cost.totals },
    layers,
    issues: shapes.issues.map((i) => ({ node: i.node.name, op: i.node.opType, message: i.message })),
  };
}

export interface ConvertOptions {
  externalData?: boolean;
  /** Minimum tensor size in bytes to move to the side file (default 1024). */
  threshold?: number;
  force?: boolean;
}

/** Re-emit a model through the IR with no rewrite. */
export function convertModel(
  input: string,
  output: string,
  options: ConvertOptions = {},
): SaveResult & { nodes: number; initializers: number } {
  const model = loadModel(input);
  const result = saveModel(model, output, {
    externalData: options.externalData ? { threshold: options.threshold } : false,
    protect: [input],
    force: options.force,
  });
  return { ...result, nodes: model.graph.nodeCount, initializers: model.graph.initializers.size };
}

/** Latency of a model file on one execution provider. */
export async function benchModel(
  file: string,
  options: BenchOptions & { inputShapes?: readonly string[] } = {},
): Promise<LatencyStats> {
  if (!fs.existsSync(file)) throw new RegroupError('io', `${file} does not exist`);
  const model = loadModel(file);
  const parsed = parseInputShapes(options.inputShapes ?? [], inputNames(model));
  const shapes: Record<string, number[]> = {};
  for (const [name, dims] of Object.entries(parsed)) {
    if (dims.some((d) => typeof d !== 'number'))
      throw new RegroupError('usage', `--input-shape for '${name}' must be all numbers to run the model`);
    shapes[name] = dims as number[];
  }
  const { benchmark } = await import('../runtime/benchmark.js');
  return benchmark(file, model, { ...options, shapes: { ...options.shapes, ...shapes } });
}

/** Parse `--input-shape` values: `name=1x3x224x224` or, for a single-input model, `1x3x224x224`. */
export function parseInputShapes(specs: readonly string[], inputNames: readonly string[]): Record<string, Dim[]> {
  const shapes: Record<string, Dim[]> = {};
  for (const spec of specs) {
    const eq = spec.lastIndexOf('=');
    const name = eq >= 0 ? spec.slice(0, eq) : inputNames.length === 1 ? inputNames[0]! : undefined;
    if (name === undefined)
      throw new RegroupError(
        'usage',
        `--input-shape '${spec}' needs a name (name=1x3x224x224): the model has inputs ${inputNames.join(', ')}`,
      );
    if (!inputNames.includes(name))
      throw new RegroupError(
        'usage',
        `--input-shape names '${name}', but the model's inputs are ${inputNames.join(', ')}`,
      );
    const dims = spec
      .slice(eq + 1)
      .split(/[x,]/)
      .map((d) => (/^\d+$/.test(d) ? Number(d) : d));
    if (dims.some((d) => d === '' || (typeof d === 'number' && d <= 0)))
      throw new RegroupError(
        'usage',
        `--input-shape '${spec}': dimensions must be positive integers or names, like 1x3x224x224`,
      );
    shapes[name] = dims;
  }
  return shapes;
}

/** Names of the inputs a caller feeds (graph inputs without an initializer). */
function inputNames(model: Model): string[] {
  return model.graph.inputs.filter((v) => !v.isInitializer()).map((v) => v.name);
}
