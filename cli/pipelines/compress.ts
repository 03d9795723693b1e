/**
 * `compress` as a library call: the whole pipeline on one model, for any registered method.
 *
 *   load → prepare → [dense accuracy] → for each step of the method's schedule:
 *   structure (the method) → fine-tune (local, global with distillation, both, or none; with
 *   the method's training hooks) → lower grouped connectivity to ONNX → check the lowered
 *   graph against the masked-dense reference → accuracy, MACs, params and latency before and
 *   after → save atomically → report.
 *
 * Methods come from the registry (passes/methods/); nothing here knows one method from
 * another. What a method needs measured on data reaches it through `Measurements`, which this
 * module implements with the runtime (calibration, output divergence, saliency).
 */
import type { ProfileSummary } from '../../runtime/profile.js';
import { analyzeChannels } from '../../compiler/analysis/channel-groups.js';
import type { Connectivity } from '../../compiler/analysis/connectivity.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { nodeLabels } from '../../compiler/ir/label.js';
import { RegroupError } from '../../compiler/errors.js';
import { matchNodesByOutput } from '../../compiler/ir/match.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node } from '../../compiler/ir/node.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { usesExternalData } from '../../compiler/onnx/external-data.js';
import { loadModel, saveModel } from '../../compiler/onnx/io.js';
import { describeFolds } from '../../passes/fold-log.js';
import { PREPARE, runPasses } from '../../passes/index.js';
import type { LayerChoice } from '../../passes/lower-grouped.js';
import {
  DEFAULT_METHOD,
  defaultMethodOptions,
  methodNamed,
  type AnyMethod,
  type CommonOptions,
  type LayerLatency,
  type Measurements,
  type Structured,
} from '../../passes/methods/index.js';
import type { ResolvedInputSpec } from '../../runtime/data/preprocess.js';
import {
  describePreprocessing,
  preprocessingJson,
  recordPreprocessing,
  type PreprocessOptions,
} from '../../runtime/data/preprocess-spec.js';
import type { Dataset } from '../../runtime/data/types.js';
import { cpuSimdBlock, type ExecutionProvider } from '../../runtime/providers.js';
import type { TrainProgress } from '../../runtime/train/types.js';
import { prepareForAnalysis } from '../api.js';
import type { Report } from '../report/schema.js';
import { localSummary, resolveSplits } from '../train.js';
import { compressReport, measureLatency, measureRatio, measureSide, type Side } from './compress-measure.js';
import { searchKeepMacs, type LatencySearch, type LatencyTarget, type Probe } from './latency-target.js';

export type FinetuneScheme = 'local+global' | 'global' | 'local' | 'none';
export const FINETUNE_SCHEMES: readonly FinetuneScheme[] = ['local+global', 'global', 'local', 'none'];
export type { Side };

export interface CompressOptions {
  output: string;
  /**
   * A registered method name (passes/methods/index.ts); absent: DEFAULT_METHOD with
   * defaultMethodOptions (WSP; its weight proxy without data).
   */
  method?: string;
  /** The method's own options by flag key (e.g. { groups: 16 } for sg-cnn); checked by the method. */
  methodOptions?: Readonly<Record<string, unknown>>;
  keepMacs: number;
  /**
   * The channel multiple the channel-pruning methods round kept counts to unless told
   * (`--round-to`); default the CPU's SIMD block (runtime/providers.ts cpuSimdBlock).
   */
  channelMultiple?: number;
  /** Training/calibration data; without it only weight-based structure and no fine-tuning. */
  data?: string;
  testData?: string;
  /** The preprocessing flags (cli/preprocess-flags.ts); absent: the model's metadata, else a preset by input shape. */
  preprocessing?: PreprocessOptions;
  /** Same as preprocessing.preset (which wins). */
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
  /** Measure latency before and after (default true). */
  latency?: boolean;
  /**
   * Compress to a measured latency instead of `keepMacs` (cli/pipelines/latency-target.ts):
   * the MACs fraction is searched until the lowered structure runs at the target.
   */
  latencyTarget?: LatencyTarget;
  /** A batch to measure latency at besides 1 and 8 (`--latency-batch` with `--keep-macs`). */
  latencyBatch?: number;
  /** Profile the global fine-tuning step with onnxruntime (StepRecord.profile). */
  profileStep?: boolean;
  onProgress?: (event: TrainProgress) => void;
  log?: (line: string) => void;
}

/** One structure → fine-tune step as it ran. */
export interface StepRecord {
  /** The MACs target of this step. */
  keepMacs: number;
  /** MACs of the structure over the dense model's. */
  macsRatio: number;
  /** The method's own figures for this step (Structured.figures). */
  figures: Readonly<Record<string, number>>;
  /** Fine-tuning of this step: scheme and samples per epoch (undefined: all), or none. */
  finetune: { scheme: FinetuneScheme; samples: number | undefined; epochs: number; seed: number };
  /** Where the global fine-tuning step's time went (with `profileStep`). */
  profile?: ProfileSummary;
}

export interface CompressOutcome {
  report: Report;
  method: string;
  dense: Side;
  compressed: Side;
  /** Largest |lowered − masked reference| over seeded inputs, relative to the reference's output scale. */
  loweringError: number | undefined;
  /** MACs of the structure (connectivity or pruned shapes) over the dense MACs, before lowering chooses forms. */
  structuredMacsRatio: number;
  steps: StepRecord[];
  choices: LayerChoice[];
  /** The probes of a latency target (`latencyTarget`), when one was given. */
  latencySearch?: LatencySearch;
  notes: string[];
  seconds: number;
  /** Peak resident memory of this process so far (MB), read when the output is written. */
  peakRssMb: number;
  /** Models written beside the output (Structured.companions), measured like it. */
  companions: CompanionOutcome[];
}

/** A companion model as written and measured (its latency side by side with the dense model's). */
export interface CompanionOutcome {
  suffix: string;
  file: string;
  description: string;
  side: Side;
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
  const method = methodNamed(options.method ?? DEFAULT_METHOD);
  const implicit = options.method === undefined;
  const rawOptions = implicit
    ? { ...defaultMethodOptions(options.data !== undefined), ...options.methodOptions }
    : (options.methodOptions ?? {});
  refuseForLearnedStructure(method, options);
  const scheme = schemeOf(options, method);
  if (scheme !== 'none' && !options.data)
    throw new RegroupError(
      'usage',
      `--finetune ${scheme} needs --data (training images); pass --data or --finetune none`,
    );
  const baseCommon: CommonOptions = {
    keepMacs: options.keepMacs,
    seed: options.seed ?? 0,
    hasData: options.data !== undefined,
    trainSamples: options.limit,
    channelMultiple: options.channelMultiple ?? cpuSimdBlock(),
    latencyBatch: deployBatch(options),
  };
  const methodOptions = method.options(rawOptions, baseCommon);
  const { relaxBatch } = await import('../../runtime/train/checkpoint.js');
  const { fixedBatchOf } = await import('../../runtime/calibrate.js');
  const loaded = loadModel(file);
  // A model whose weights live in a side file is written the same way (as prune does).
  const externalData = usesExternalData(loaded);
  // A model exported with a fixed batch (PyTorch's batch 1) gets a symbolic one while it is
  // compressed — before constant folding, so reshapes keep following the batch and training
  // can use real batches; the written model gets its fixed batch back.
  const fixedBatch = fixedBatchOf(loaded);
  const dense = fixedBatch ? relaxBatch(loaded, fixedBatch) : loaded;
  const folded = describeFolds(await prepareForAnalysis(dense));
  refuseUnsupported(file, dense);
  const data = options.data ? await openData(dense, options) : undefined;
  try {
    const common = { ...baseCommon, trainSamples: options.limit ?? data?.train.size };
    const notes: string[] = data
      ? [`data: ${data.note}`, `preprocessing: ${describePreprocessing(data.spec)}`]
      : ['no --data: weight-only importance, no fine-tuning, no accuracy'];
    notes.push(...folded);
    if (implicit)
      notes.unshift(
        `method: ${method.name} (the default: ${method.description}${rawOptions.criterion ? `; ${String(rawOptions.criterion)} criterion` : ''}); --method names another`,
      );
    const denseSide = await measureSide(dense, data, options, 'dense');
    log(`dense: ${describeSide(denseSide)}`);
    const search = options.latencyTarget
      ? await latencySearch(method, methodOptions, common, dense, data, options, notes)
      : undefined;
    const { structured, tuned, records } = await runSchedule(
      method,
      methodOptions,
      search ? { ...common, keepMacs: search.keepMacs } : common,
      dense,
      data,
      options,
      notes,
      search?.structured,
    );
    const lowered = await lowerChecked(tuned, structured, method, options);
    if (options.tune === undefined && method.tunesLowering && lowered.choices.length > 0)
      notes.push(
        `lowering forms timed on ${options.ep ?? 'cpu'} at batch ${deployBatch(options)}: ${method.tunesLowering}`,
      );
    const maskedDense = lowered.choices.filter((c) => c.form === 'masked-dense').length;
    if (maskedDense > 0) {
      const how = options.tune ? 'measured' : 'by the cost model; --tune measures';
      const hint = method.maskedDenseHint ? `; ${method.maskedDenseHint}` : '';
      notes.push(
        `${maskedDense} of ${lowered.choices.length} grouped layers stay masked dense convs: ` +
          `no grouped form ran faster on ${options.ep ?? 'cpu'} (${how}), so they save parameters, not latency${hint}`,
      );
    }
    runPasses(lowered.model, PREPARE, {}, { fixpoint: true });
    const compressedSide = await measureSide(lowered.model, data, options, 'compressed');
    if (options.latency !== false) {
      const batches = [...new Set([1, 8, deployBatch(options)])].sort((a, b) => a - b);
      [denseSide.latency, compressedSide.latency] = await measureLatency(dense, lowered.model, options, batches);
    }
    log(`compressed: ${describeSide(compressedSide)}`);
    const companions = await measureCompanions(structured, dense, data, options, notes);
    if (fixedBatch) for (const m of [lowered.model, ...companions.map((c) => c.model)]) restoreBatch(m, fixedBatch);
    // Written models keep stated preprocessing in their metadata (regroup.preprocess).
    if (data) for (const m of [lowered.model, ...companions.map((c) => c.model)]) recordPreprocessing(m, data.spec);
    const save = { protect: options.force ? [] : [file], externalData };
    saveModel(lowered.model, options.output, save);
    for (const c of companions) saveModel(c.model, c.file, save);
    const seconds = (performance.now() - started) / 1000;
    const peakRssMb = process.resourceUsage().maxRSS / 1024;
    const outcome = {
      method: method.name,
      dense: denseSide,
      compressed: compressedSide,
      loweringError: lowered.error,
      structuredMacsRatio: structured.macsRatio,
      steps: records,
      choices: lowered.choices,
      notes,
      seconds,
      peakRssMb,
      latencySearch: search?.search,
      companions: companions.map(({ suffix, file, side, description }) => ({ suffix, file, side, description })),
    };
    const report = compressReport(file, options, { ...outcome, connectivity: structured.connectivity }, dense);
    if (data) report.preprocessing = preprocessingJson(data.spec);
    return { report, ...outcome };
  } finally {
    await Promise.all([data?.train.close?.(), data?.test?.close?.()]);
  }
}

/**
 * The method's structure → fine-tune steps, each structuring the previous step's fine-tuned
 * model with the step's seed and its share of the samples; the last step's models and a
 * record of every step.
 */
async function runSchedule(
  method: AnyMethod,
  methodOptions: unknown,
  common: CommonOptions,
  dense: Model,
  data: Data | undefined,
  options: CompressOptions,
  notes: string[],
  reuse?: Structured,
): Promise<{ structured: Structured; tuned: Model; records: StepRecord[] }> {
  const log = options.log ?? (() => {});
  const scheme = schemeOf(options, method);
  const schedule = method.schedule?.(methodOptions, common) ?? [{ options: methodOptions, keepMacs: common.keepMacs }];
  const records: StepRecord[] = [];
  let start = dense;
  let last: { structured: Structured; tuned: Model } | undefined;
  for (const [k, step] of schedule.entries()) {
    const seed = step.seed ?? common.seed;
    const ctx = {
      common: { ...common, keepMacs: step.keepMacs, seed },
      measure: data ? measurements(data, options, seed) : undefined,
      log,
      note: (line: string) => notes.push(line),
    };
    const reusable = reuse && schedule.length === 1 && step.keepMacs === common.keepMacs;
    const structured = reusable ? reuse : await method.structure(start, step.options, step.keepMacs, ctx);
    const share = structured.learned
      ? 'the structure is learned while fine-tuning'
      : `${(100 * structured.macsRatio).toFixed(1)}% of the MACs`;
    if (k === schedule.length - 1) log(`structured (${method.name}): ${share}`);
    else log(`step ${k + 1}/${schedule.length}: ${share}; fine-tuning before the next step`);
    const limit = step.limit ?? options.limit;
    if (structured.unchanged) {
      log(structured.unchanged);
      notes.push(`${structured.unchanged}; the model is written unchanged`);
    }
    const { model: tuned, profile } = structured.unchanged
      ? { model: structured.model, profile: undefined }
      : await fineTune(structured, dense, data, { ...options, limit, seed }, notes, method);
    const final = structured.learned ? await structured.learned(tuned) : structured;
    if (structured.learned) log(`learned (${method.name}): ${(100 * final.macsRatio).toFixed(1)}% of the MACs`);
    const finetune = { scheme: data ? scheme : 'none', samples: limit, epochs: options.epochs ?? 1, seed } as const;
    records.push({
      keepMacs: step.keepMacs,
      macsRatio: final.macsRatio,
      figures: final.figures ?? {},
      finetune,
      ...(profile ? { profile } : {}),
    });
    // A learned structure may be another model than the one trained (MSGC's static form).
    const model = structured.learned ? final.model : tuned;
    start = model;
    last = { structured: final, tuned: model };
  }
  return { ...last!, records };
}

/**
 * The MACs fraction whose lowered structure runs at `options.latencyTarget` (measured beside
 * the dense model at the target batch; latency-target.ts), and the structure at it.
 */
async function latencySearch(
  method: AnyMethod,
  methodOptions: unknown,
  common: CommonOptions,
  dense: Model,
  data: Data | undefined,
  options: CompressOptions,
  notes: string[],
): Promise<{ keepMacs: number; structured: Structured; search: LatencySearch }> {
  const target = options.latencyTarget!;
  const log = options.log ?? (() => {});
  const denseMacs = computeCost(dense, inferShapes(dense)).totals.macs;
  const priced =
    method.pricesLatency && target.plan === 'table'
      ? await measuredLayers(dense, target.batch, options, notes)
      : undefined;
  const tried = new Map<number, { structured: Structured; lowered: Model }>(); // by the probe's k
  const probeAt = async (keepMacs: number): Promise<Probe> => {
    const ctx = {
      common: { ...common, keepMacs },
      measure: data ? measurements(data, options, common.seed) : undefined,
      log: () => {},
      note: () => {},
      latency: priced?.latency,
    };
    const structured = await method.structure(dense, methodOptions, keepMacs, ctx);
    const { model: lowered } = await lower(structured.model, structured.connectivity, options);
    const { ratio, denseMs } = await measureRatio(dense, lowered, options, target.batch);
    const macsRatio = computeCost(lowered, inferShapes(lowered)).totals.macs / denseMacs;
    const probe = { keepMacs, macsRatio, ms: ratio * denseMs, denseMs };
    tried.set(keepMacs, { structured, lowered });
    return probe;
  };
  const remeasure = async (probe: Probe): Promise<Probe> => {
    const { ratio, denseMs } = await measureRatio(dense, tried.get(probe.keepMacs)!.lowered, options, target.batch);
    return { ...probe, ms: ratio * denseMs, denseMs };
  };
  const blockers = async (probe: Probe) => unreducedLayers(dense, tried.get(probe.keepMacs)!.lowered);
  const initial = priced && target.ms !== undefined ? target.ms / priced.wholeMs : undefined;
  const unit = priced ? 'of the predicted latency' : 'of the MACs';
  const search = await searchKeepMacs(target, probeAt, { log, blockers, remeasure, initial, unit });
  const { chosen } = search;
  const what = target.keep !== undefined ? `${target.keep} of the dense latency` : `${target.ms} ms`;
  notes.push(
    `latency target ${what} at batch ${target.batch}: ${search.probes.length} probe(s), plan for ${chosen.keepMacs.toFixed(3)} ${unit} ` +
      `(lowered: ${chosen.macsRatio.toFixed(3)} of the MACs) → ${chosen.ms.toFixed(2)} ms, ${(chosen.ms / chosen.denseMs).toFixed(3)} of dense ${chosen.denseMs.toFixed(2)} ms (before fine-tuning)`,
  );
  return { keepMacs: chosen.keepMacs, structured: tried.get(chosen.keepMacs)!.structured, search };
}

/**
 * Measured layer latencies of `dense` at `batch` for a method that plans by them: the latency
 * table (runtime/latency/, built where the cache lacks it and reused across runs), looked up
 * by each layer's first output (methods structure copies of `dense`).
 */
async function measuredLayers(
  dense: Model,
  batch: number,
  options: CompressOptions,
  notes: string[],
): Promise<{ latency: LayerLatency; wholeMs: number }> {
  const { profileModel, layerMs } = await import('../../runtime/latency/profile.js');
  const log = options.log ?? (() => {});
  let shown = 0;
  const profile = await profileModel(dense, {
    ep: options.ep ?? 'cpu',
    batch,
    threads: options.threads,
    onProgress: (done, total) => {
      if (done === total || done >= shown + total / 10) {
        shown = done;
        log(`latency table: measured ${done} of ${total} layer candidates`);
      }
    },
  });
  const { wholeMs, layersMs } = profile.cost;
  // Layers timed alone can add up to more than the whole model (each single-layer model pays its
  // own input copies, layout conversions and thread start-up): then no time is left for a fixed
  // rest, and the layers are priced at their share of the whole.
  const scale = layersMs > wholeMs ? wholeMs / layersMs : 1;
  const fixedMs = wholeMs - layersMs * scale;
  notes.push(
    `latency table (batch ${batch}): ${profile.measured} candidates measured, ${profile.reused} reused from ${profile.table.file}; ` +
      (scale < 1
        ? `dense ${wholeMs.toFixed(2)} ms, less than its layers timed alone (${layersMs.toFixed(2)} ms): layer times scaled by ${scale.toFixed(2)}, no fixed rest`
        : `dense ${wholeMs.toFixed(2)} ms = layers ${layersMs.toFixed(2)} ms + the rest ${fixedMs.toFixed(2)} ms`),
    ...profile.notes,
  );
  const byOutput = new Map(
    profile.shapes.flatMap((shape) => shape.layers.map((l) => [l.node.outputs[0]?.name, shape] as const)),
  );
  const latency: LayerLatency = {
    fixedMs,
    layerMs(node, cin, cout) {
      const shape = byOutput.get(node.outputs[0]?.name);
      if (!shape) return undefined;
      const group = shape.group > 1 ? Math.max(1, Math.round((shape.group * cout) / shape.cout)) : 1;
      try {
        return scale * layerMs(profile.table, shape, { cin, cout, group });
      } catch {
        return undefined; // off the measured grid: the pricing scales the dense time instead
      }
    },
  };
  return { latency, wholeMs };
}

/** The layers a structure left (nearly) as heavy as in the dense model, heaviest first: what keeps its latency up. */
function unreducedLayers(dense: Model, lowered: Model): string {
  const after = new Map(
    computeCost(lowered, inferShapes(lowered)).layers.map((l) => [l.node.outputs[0]?.name, l.macs] as const),
  );
  const layers = computeCost(dense, inferShapes(dense)).layers;
  const labels = nodeLabels(dense.graph);
  const unreduced = layers
    .filter((l) => l.macs > 0 && (after.get(l.node.outputs[0]?.name) ?? 0) >= 0.95 * l.macs)
    .sort((a, b) => b.macs - a.macs)
    .slice(0, 4)
    .map((l) => `${labels.get(l.node)} (${(l.macs / 1e6).toFixed(1)}M MACs)`);
  const which = unreduced.length
    ? `layers the method cannot narrow there: ${unreduced.join(', ')}`
    : 'every layer is already narrowed';
  return `${which}; ops without MACs (pooling, Add, reshapes, layout conversions) keep their time too`;
}

/** The fine-tuning scheme: as given, else local+global with data and none without. */
/** The batch the output is meant to run fast at: the latency target's, else `--latency-batch`, else 1. */
function deployBatch(options: CompressOptions): number {
  return options.latencyTarget?.batch ?? options.latencyBatch ?? 1;
}

function schemeOf(options: CompressOptions, method: AnyMethod): FinetuneScheme {
  if (method.learnsStructure) return 'global';
  return options.finetune ?? (options.data ? 'local+global' : 'none');
}

/** A method that learns its structure in fine-tuning needs data and global fine-tuning, and cannot probe a latency. */
function refuseForLearnedStructure(method: AnyMethod, options: CompressOptions): void {
  const why = method.learnsStructure;
  if (!why) return;
  if (!options.data) throw new RegroupError('usage', `${why}: pass --data (training images) and --epochs`);
  if (options.finetune !== undefined && options.finetune !== 'global')
    throw new RegroupError(
      'usage',
      `${why}, in global fine-tuning: --finetune ${options.finetune} does not apply to --method ${method.name} (drop it or pass --finetune global)`,
    );
  if (options.latencyTarget)
    throw new RegroupError(
      'usage',
      `${why}, so a latency target cannot be searched by probing structures; use --keep-macs with --method ${method.name}`,
    );
}

/** Quantized (QDQ, QLinear, integer) models are refused as `prune` refuses them, before any work. */
function refuseUnsupported(file: string, model: Model): void {
  const analysis = analyzeChannels(model, inferShapes(model));
  if (analysis.unsupported)
    throw new RegroupError('unsupported', `${file}: ${analysis.unsupported}; prune a float model before quantizing it`);
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
  const [{ openDataset }, { inputSpecFor }] = await Promise.all([
    import('../../runtime/data/datasets.js'),
    import('../../runtime/data/preprocess.js'),
  ]);
  const spec = inputSpecFor(model, {
    ...options.preprocessing,
    preset: options.preprocessing?.preset ?? options.preset,
  });
  const splits = resolveSplits(options.data!, options.testData);
  const train = await openDataset(splits.train);
  const test = splits.test ? await openDataset(splits.test) : undefined;
  return { train, test, spec, note: splits.note };
}

/** The runtime's measurements on the training split, seeded with the step's seed. */
function measurements(data: Data, options: CompressOptions, seed: number): Measurements {
  const session = { seed, ep: options.ep, threads: options.threads };
  return {
    async channelMeanAbs(model, values, samples = 256) {
      const { calibrate } = await import('../../runtime/calibrate.js');
      const stats = await calibrate(model, data.train, data.spec, values, { ...session, samples });
      return new Map([...stats].map(([value, s]) => [value, s.meanAbs]));
    },
    async divergenceProbe(reference, samples) {
      const { OutputProbe } = await import('../../runtime/sensitivity.js');
      const probe = await OutputProbe.open(reference, data.train, data.spec, { ...session, samples });
      return { samples, divergence: (candidate) => probe.divergence(candidate) };
    },
    async channelSaliency(model, values, samples = 256) {
      const { channelSaliency } = await import('../../runtime/saliency.js');
      return channelSaliency(model, data.train, data.spec, values, { ...session, samples });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Fine-tuning

async function fineTune(
  structured: Structured,
  dense: Model,
  data: Data | undefined,
  options: CompressOptions,
  notes: string[],
  method: AnyMethod,
): Promise<{ model: Model; profile?: ProfileSummary }> {
  const scheme = schemeOf(options, method);
  if (scheme === 'none' || !data) return { model: structured.model };
  const [{ finetune }, { defaultAugmentation }] = await Promise.all([
    import('../../runtime/train/finetune.js'),
    import('../../runtime/train/augment.js'),
  ]);
  const kd = options.kd !== false;
  const [temperature, alpha] = [options.kdTemperature ?? 4, options.kdAlpha ?? 0.9];
  const result = await finetune(structured.model, {
    train: data.train,
    test: undefined,
    spec: data.spec,
    epochs: options.epochs ?? 1,
    batchSize: options.batch,
    schedule: { kind: 'cosine', baseLr: options.lr ?? 0.01 },
    loss: kd ? { kind: 'distill', temperature, alpha } : { kind: 'cross-entropy' },
    teacher: kd ? dense : undefined,
    augment: defaultAugmentation(options.data!, data.spec).augment,
    seed: options.seed ?? 0,
    limit: options.limit,
    ep: options.ep,
    threads: options.threads,
    local: scheme === 'local' ? 'only' : scheme === 'local+global' ? 'then-global' : undefined,
    dense: scheme === 'global' ? undefined : dense,
    onProgress: options.onProgress,
    hooks: structured.hooks,
    profileStep: options.profileStep,
  });
  const samples = options.limit ? ` on ${options.limit} samples` : '';
  const loss = kd ? `distillation from the dense model (T ${temperature}, α ${alpha})` : 'cross-entropy';
  const global = scheme !== 'local' ? `, ${options.epochs ?? 1} epoch(s)${samples}, ${loss}` : '';
  notes.push(`fine-tuning: ${scheme}${global}; ${result.masks.zeros} masked weights held at zero`, ...result.notes);
  if (result.local) notes.push(localSummary(result.local));
  return { model: result.model, profile: result.global?.profile };
}

// ---------------------------------------------------------------------------------------------
// Lowering and its check

interface Lowered {
  model: Model;
  choices: LayerChoice[];
  error: number | undefined;
}

/** Lower the grouped layers and check the result against the masked-dense reference. */
async function lowerChecked(
  model: Model,
  structured: Structured,
  method: AnyMethod,
  options: CompressOptions,
): Promise<Lowered> {
  if (structured.connectivity.size === 0) return { model, choices: [], error: undefined };
  // A method whose structures the cost model prices poorly has its forms timed unless told otherwise.
  const tune = options.tune ?? method.tunesLowering !== undefined;
  const lowered = await lower(model, rekeyed(structured, model), { ...options, tune });
  const error = await loweringDifference(model, lowered);
  if (!(error <= 1e-4)) {
    throw new RegroupError(
      'invalid-ir',
      `the lowered model differs from its masked-dense reference by ${error.toExponential(2)} of the output scale ` +
        `(limit 1e-4); this is a regroup bug — rerun with --method ${method.name} and report it`,
    );
  }
  return { ...lowered, error };
}

/**
 * The structure's connectivity keyed by the nodes of `model`: the structured model's own
 * nodes, or — when fine-tuning returned another model — the nodes that write the same outputs.
 */
function rekeyed(structured: Structured, model: Model): ReadonlyMap<Node, Connectivity> {
  if (model === structured.model) return structured.connectivity;
  const match = matchNodesByOutput(structured.connectivity.keys(), model.graph);
  return new Map([...structured.connectivity].map(([node, conn]) => [match.get(node)!, conn]));
}

async function lower(model: Model, connectivity: ReadonlyMap<Node, Connectivity>, options: CompressOptions) {
  if (connectivity.size === 0) return { model, choices: [] as LayerChoice[] };
  const [{ cpuSimdBlock }, { benchmark }, { lowerGrouped }] = await Promise.all([
    import('../../runtime/providers.js'),
    import('../../runtime/benchmark.js'),
    import('../../passes/lower-grouped.js'),
  ]);
  const tune = options.tune
    ? async (candidates: Model[]) => {
        const times: number[] = [];
        for (const candidate of candidates)
          times.push(
            (
              await benchmark(candidate, candidate, {
                ep: options.ep,
                threads: options.threads,
                batch: 1,
                runs: 15,
                warmup: 3,
              })
            ).medianMs,
          );
        return times;
      }
    : undefined;
  // The cost model ranks forms at the batch the model is meant to run fast at.
  return lowerGrouped(model, connectivity, { simdBlock: cpuSimdBlock(), tune, batch: deployBatch(options) });
}

/**
 * max |lowered − reference| / max |reference| over 4 seeded batches, graph optimisations off;
 * 0 without running when every layer stayed masked dense and the two serialise to the same bytes.
 */
async function loweringDifference(
  reference: Model,
  { model: lowered, choices }: { model: Model; choices: readonly LayerChoice[] },
): Promise<number> {
  if (allMaskedDense(choices) && Buffer.from(encodeModel(reference).bytes).equals(encodeModel(lowered).bytes)) return 0;
  const [{ createSession, run }, { randomFeeds }, { floats }] = await Promise.all([
    import('../../runtime/session.js'),
    import('../../runtime/inputs.js'),
    import('../../runtime/compare.js'),
  ]);
  const [a, b] = await Promise.all([
    createSession(reference, { optimization: 'disabled' }),
    createSession(lowered, { optimization: 'disabled' }),
  ]);
  try {
    let diff = 0,
      scale = 0;
    for (let seed = 0; seed < 4; seed++) {
      const feeds = randomFeeds(reference, { seed, batch: 2 });
      const [x, y] = [
        floats((await run(a, feeds))[a.outputNames[0]!]!),
        floats((await run(b, feeds))[b.outputNames[0]!]!),
      ];
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

/** True when no grouped layer took a grouped form (the lowered graph is then the masked reference). */
export function allMaskedDense(choices: readonly LayerChoice[]): boolean {
  return choices.every((c) => c.form === 'masked-dense');
}

/**
 * The structure's companion models (MSGC's dynamic form): prepared, measured like the output
 * (accuracy, MACs, parameters; latency beside the dense model at the same batches), each
 * with the file it goes to (NAME.<suffix>.onnx beside the output) and a line in the notes.
 */
async function measureCompanions(
  structured: Structured,
  dense: Model,
  data: Data | undefined,
  options: CompressOptions,
  notes: string[],
): Promise<(CompanionOutcome & { model: Model })[]> {
  const out: (CompanionOutcome & { model: Model })[] = [];
  for (const companion of structured.companions ?? []) {
    const model = companion.model;
    runPasses(model, PREPARE, {}, { fixpoint: true });
    const side = await measureSide(model, data, options, companion.suffix);
    let latency = '';
    if (options.latency !== false) {
      const batches = [...new Set([1, 8, deployBatch(options)])].sort((a, b) => a - b);
      const [denseLatency, own] = await measureLatency(dense, model, options, batches);
      side.latency = own;
      latency = `, latency ${own.map((l, k) => `b${l.batch} ${(l.medianMs / denseLatency[k]!.medianMs).toFixed(2)}×`).join(' ')} of dense (side by side)`;
    }
    const file = options.output.replace(/(\.onnx)?$/, `.${companion.suffix}.onnx`);
    const denseMacs = computeCost(dense, inferShapes(dense)).totals.macs;
    notes.push(
      `${companion.description}: written to ${file}; ${describeSide(side)} (${(side.macs / denseMacs).toFixed(3)}× the dense MACs)${latency}`,
    );
    options.log?.(`${companion.suffix}: ${describeSide(side)}${latency}`);
    out.push({ suffix: companion.suffix, file, description: companion.description, side, model });
  }
  return out;
}

function describeSide(s: Side): string {
  const acc = s.accuracy ? `top-1 ${(100 * s.accuracy.top1).toFixed(2)}%, ` : '';
  return `${acc}${(s.macs / 1e6).toFixed(2)}M MACs, ${(s.params / 1e3).toFixed(1)}k params`;
}
