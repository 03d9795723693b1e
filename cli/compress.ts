/**
 * `regroup compress` as a library call: the whole pipeline on one model.
 *
 *   load → prepare → [dense accuracy] → structure (sg-cnn | uniform | l1) → fine-tune
 *   (local, global with distillation, both, or none) → lower grouped connectivity to ONNX
 *   → check the lowered graph against the masked-dense reference → accuracy, MACs,
 *   params and CPU latency before and after → save atomically → report.
 *
 * `sg-cnn` is self-grouping (passes/self-group.ts); `sg-balanced` keeps its learned
 * clustering but forces equal, disjoint groups so every grouped layer lowers to one
 * Conv(group = g) (passes/self-group-balanced.ts); `uniform` (ResNeXt-style equal groups,
 * passes/uniform-group.ts) and `l1` (channel pruning by filter L1 norm) are the baselines it
 * is compared with at the same MACs and the same fine-tuning budget.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Connectivity } from '../compiler/analysis/connectivity.js';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import { RegroupError } from '../compiler/errors.js';
import type { Model } from '../compiler/ir/model.js';
import { decodeModel } from '../compiler/onnx/decode.js';
import { encodeModel } from '../compiler/onnx/encode.js';
import { attr } from '../compiler/ir/attribute.js';
import { loadModel, saveModel } from '../compiler/onnx/io.js';
import { PREPARE, runPasses } from '../passes/index.js';
import { lowerGrouped, type LayerChoice } from '../passes/lower-grouped.js';
import { allocateCps, type AllocationLayer } from '../passes/allocate-cp.js';
import { maskLayer, planSelfGroup, selfGroup, type SelfGroupOptions } from '../passes/self-group.js';
import { balancedSelfGroup } from '../passes/self-group-balanced.js';
import { uniformGroup } from '../passes/uniform-group.js';
import type { LatencyStats } from '../runtime/benchmark.js';
import type { ResolvedInputSpec } from '../runtime/data/preprocess.js';
import type { Dataset } from '../runtime/data/types.js';
import type { AccuracyResult } from '../runtime/evaluate.js';
import type { ExecutionProvider } from '../runtime/providers.js';
import type { TrainProgress } from '../runtime/train/types.js';
import { fileBytes } from './evaluate.js';
import { pruneModel } from './prune.js';
import { REPORT_FORMAT, REPORT_VERSION, type Report } from './report/schema.js';
import { localSummary, resolveSplits } from './train.js';

export type CompressMethod = 'sg-cnn' | 'sg-balanced' | 'uniform' | 'l1' | 'l1-uniform';
export const COMPRESS_METHODS: readonly CompressMethod[] = ['sg-cnn', 'sg-balanced', 'uniform', 'l1', 'l1-uniform'];
export type Allocate = 'sensitivity' | 'uniform';
export const ALLOCATE: readonly Allocate[] = ['sensitivity', 'uniform'];
export type FinetuneScheme = 'local+global' | 'global' | 'local' | 'none';
export const FINETUNE_SCHEMES: readonly FinetuneScheme[] = ['local+global', 'global', 'local', 'none'];

export interface CompressOptions {
  output: string;
  method: CompressMethod;
  keepMacs: number;
  /** Clusters per layer for sg-cnn (default 64). */
  groups?: number;
  /**
   * sg-cnn centroid percentiles instead of a MACs target: one value, or a rising schedule
   * (SG-CNN's 10, 20, …, 90) with fine-tuning after every step.
   */
  cp?: readonly number[];
  /**
   * sg-cnn: reach --keep-macs in this many steps (targets falling evenly), fine-tuning after
   * each on its share of the samples (default 1: one shot).
   */
  steps?: number;
  includeFc?: boolean;
  /**
   * sg-cnn with --keep-macs: 'sensitivity' (default with data) gives each layer its own cp
   * from a measured sensitivity scan; 'uniform' (default without data) one cp for all layers.
   */
  allocate?: Allocate;
  /** Training/calibration data; without it only weight-based grouping and no fine-tuning. */
  data?: string;
  testData?: string;
  preset?: string;
  /** Default local+global with data, none without. */
  finetune?: FinetuneScheme;
  /** Global fine-tuning epochs (default 1). */
  epochs?: number;
  lr?: number;
  batch?: number;
  /** Fine-tune on a seeded subset of this many training samples. */
  limit?: number;
  evalLimit?: number;
  /** Distil from the dense model during global fine-tuning (default true). */
  kd?: boolean;
  kdTemperature?: number;
  kdAlpha?: number;
  /** Measure candidate lowerings per layer and keep the fastest. */
  tune?: boolean;
  ep?: ExecutionProvider;
  threads?: number;
  seed?: number;
  force?: boolean;
  /** Measure CPU latency before and after (default true). */
  latency?: boolean;
  onProgress?: (event: TrainProgress) => void;
  log?: (line: string) => void;
}

export interface Side {
  macs: number;
  params: number;
  accuracy?: AccuracyResult;
  latency: LatencyStats[];
}

export interface CompressOutcome {
  report: Report;
  dense: Side;
  compressed: Side;
  /** Largest |lowered − masked reference| over seeded inputs, relative to the reference's output scale. */
  loweringError: number | undefined;
  /** MACs of the structure (connectivity or pruned shapes) over the dense MACs, before lowering chooses forms. */
  structuredMacsRatio: number;
  choices: LayerChoice[];
  notes: string[];
  seconds: number;
  /** Peak resident memory of this process so far (MB), read when the output is written. */
  peakRssMb: number;
}

interface Data {
  train: Dataset;
  test: Dataset | undefined;
  spec: ResolvedInputSpec;
  note: string;
}

/** Compress a model file and write the result; see CompressOptions. */
export async function compressModel(file: string, options: CompressOptions): Promise<CompressOutcome> {
  const started = performance.now();
  const log = options.log ?? (() => {});
  const scheme = options.finetune ?? (options.data ? 'local+global' : 'none');
  if (scheme !== 'none' && !options.data) throw new RegroupError('usage', `--finetune ${scheme} needs --data (training images); pass --data or --finetune none`);
  checkSchedule(options);
  allocationOf(options); // checks --allocate before any work
  const { relaxBatch } = await import('../runtime/train/checkpoint.js');
  const { fixedBatchOf } = await import('../runtime/calibrate.js');
  const loaded = loadModel(file);
  // A model exported with a fixed batch (PyTorch's batch 1) gets a symbolic one while it is
  // compressed — before constant folding, so reshapes keep following the batch and training
  // can use real batches; the written model gets its fixed batch back.
  const fixedBatch = fixedBatchOf(loaded);
  const dense = fixedBatch ? relaxBatch(loaded, fixedBatch) : loaded;
  runPasses(dense, PREPARE, {}, { fixpoint: true });
  const data = options.data ? await openData(dense, options) : undefined;
  try {
    const notes: string[] = data ? [`data: ${data.note}`, `preprocessing: ${data.spec.presetReason}`] : ['no --data: weight-only importance, no fine-tuning, no accuracy'];
    const denseSide = await measureSide(dense, data, options, 'dense');
    log(`dense: ${describeSide(denseSide)}`);
    let start = dense;
    const schedule = stepsOf(options, data);
    for (const [k, step] of schedule.slice(0, -1).entries()) {
      const grouped = await structure(file, start, data, step, notes);
      log(`step ${k + 1}/${schedule.length}: ${(100 * grouped.macsRatio).toFixed(1)}% of the MACs; fine-tuning before the next step`);
      start = await fineTune(grouped.model, dense, data, step, notes);
    }
    const last = schedule.at(-1)!;
    const structured = await structure(file, start, data, last, notes);
    log(`structured (${options.method}): ${(100 * structured.macsRatio).toFixed(1)}% of the MACs`);
    const tuned = await fineTune(structured.model, dense, data, last, notes);
    const lowered = structured.connectivity.size > 0 ? await lower(tuned, structured.connectivity, options) : { model: tuned, choices: [] };
    const loweringError = structured.connectivity.size > 0 ? await loweringDifference(tuned, lowered) : undefined;
    if (loweringError !== undefined && !(loweringError <= 1e-4)) {
      throw new RegroupError('invalid-ir', `the lowered model differs from its masked-dense reference by ${loweringError.toExponential(2)} of the output scale (limit 1e-4); this is a regroup bug — rerun with --method ${options.method} and report it`);
    }
    const maskedDense = lowered.choices.filter((c) => c.form === 'masked-dense').length;
    if (maskedDense > 0) {
      notes.push(`${maskedDense} of ${lowered.choices.length} grouped layers stay masked dense convs: no grouped form ran faster on ${options.ep ?? 'cpu'} (${options.tune ? 'measured' : 'by the cost model; --tune measures'}), so they save parameters, not latency${options.method === 'sg-cnn' ? '; --method sg-balanced keeps the learned groups equal and disjoint so that they lower to Conv(group)' : ''}`);
    }
    runPasses(lowered.model, PREPARE, {}, { fixpoint: true });
    const compressedSide = await measureSide(lowered.model, data, options, 'compressed');
    if (options.latency !== false) [denseSide.latency, compressedSide.latency] = await measureLatency(dense, lowered.model, options);
    log(`compressed: ${describeSide(compressedSide)}`);
    if (fixedBatch) restoreBatch(lowered.model, fixedBatch);
    saveModel(lowered.model, options.output, { protect: options.force ? [] : [file] });
    const seconds = (performance.now() - started) / 1000;
    const peakRssMb = process.resourceUsage().maxRSS / 1024;
    const layerParams = new Map(computeCost(dense, inferShapes(dense)).layers.map((l) => [l.node.name, l.params]));
    const report = compressReport(file, options, denseSide, compressedSide, lowered.choices, layerParams, notes, loweringError);
    report.extra = { ...report.extra, structuredMacsRatio: structured.macsRatio, seconds, peakRssMb };
    return { report, dense: denseSide, compressed: compressedSide, loweringError, structuredMacsRatio: structured.macsRatio, choices: lowered.choices, notes, seconds, peakRssMb };
  } finally {
    await Promise.all([data?.train.close?.(), data?.test?.close?.()]);
  }
}

/** A cp schedule or --steps is for sg-cnn; cps lie within [0, 100] and rise. */
function checkSchedule(options: CompressOptions): void {
  const steps = options.steps ?? 1;
  if (!(Number.isInteger(steps) && steps >= 1)) throw new RegroupError('usage', `--steps ${steps}: give a whole number of steps, 1 or more`);
  if (steps > 1 && (options.method !== 'sg-cnn' || options.cp)) throw new RegroupError('usage', `--steps applies to --method sg-cnn with --keep-macs${options.cp ? ' (a --cp list sets its own steps)' : `, not to ${options.method}`}`);
  const cp = options.cp;
  if (!cp) return;
  if (options.method !== 'sg-cnn') throw new RegroupError('usage', `--cp applies to --method sg-cnn, not ${options.method}; use --keep-macs alone`);
  if (cp.length === 0 || cp.some((v) => !(v >= 0 && v <= 100))) throw new RegroupError('usage', `--cp ${cp.join(',')}: give percentiles between 0 and 100, e.g. --cp 50 or --cp 10,30,50`);
  if (cp.some((v, i) => i > 0 && v <= cp[i - 1]!)) throw new RegroupError('usage', `--cp ${cp.join(',')}: a schedule must rise step by step (e.g. 10,30,50)`);
}

/**
 * The structure → fine-tune steps: one per --cp value, or --steps MACs targets falling evenly
 * to --keep-macs (SG-CNN raises its cp step by step). With --steps the fine-tuning budget is
 * split, not multiplied: each step trains on its own seeded share of the samples, so the
 * whole run sees epochs × limit samples like a one-shot run.
 */
function stepsOf(options: CompressOptions, data: Data | undefined): CompressOptions[] {
  if (options.cp) return options.cp.map((cp) => ({ ...options, cp: [cp] }));
  const steps = options.steps ?? 1;
  if (steps === 1) return [options];
  const share = Math.ceil((options.limit ?? data?.train.size ?? 0) / steps);
  return Array.from({ length: steps }, (_, k) => ({
    ...options,
    keepMacs: 1 - ((1 - options.keepMacs) * (k + 1)) / steps,
    ...(data ? { limit: share, seed: (options.seed ?? 0) + k } : {}),
  }));
}

/** Give the graph inputs and outputs their fixed batch back (see compressModel). */
function restoreBatch(model: Model, batch: number): void {
  const graph = model.graph;
  for (const v of [...graph.inputs.filter((x) => !x.isInitializer()), ...graph.outputs]) {
    const shape = v.type?.shape;
    if (shape && typeof shape[0] === 'string') v.type = { ...v.type!, shape: [batch, ...shape.slice(1)] };
  }
}

async function openData(model: Model, options: CompressOptions): Promise<Data> {
  const [{ openDataset }, { inputSpecFor }] = await Promise.all([import('../runtime/data/datasets.js'), import('../runtime/data/preprocess.js')]);
  const spec = inputSpecFor(model, { preset: options.preset });
  const splits = resolveSplits(options.data!, options.testData);
  const train = await openDataset(splits.train);
  const test = splits.test ? await openDataset(splits.test) : undefined;
  return { train, test, spec, note: splits.note };
}

// ---------------------------------------------------------------------------------------------
// Structure

interface Structured {
  model: Model;
  connectivity: Map<string, Connectivity>;
  macsRatio: number;
}

async function structure(file: string, dense: Model, data: Data | undefined, options: CompressOptions, notes: string[]): Promise<Structured> {
  if (options.method === 'l1' || options.method === 'l1-uniform') return pruneL1(file, options, notes);
  if (options.method === 'uniform') {
    const r = uniformGroup(dense, { keepMacs: options.keepMacs });
    notes.push(`uniform groups: ${r.stats.layers.filter((l) => l.groups > 1).map((l) => `${l.node}×${l.groups}`).join(', ') || 'none'}${r.stats.targetMet ? '' : ' (target not reachable with equal groups)'}`);
    return { model: r.model, connectivity: r.connectivity, macsRatio: r.stats.macsRatio };
  }
  const channelMeanAbs = data ? await inputActivity(dense, data, options) : undefined;
  if (options.method === 'sg-balanced') {
    const b = balancedSelfGroup(dense, { keepMacs: options.keepMacs, seed: options.seed }, { channelMeanAbs });
    notes.push(`balanced self-grouping: ${b.stats.layers.filter((l) => l.groups > 1).map((l) => `${l.node}×${l.groups}`).join(', ') || 'none'} (${channelMeanAbs ? 'data' : 'weight'} importance)${b.stats.targetMet ? '' : ' (target not reachable with equal groups)'}`);
    return { model: b.model, connectivity: b.connectivity, macsRatio: b.stats.macsRatio };
  }
  const cp = options.cp?.at(-1);
  const grouping: SelfGroupOptions = { groups: options.groups, includeFc: options.includeFc, seed: options.seed };
  const ctx = { channelMeanAbs, log: options.log };
  const perLayer = cp === undefined && data && allocationOf(options) === 'sensitivity' ? await sensitivityCps(dense, data, options, grouping, ctx, notes) : undefined;
  const r = selfGroup(dense, perLayer ? { ...grouping, cp: { layers: perLayer } } : { ...grouping, keepMacs: cp === undefined ? options.keepMacs : undefined, cp }, ctx);
  const cps = r.stats.layers.map((l) => l.cp);
  const cpText = r.stats.perLayer ? `cp per layer ${Math.min(...cps).toFixed(0)}–${Math.max(...cps).toFixed(0)} (MACs-weighted mean ${r.stats.cp.toFixed(1)})` : `cp ${r.stats.cp.toFixed(1)}`;
  notes.push(`self-grouping: ${cpText}, ${r.stats.layers.length} layers grouped (${r.stats.layers[0]?.importance ?? 'weight'} importance)${r.stats.targetMet ? '' : '; the MACs target is out of reach: every groupable layer is at its floor'}`);
  for (const s of r.stats.skipped) notes.push(`dense: ${s.node} (${s.reason})`);
  return { model: r.model, connectivity: r.connectivity, macsRatio: r.stats.macsRatio };
}

/** sg-cnn's cp allocation: per layer from measured sensitivity when data is given, else one cp. */
function allocationOf(options: CompressOptions): Allocate {
  if (options.allocate && (options.method !== 'sg-cnn' || options.cp)) throw new RegroupError('usage', `--allocate applies to --method sg-cnn with --keep-macs${options.cp ? ', not to an explicit --cp' : `, not to ${options.method}`}`);
  const allocate = options.allocate ?? (options.data ? 'sensitivity' : 'uniform');
  if (allocate === 'sensitivity' && !options.data) throw new RegroupError('usage', '--allocate sensitivity measures each layer on training images; pass --data or use --allocate uniform');
  return allocate;
}

/** The cps a sensitivity scan is measured at, per layer. */
const SCAN_CPS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95];
/**
 * MACs one scan evaluation may spend: 256 images for small models, fewer (down to 32) for big
 * ones, so that an ImageNet ResNet's scan takes minutes rather than hours.
 */
const SCAN_MACS = 2e10;

/**
 * A cp per layer for the MACs target: group each layer alone at every SCAN_CPS level, measure
 * how far the output moves from the dense model's on up to 256 training images (KL
 * divergence), and spend the MACs budget where it hurts least (passes/allocate-cp.ts).
 */
async function sensitivityCps(dense: Model, data: Data, options: CompressOptions, grouping: SelfGroupOptions, ctx: Parameters<typeof planSelfGroup>[2], notes: string[]): Promise<Record<string, number>> {
  const { OutputProbe } = await import('../runtime/sensitivity.js');
  const scanned = decodeModel(encodeModel(dense).bytes);
  const plan = planSelfGroup(scanned, grouping, ctx);
  const samples = Math.max(32, Math.min(256, Math.floor(SCAN_MACS / plan.macsBefore)));
  const probe = await OutputProbe.open(dense, data.train, data.spec, { samples, seed: options.seed, ep: options.ep, threads: options.threads });
  const nodes = new Map(scanned.graph.nodeList().map((n) => [n.name, n]));
  const layers: AllocationLayer[] = [];
  for (const [i, layer] of plan.layers.entries()) {
    const node = nodes.get(layer.node)!;
    const weight = node.input(1);
    const [original, group] = [weight.constValue!, node.getInt('group', 1)];
    const levels = [];
    for (const cp of SCAN_CPS) {
      maskLayer(node, layer.connectivityAt(cp));
      levels.push({ cp, macs: layer.macsAt(cp), cost: await probe.divergence(scanned) });
    }
    weight.graph.setInitializer(weight, original);
    if (group !== 1) node.setAttr(attr.int('group', group));
    layers.push({ node: layer.node, levels, macsAt: layer.macsAt });
    options.log?.(`sensitivity ${i + 1}/${plan.layers.length}: ${layer.node} (KL at cp 50: ${levels[SCAN_CPS.indexOf(50)]!.cost.toExponential(2)})`);
  }
  const fixed = plan.macsBefore - plan.layers.reduce((sum, l) => sum + l.denseMacs, 0);
  const allocation = allocateCps(layers, fixed, options.keepMacs * plan.macsBefore);
  options.log?.(`cp per layer: ${[...allocation.cps].map(([node, cp]) => `${node} ${cp.toFixed(0)}`).join(', ')}`);
  notes.push(`cp allocation: by sensitivity (each layer grouped alone at cp ${SCAN_CPS.join(', ')}; KL divergence from the dense output on ${samples} training images)${allocation.targetMet ? '' : '; the MACs target is out of reach even at cp 95 everywhere'}`);
  return Object.fromEntries(allocation.cps);
}

/** Mean |x| per input channel of every Conv, from 256 training images (SG-CNN's data-aware importance). */
async function inputActivity(model: Model, data: Data, options: CompressOptions): Promise<Map<string, Float64Array>> {
  const { calibrate } = await import('../runtime/calibrate.js');
  const values = [...new Set(model.graph.nodeList().filter((n) => n.opType === 'Conv').map((n) => n.input(0)))].filter((v) => !v.isGraphInput());
  const stats = await calibrate(model, data.train, data.spec, values, { samples: 256, seed: options.seed, ep: options.ep, threads: options.threads });
  return new Map([...stats].map(([value, s]) => [value.name, s.meanAbs]));
}

async function pruneL1(file: string, options: CompressOptions, notes: string[]): Promise<Structured> {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-compress-'));
  try {
    const out = path.join(scratch, 'pruned.onnx');
    const uniform = options.method === 'l1-uniform';
    const r = await pruneModel(file, out, { keepMacs: options.keepMacs, criterion: 'l1', uniform });
    notes.push(`l1 channel pruning${uniform ? ' (every group by the same fraction)' : ' (one global threshold)'}: ${r.groups.pruned} of ${r.groups.prunable} prunable groups narrowed`);
    return { model: loadModel(out), connectivity: new Map(), macsRatio: r.macsRatio };
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Fine-tuning

async function fineTune(model: Model, dense: Model, data: Data | undefined, options: CompressOptions, notes: string[]): Promise<Model> {
  const scheme = options.finetune ?? (data ? 'local+global' : 'none');
  if (scheme === 'none' || !data) return model;
  const [{ finetune }, { defaultAugmentation }] = await Promise.all([import('../runtime/train/finetune.js'), import('../runtime/train/augment.js')]);
  const kd = options.kd !== false;
  const result = await finetune(model, {
    train: data.train,
    test: undefined,
    spec: data.spec,
    epochs: options.epochs ?? 1,
    batchSize: options.batch,
    schedule: { kind: 'cosine', baseLr: options.lr ?? 0.01 },
    loss: kd ? { kind: 'distill', temperature: options.kdTemperature ?? 4, alpha: options.kdAlpha ?? 0.9 } : { kind: 'cross-entropy' },
    teacher: kd ? dense : undefined,
    augment: defaultAugmentation(options.data!, data.spec).augment,
    seed: options.seed ?? 0,
    limit: options.limit,
    ep: options.ep,
    threads: options.threads,
    local: scheme === 'local' ? 'only' : scheme === 'local+global' ? 'then-global' : undefined,
    dense: scheme === 'global' ? undefined : dense,
    onProgress: options.onProgress,
  });
  notes.push(`fine-tuning: ${scheme}${scheme !== 'local' ? `, ${options.epochs ?? 1} epoch(s)${options.limit ? ` on ${options.limit} samples` : ''}, ${kd ? `distillation from the dense model (T ${options.kdTemperature ?? 4}, α ${options.kdAlpha ?? 0.9})` : 'cross-entropy'}` : ''}; ${result.masks.zeros} masked weights held at zero`, ...result.notes);
  if (result.local) notes.push(localSummary(result.local));
  return result.model;
}

// ---------------------------------------------------------------------------------------------
// Lowering and its check

async function lower(model: Model, connectivity: Map<string, Connectivity>, options: CompressOptions) {
  const [{ cpuSimdBlock }, { benchmark }] = await Promise.all([import('../runtime/providers.js'), import('../runtime/benchmark.js')]);
  const tune = options.tune
    ? async (candidates: Model[]) => {
        const times: number[] = [];
        for (const candidate of candidates) times.push((await benchmark(candidate, candidate, { ep: options.ep, threads: options.threads, batch: 1, runs: 15, warmup: 3 })).medianMs);
        return times;
      }
    : undefined;
  return lowerGrouped(model, connectivity, { simdBlock: cpuSimdBlock(), tune });
}

/**
 * max |lowered − reference| / max |reference| over 4 seeded batches, graph optimisations off;
 * 0 without running when every layer stayed masked dense and the two serialise to the same bytes.
 */
async function loweringDifference(reference: Model, { model: lowered, choices }: { model: Model; choices: readonly LayerChoice[] }): Promise<number> {
  if (allMaskedDense(choices) && Buffer.from(encodeModel(reference).bytes).equals(encodeModel(lowered).bytes)) return 0;
  const [{ createSession, run }, { randomFeeds }, { floats }] = await Promise.all([import('../runtime/session.js'), import('../runtime/inputs.js'), import('../runtime/compare.js')]);
  const [a, b] = await Promise.all([createSession(reference, { optimization: 'disabled' }), createSession(lowered, { optimization: 'disabled' })]);
  try {
    let diff = 0, scale = 0;
    for (let seed = 0; seed < 4; seed++) {
      const feeds = randomFeeds(reference, { seed, batch: 2 });
      const [x, y] = [floats((await run(a, feeds))[a.outputNames[0]!]!), floats((await run(b, feeds))[b.outputNames[0]!]!)];
      for (let i = 0; i < x.length; i++) {
        diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
        scale = Math.max(scale, Math.abs(x[i]!));
      }
    }
    return diff / (scale || 1);
  } finally {
    await Promise.all([a.release(), b.release()]);
  }
}

// ---------------------------------------------------------------------------------------------
// Measurements and report

async function measureSide(model: Model, data: Data | undefined, options: CompressOptions, label: string): Promise<Side> {
  const cost = computeCost(model, inferShapes(model)).totals;
  const side: Side = { macs: cost.macs, params: cost.params, latency: [] };
  if (data?.test) {
    const [{ evaluate }, { fixedBatchOf }] = await Promise.all([import('../runtime/evaluate.js'), import('../runtime/calibrate.js')]);
    side.accuracy = await evaluate(decodeModel(encodeModel(model).bytes), fixedBatchOf(model), data.test, data.spec, { limit: options.evalLimit, batchSize: 100, ep: options.ep, threads: options.threads });
  }
  options.log?.(`${label} measured`);
  return side;
}

/** True when no grouped layer took a grouped form (the lowered graph is then the masked reference). */
export function allMaskedDense(choices: readonly LayerChoice[]): boolean {
  return choices.every((c) => c.form === 'masked-dense');
}

const LATENCY_ROUNDS = 5;

/**
 * Latency of dense and compressed at batch 1 and 8, side by side: rounds alternate the two
 * models so load on a shared machine hits both alike; each figure is the median over the
 * rounds' medians (p90 likewise).
 */
async function measureLatency(dense: Model, compressed: Model, options: CompressOptions): Promise<[LatencyStats[], LatencyStats[]]> {
  const { benchmark, quantile } = await import('../runtime/benchmark.js');
  const sides = [dense, compressed].map((m) => ({ model: m, bytes: encodeModel(m).bytes }));
  const result: [LatencyStats[], LatencyStats[]] = [[], []];
  for (const batch of [1, 8]) {
    const rounds: LatencyStats[][] = [[], []];
    for (let round = 0; round < LATENCY_ROUNDS; round++) {
      for (const [i, side] of sides.entries()) rounds[i]!.push(await benchmark(side.bytes, side.model, { ep: options.ep, threads: options.threads, batch, runs: 10, warmup: 2 }));
    }
    rounds.forEach((stats, i) => {
      const median = quantile(stats.map((s) => s.medianMs), 0.5);
      result[i]!.push({ ...stats[0]!, runs: stats.reduce((a, s) => a + s.runs, 0), medianMs: median, p90Ms: quantile(stats.map((s) => s.p90Ms), 0.5), meanMs: stats.reduce((a, s) => a + s.meanMs, 0) / stats.length, minMs: Math.min(...stats.map((s) => s.minMs)), throughput: (1000 * batch) / median });
    });
  }
  return result;
}

function describeSide(s: Side): string {
  const acc = s.accuracy ? `top-1 ${(100 * s.accuracy.top1).toFixed(2)}%, ` : '';
  return `${acc}${(s.macs / 1e6).toFixed(2)}M MACs, ${(s.params / 1e3).toFixed(1)}k params`;
}

function compressReport(file: string, options: CompressOptions, dense: Side, compressed: Side, choices: LayerChoice[], layerParams: Map<string, number>, notes: string[], loweringError: number | undefined): Report {
  const report: Report = {
    format: REPORT_FORMAT,
    version: REPORT_VERSION,
    kind: 'compress',
    createdAt: new Date().toISOString(),
    model: { file: options.output, macs: compressed.macs, params: compressed.params, bytes: fs.existsSync(options.output) ? fileBytes(options.output) : 0 },
    baseline: { file, macs: dense.macs, params: dense.params },
    totals: { macsBefore: dense.macs, macsAfter: compressed.macs, paramsBefore: dense.params, paramsAfter: compressed.params },
    latency: compressed.latency.map((l) => ({ ep: l.ep, batch: l.batch, medianMs: l.medianMs, p90Ms: l.p90Ms })),
    // A conv's weights scale with its MACs at a fixed output size (padding included).
    layers: choices.map((c) => {
      const paramsBefore = layerParams.get(c.node) ?? 0;
      return { name: c.node, op: `Conv → ${c.form}`, macsBefore: c.denseMacs, macsAfter: c.macs, paramsBefore, paramsAfter: Math.round((paramsBefore * c.macs) / Math.max(c.denseMacs, 1)) };
    }),
    notes,
    extra: {
      method: options.method,
      keepMacs: options.keepMacs,
      denseLatency: dense.latency.map((l) => ({ ep: l.ep, batch: l.batch, medianMs: l.medianMs, p90Ms: l.p90Ms })),
      ...(dense.accuracy ? { denseAccuracy: { top1: dense.accuracy.top1, top5: dense.accuracy.top5, samples: dense.accuracy.samples } } : {}),
      ...(loweringError === undefined ? {} : { loweringError }),
      lowering: choices.map((c) => ({ node: c.node, form: c.form, reason: c.reason, groups: c.groups ?? null })),
    },
  };
  if (compressed.accuracy) report.accuracy = { top1: compressed.accuracy.top1, top5: compressed.accuracy.top5, samples: compressed.accuracy.samples, dataset: 'test split' };
  return report;
}
