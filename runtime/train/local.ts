/**
 * Label-free local fine-tuning: layer-wise least-squares reconstruction of a compressed
 * model against the dense model it came from (SG-CNN's "local" fine-tuning; regroup's
 * cheap recovery when there are no labels).
 *
 * For each refittable layer L of the compressed model (local-layers.ts), in topological
 * order, with X' = L's input in the *current* compressed model (earlier layers already
 * refitted, so their errors are compensated downstream instead of accumulating) and
 * Y = the output of the dense node of the same name (pre-activation: the Conv/Gemm output
 * itself, before any BatchNormalization, which then applies identically):
 *   W', b' = argmin ‖X'·W'ᵀ + b' − Y[:, keep]‖² + λ‖W' − W₀‖²
 * (W₀ the current weights, or 0 with ridgeTowards 'zero'; the bias is not penalised)
 * per output filter over its own support (masked weights stay exactly zero), with im2col
 * rows at sampled output positions of the calibration images (local-stats.ts) and a ridge
 * solve in float64 (local-solve.ts). Layers that do not feed each other form one wave and
 * share one forward pass of each model per calibration batch; nothing but float64 sums is
 * kept between batches.
 *
 * The inputs are never changed: the result is a refitted copy of the compressed model.
 */
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { RegroupError } from '../../compiler/errors.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node, Value } from '../../compiler/ir/node.js';
import { fixedBatchOf } from '../calibrate.js';
import { batches } from '../data/loader.js';
import { toTensor } from '../data/preprocess.js';
import type { Dataset, InputSpec } from '../data/types.js';
import { createSessionWithOutputs, run, type SessionOptions } from '../session.js';
import { planLayers, writeLayer, type LayerKind, type LayerPlan, type SkippedLayer } from './local-layers.js';
import { inferOutputMap, knownOutputMap, solveLayer, type OutputMapSource } from './local-solve.js';
import { LayerMismatch, LayerStatistics } from './local-stats.js';

export interface LocalOptions extends SessionOptions {
  /** Calibration images (default 512, or the dataset size when smaller), a seeded random subset. */
  samples?: number;
  /** Output positions sampled per image and layer (default 16; all when the output is smaller). */
  positionsPerImage?: number;
  /** Ridge λ relative to the mean diagonal of each support's Gram matrix (default 1e-3; Gemm/MatMul at least features/rows, see layerRidge). */
  ridge?: number;
  /** What the ridge pulls the weights towards: the current weights (default) or zero (plain ridge). */
  ridgeTowards?: 'zero' | 'current';
  /** Seed for the image subset and the sampled positions (default 0). */
  seed?: number;
  /** Images per run (default 32; a model whose input fixes the batch is fed that many). */
  batchSize?: number;
  /**
   * Dense channel index of each compressed output channel, by layer node of the compressed
   * model (runtime/train/local-map.ts keptOutputsOf; see local-solve.ts for the default).
   */
  keptOutputs?: ReadonlyMap<Node, Int32Array>;
  /** Refit only these node names (default: every Conv/Gemm/MatMul that can be matched). */
  layers?: readonly string[];
  /** Skip layers whose filters read more inputs than this (default 4096). */
  maxFeatures?: number;
  onProgress?: (event: LocalProgress) => void;
}

export interface LocalProgress {
  /** 'collect': a batch went through both models for the current wave; 'layer': a layer was refitted or skipped. */
  readonly phase: 'collect' | 'layer';
  /** Layers in the wave being collected, or the layer just finished. */
  readonly layers: readonly string[];
  /** Layers finished so far, of `total`. */
  readonly done: number;
  readonly total: number;
  /** Calibration images through the current wave so far. */
  readonly images: number;
}

export interface LocalLayerResult {
  readonly name: string;
  readonly op: LayerKind | string;
  readonly status: 'refitted' | 'skipped';
  /** Why a layer was skipped. */
  readonly reason?: string;
  readonly outputs?: number;
  readonly denseOutputs?: number;
  /** Dense channel of each compressed output, and where that map came from. */
  readonly keptOutputs?: Int32Array;
  readonly outputMap?: OutputMapSource;
  /** ‖Y − Ŷ‖/‖Y‖ over the sampled rows, before and after the refit. */
  readonly errorBefore?: number;
  readonly errorAfter?: number;
  readonly images?: number;
  readonly rows?: number;
  /** Distinct filter supports (factorisations) solved. */
  readonly supports?: number;
  readonly lambda?: number;
  readonly jitter?: number;
  readonly seconds?: number;
}

export interface LocalResult {
  /** A refitted copy of the compressed model. */
  readonly model: Model;
  /** Every Conv/Gemm/MatMul considered, in topological order. */
  readonly layers: LocalLayerResult[];
  readonly samples: number;
  readonly seconds: number;
}

interface Run {
  readonly dense: Model;
  readonly model: Model;
  readonly dataset: Dataset;
  readonly spec: InputSpec;
  readonly options: LocalOptions;
  readonly batchSize: number;
  /** A model's input fixes the batch: short batches are dropped. */
  readonly fixedBatch: boolean;
  readonly samples: number;
  readonly denseSession: InferenceSession;
  readonly results: Map<Node, LocalLayerResult>;
  readonly total: number;
  readonly progress: { done: number };
}

/** Refit the compressed model's layers to reproduce the dense model's layer outputs (see the header). */
export async function localReconstruct(
  dense: Model,
  compressed: Model,
  dataset: Dataset,
  spec: InputSpec,
  options: LocalOptions = {},
): Promise<LocalResult> {
  const started = performance.now();
  const { model, nodes } = compressed.clone();
  if (options.keptOutputs)
    options = {
      ...options,
      keptOutputs: new Map([...options.keptOutputs].map(([node, keep]) => [nodes.get(node) ?? node, keep])),
    };
  const { plans, skipped } = planLayers(model, dense, { layers: options.layers, maxFeatures: options.maxFeatures });
  const batching = batchingOf(dense, model, dataset, spec, options);
  const denseSession = await createSessionWithOutputs(
    dense,
    plans.map((p) => p.dense.output(0)),
    options,
  );
  const results = new Map<Node, LocalLayerResult>(skipped.map((s) => [s.node, skippedResult(s)]));
  const ctx: Run = {
    dense,
    model,
    dataset,
    spec,
    options,
    ...batching,
    denseSession,
    results,
    total: plans.length,
    progress: { done: 0 },
  };
  try {
    for (const wave of wavesOf(plans)) await refitWave(ctx, wave);
  } finally {
    await denseSession.release();
  }
  const position = new Map(model.graph.nodeList().map((node, i) => [node, i]));
  const layers = [...results].sort(([a], [b]) => position.get(a)! - position.get(b)!).map(([, result]) => result);
  return { model, layers, samples: batching.samples, seconds: (performance.now() - started) / 1000 };
}

/** Images used, batch size and whether it is fixed; refuses inputs the two models cannot share. */
function batchingOf(
  dense: Model,
  model: Model,
  dataset: Dataset,
  spec: InputSpec,
  options: LocalOptions,
): Pick<Run, 'samples' | 'batchSize' | 'fixedBatch'> {
  const samples = Math.min(options.samples ?? 512, dataset.size);
  if (samples <= 0)
    throw new RegroupError(
      'usage',
      `${dataset.name}: no calibration images (dataset size ${dataset.size}, samples ${options.samples})`,
    );
  if (!dense.graph.inputs.some((v) => v.name === spec.name))
    throw new RegroupError(
      'usage',
      `the dense model has no input '${spec.name}' (the input spec's name); both models must take the same input`,
    );
  const [a, b] = [fixedBatchOf(dense), fixedBatchOf(model)];
  if (a !== undefined && b !== undefined && a !== b)
    throw new RegroupError(
      'usage',
      `the dense model's input fixes batch ${a} but the compressed model's fixes ${b}; export both with the same batch size`,
    );
  const batchSize = a ?? b ?? options.batchSize ?? 32;
  const fixedBatch = a !== undefined || b !== undefined;
  if (fixedBatch && samples < batchSize)
    throw new RegroupError(
      'usage',
      `the models take batches of exactly ${batchSize} but only ${samples} calibration images are used; use at least ${batchSize}`,
    );
  return { samples, batchSize, fixedBatch };
}

function skippedResult(s: Pick<SkippedLayer, 'name' | 'op' | 'reason'>): LocalLayerResult {
  return { name: s.name, op: s.op, status: 'skipped', reason: s.reason };
}

function wavesOf(plans: readonly LayerPlan[]): LayerPlan[][] {
  const waves: LayerPlan[][] = [];
  for (const plan of plans) (waves[plan.wave] ??= []).push(plan);
  return waves.filter((w) => w && w.length > 0);
}

interface Collecting {
  readonly plan: LayerPlan;
  readonly known: { keep: Int32Array; source: OutputMapSource } | undefined;
  readonly stats: LayerStatistics;
  failure?: string;
}

/** One pass over the calibration images for the wave's layers, then each layer's refit. */
async function refitWave(ctx: Run, wave: readonly LayerPlan[]): Promise<void> {
  const { options } = ctx;
  const layers: Collecting[] = wave.map((plan) => {
    const known = knownOutputMap(plan, options.keptOutputs?.get(plan.node));
    return {
      plan,
      known,
      stats: new LayerStatistics(plan, known?.keep, options.positionsPerImage ?? 16, options.seed ?? 0),
    };
  });
  const passStarted = performance.now();
  await collect(ctx, layers);
  for (const layer of layers)
    if (layer.stats.rows === 0)
      layer.failure ??= `no calibration rows were collected from ${ctx.dataset.name} (were all images unreadable?)`;
  const passShare = (performance.now() - passStarted) / 1000 / layers.length;
  for (const layer of layers) {
    const started = performance.now();
    const name = layer.plan.node.name;
    const result = layer.failure
      ? skippedResult({ name, op: layer.plan.kind, reason: layer.failure })
      : refitLayer(ctx, layer);
    ctx.results.set(
      layer.plan.node,
      result.status === 'refitted' ? { ...result, seconds: passShare + (performance.now() - started) / 1000 } : result,
    );
    ctx.progress.done++;
    options.onProgress?.({
      phase: 'layer',
      layers: [name],
      done: ctx.progress.done,
      total: ctx.total,
      images: layer.stats.images,
    });
  }
}

async function collect(ctx: Run, layers: Collecting[]): Promise<void> {
  const { model, spec, options } = ctx;
  const values = [...new Set(layers.flatMap((l) => [l.plan.node.input(0), l.plan.node.output(0)]))].filter(
    (v) => !v.isGraphInput(),
  );
  const [names, denseNames] = [values.map((v) => v.name), [...new Set(layers.map((l) => l.plan.dense.output(0).name))]];
  const session = await createSessionWithOutputs(model, values, options);
  let images = 0;
  try {
    for await (const batch of batches(ctx.dataset, {
      batchSize: ctx.batchSize,
      limit: ctx.samples,
      shuffle: true,
      seed: options.seed ?? 0,
      dropLast: ctx.fixedBatch,
    })) {
      const feeds = { [spec.name]: toTensor(batch.images, spec) };
      const [mine, theirs] = await Promise.all([run(session, feeds, names), run(ctx.denseSession, feeds, denseNames)]);
      for (const layer of layers) {
        const node = layer.plan.node;
        addBatch(
          layer,
          tensorOf(mine, feeds, node.input(0)),
          theirs[layer.plan.dense.output(0).name]!,
          mine[node.output(0).name]!,
        );
      }
      images += batch.images.length;
      options.onProgress?.({
        phase: 'collect',
        layers: layers.map((l) => l.plan.node.name),
        done: ctx.progress.done,
        total: ctx.total,
        images,
      });
    }
  } finally {
    await session.release();
  }
}

function tensorOf(outputs: Record<string, OrtTensor>, feeds: Record<string, OrtTensor>, value: Value): OrtTensor {
  const tensor = outputs[value.name] ?? feeds[value.name];
  if (!tensor)
    throw new RegroupError(
      'runtime',
      `value '${value.name}' was not produced by the compressed model's session; is it fed from an input other than '${Object.keys(feeds)[0]}'?`,
    );
  return tensor;
}

function addBatch(layer: Collecting, input: OrtTensor, denseOutput: OrtTensor, output: OrtTensor): void {
  if (layer.failure) return;
  try {
    layer.stats.add(input, denseOutput, output);
  } catch (err) {
    if (!(err instanceof LayerMismatch)) throw err;
    layer.failure = err.message;
  }
}

/**
 * The ridge of one layer: the requested one when given; by default 1e-3, and for Gemm/MatMul
 * layers at least features/rows. Such a layer (a classifier after global pooling) gets one row per image —
 * 512 rows for ResNet-20's 64 features — and its plain least-squares fit overfits the
 * calibration set and grows its weights (measured: 9× the dense weight norm), which made the
 * global fine-tuning that follows diverge (local+global 21% top-1, 66.6% with this floor,
 * ResNet-20 pruned to 50%). Convolutions see many positions per image and keep the
 * requested ridge.
 */
function layerRidge(requested: number | undefined, plan: LayerPlan, rows: number): number {
  if (requested !== undefined) return requested;
  return plan.kind === 'Conv' ? DEFAULT_RIDGE : Math.max(DEFAULT_RIDGE, plan.features / Math.max(rows, 1));
}

const DEFAULT_RIDGE = 1e-3;

/** Resolve the output map, solve, write the refitted weights into the working model. */
function refitLayer(ctx: Run, layer: Collecting): LocalLayerResult {
  const { plan, stats, known } = layer;
  stats.finish();
  const keep = known?.keep ?? inferOutputMap(plan, stats);
  const solution = solveLayer(plan, stats, keep, known !== undefined, {
    ridge: layerRidge(ctx.options.ridge, plan, stats.rows),
    towards: ctx.options.ridgeTowards ?? 'current',
  });
  writeLayer(ctx.model.graph, plan, solution.weights, solution.bias);
  return {
    name: plan.node.name,
    op: plan.kind,
    status: 'refitted',
    outputs: plan.outputs,
    denseOutputs: plan.denseOutputs,
    keptOutputs: keep,
    outputMap: known?.source ?? 'inferred',
    errorBefore: solution.errorBefore,
    errorAfter: solution.errorAfter,
    images: stats.images,
    rows: stats.rows,
    supports: solution.supports,
    lambda: solution.lambda,
    jitter: solution.jitter,
  };
}
