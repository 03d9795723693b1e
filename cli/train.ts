/**
 * `regroup train` and `regroup finetune` as library calls and commands: open the train and
 * test splits, pick preprocessing and augmentation, run the trainer (runtime/train), write
 * the trained model and its report.
 *
 * Splits: `mnist` / `fashion-mnist` train on `:train` and evaluate on `:test`; an explicit
 * `:train` split is evaluated on `:test`; `:test` or `:all` has no held-out split. A folder
 * with `train/` and `test/` sub-folders uses those; any other folder, `DIR,labels.csv` or
 * `idx:PATH` trains on all of it. `--test-data SPEC` names the evaluation data explicitly.
 *
 * The runtime (onnxruntime's native library) is imported only when a command runs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { positiveInt, nonNegativeInt, positiveNumber, nonNegativeNumber, unitFraction } from './args.js';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import type { LossSpec, OptimizerSpec } from '../compiler/autodiff/types.js';
import { RegroupError } from '../compiler/errors.js';
import type { Model } from '../compiler/ir/model.js';
import { loadModel, writeAtomic } from '../compiler/onnx/io.js';
import type { Dataset } from '../runtime/data/types.js';
import type { ExecutionProvider } from '../runtime/providers.js';
import type { AugmentSpec } from '../runtime/train/augment.js';
import type { ScheduleKind, ScheduleSpec } from '../runtime/train/schedule.js';
import type { AccuracyResult } from '../runtime/evaluate.js';
import type { LocalProgress, LocalResult } from '../runtime/train/local.js';
import type { TrainOptions, TrainResult } from '../runtime/train/trainer.js';
import type { TrainProgress } from '../runtime/train/types.js';
import { fileBytes } from './evaluate.js';
import { human } from './format.js';
import { progress, type Progress } from './progress.js';
import { writeProfile } from './profile-output.js';
import { addPreprocessFlags, preprocessOptionsOf, type PreprocessFlags } from './preprocess-flags.js';
import {
  describePreprocessing,
  preprocessingJson,
  recordPreprocessing,
  type PreprocessOptions,
} from '../runtime/data/preprocess-spec.js';
import { writeReport } from './report/command.js';
import { renderHtml } from './report/html.js';
import { REPORT_FORMAT, REPORT_VERSION, type Report, type ReportTraining } from './report/schema.js';

/** `regroup train` flags as library options. */
export interface TrainCommandOptions {
  data: string;
  /** Evaluation data; default from `data` (see the header). */
  testData?: string;
  output: string;
  epochs: number;
  lr?: number;
  batch?: number;
  optimizer?: 'sgd' | 'adamw';
  momentum?: number;
  nesterov?: boolean;
  weightDecay?: number;
  schedule?: ScheduleKind;
  warmup?: number;
  /** false: no augmentation; default: the dataset's policy (runtime/train/augment.ts). */
  augment?: boolean;
  resume?: boolean;
  seed?: number;
  ep?: ExecutionProvider;
  threads?: number;
  limit?: number;
  evalLimit?: number;
  /** The preprocessing flags (cli/preprocess-flags.ts); absent: the model's metadata, else a preset by input shape. */
  preprocessing?: PreprocessOptions;
  /** Same as preprocessing.preset (which wins). */
  preset?: string;
  logits?: string;
  force?: boolean;
  /** Profile the training step (TrainResult.profile). */
  profileStep?: boolean;
  onProgress?: (event: TrainProgress) => void;
}

/** `regroup finetune` flags as library options. */
export interface FinetuneCommandOptions extends TrainCommandOptions {
  /** Dense teacher for distillation. */
  teacher?: string;
  kdTemperature?: number;
  kdAlpha?: number;
  /** Hold exact weight zeros at zero (default true). */
  keepZeros?: boolean;
  /** Layer-wise least-squares reconstruction against the teacher (runtime/train/local.ts) first. */
  local?: 'only' | 'then-global';
  /** Calibration images of the local phase (default 512). */
  localSamples?: number;
}

/** What a command produced: the final model, global training when it ran, the local phase when it ran. */
export interface Trained {
  model: Model;
  train?: TrainResult;
  local?: LocalResult;
  final?: AccuracyResult;
  notes: string[];
}

/** A command's result: the report it prints and writes, the run, and what was chosen. */
export interface TrainOutcome {
  report: Report;
  result: Trained;
  trainData: string;
  testData: string | undefined;
  augmentReason: string;
  presetReason: string;
}

/** The data specs a train command reads: what to train on and what to evaluate on. */
export interface Splits {
  train: string;
  test: string | undefined;
  note: string;
}

/** Choose train and test specs for a `--data` value (see the header). */
export function resolveSplits(data: string, testData?: string): Splits {
  const chosen = defaultSplits(data);
  if (testData === undefined) return chosen;
  return { train: chosen.train, test: testData, note: `train on ${chosen.train}, evaluate on ${testData}` };
}

function defaultSplits(data: string): Splits {
  const embedded = /^(mnist|fashion-mnist)(?::(\w+))?$/.exec(data);
  if (embedded) {
    const [, name, split] = embedded;
    if (split === undefined || split === 'train')
      return { train: `${name}:train`, test: `${name}:test`, note: `train on ${name}:train, evaluate on ${name}:test` };
    return {
      train: data,
      test: undefined,
      note: `train on ${data}; no held-out split is evaluated (pass --test-data)`,
    };
  }
  const plain = !data.startsWith('idx:') && !/,[^,]+\.csv$/i.test(data);
  if (plain && isDir(path.join(data, 'train')) && isDir(path.join(data, 'test'))) {
    const [train, test] = [path.join(data, 'train'), path.join(data, 'test')];
    return { train, test, note: `train on ${train}, evaluate on ${test}` };
  }
  return { train: data, test: undefined, note: `train on ${data}; no test split found (pass --test-data)` };
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The optimizer a command's flags ask for (PyTorch defaults where not given). */
export function optimizerFrom(
  options: Pick<TrainCommandOptions, 'optimizer' | 'momentum' | 'nesterov' | 'weightDecay'>,
): OptimizerSpec {
  if (options.optimizer === 'adamw')
    return { kind: 'adamw', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: options.weightDecay ?? 0.01 };
  return {
    kind: 'sgd',
    momentum: options.momentum ?? 0.9,
    nesterov: options.nesterov ?? true,
    weightDecay: options.weightDecay ?? 5e-4,
  };
}

/** Default peak rates: 0.05 for SGD, 1e-3 for AdamW; fine-tuning starts from a tenth of those. */
function defaultLr(optimizer: OptimizerSpec, finetuning: boolean): number {
  const base = optimizer.kind === 'sgd' ? 0.05 : 1e-3;
  return finetuning ? base / 10 : base;
}

/** `regroup train` as a library call. */
export async function trainModelFile(file: string, options: TrainCommandOptions): Promise<TrainOutcome> {
  return runTraining(file, options, { mode: 'train' });
}

/** `regroup finetune` as a library call: global fine-tuning with the model's zeros held, optional distillation. */
export async function finetuneModelFile(file: string, options: FinetuneCommandOptions): Promise<TrainOutcome> {
  if (options.local && !options.teacher)
    throw new RegroupError(
      'usage',
      `--local-${options.local}: local fine-tuning reproduces the dense model's layers; pass it with --teacher DENSE.onnx`,
    );
  if ((options.kdAlpha !== undefined || options.kdTemperature !== undefined) && !options.teacher)
    throw new RegroupError('usage', '--kd-alpha and --kd-temperature need a teacher: pass --teacher DENSE.onnx');
  return runTraining(file, options, {
    mode: 'finetune',
    teacher: options.teacher,
    kd: { temperature: options.kdTemperature ?? 4, alpha: options.kdAlpha ?? 0.9 },
    keepZeros: options.keepZeros ?? true,
    local: options.local,
    localSamples: options.localSamples,
  });
}

interface ModeSettings {
  mode: 'train' | 'finetune';
  teacher?: string;
  kd?: { temperature: number; alpha: number };
  keepZeros?: boolean;
  local?: 'only' | 'then-global';
  localSamples?: number;
}

async function runTraining(file: string, options: TrainCommandOptions, mode: ModeSettings): Promise<TrainOutcome> {
  const [{ openDataset }, { inputSpecFor }, { defaultAugmentation }, { checkWritable }] = await Promise.all([
    import('../runtime/data/datasets.js'),
    import('../runtime/data/preprocess.js'),
    import('../runtime/train/augment.js'),
    import('../runtime/train/checkpoint.js'),
  ]);
  const model = loadModel(file);
  checkWritable(options.output, options.force ? [] : [file, ...(mode.teacher ? [mode.teacher] : [])]);
  const spec = inputSpecFor(model, {
    ...options.preprocessing,
    preset: options.preprocessing?.preset ?? options.preset,
  });
  // The trained model keeps stated preprocessing in its metadata (regroup.preprocess).
  recordPreprocessing(model, spec);
  const splits = resolveSplits(options.data, options.testData);
  const augmentChoice =
    options.augment === false
      ? { augment: undefined, reason: 'augmentation off (--no-augment)' }
      : defaultAugmentation(splits.train, spec);
  const train = await openDataset(splits.train);
  const test = splits.test ? await openDataset(splits.test) : undefined;
  try {
    const trainOptions = buildTrainOptions(file, options, mode, { train, test, spec, augment: augmentChoice.augment });
    const result = await runMode(model, trainOptions, mode);
    const notes = [
      `data: ${splits.note}`,
      `preprocessing: ${describePreprocessing(spec)}`,
      `augmentation: ${augmentChoice.reason}`,
      ...result.notes,
    ];
    const report = trainingReport(file, options.output, model, result, { mode, notes, testName: test?.name });
    report.preprocessing = preprocessingJson(spec);
    return {
      report,
      result,
      trainData: train.name,
      testData: test?.name,
      augmentReason: augmentChoice.reason,
      presetReason: spec.presetReason,
    };
  } finally {
    await Promise.all([train.close?.(), test?.close?.()]);
  }
}

function buildTrainOptions(
  file: string,
  o: TrainCommandOptions,
  mode: ModeSettings,
  data: { train: Dataset; test: Dataset | undefined; spec: TrainOptions['spec']; augment: AugmentSpec | undefined },
): TrainOptions {
  const optimizer = optimizerFrom(o);
  const schedule: ScheduleSpec = {
    kind: o.schedule ?? 'cosine',
    baseLr: o.lr ?? defaultLr(optimizer, mode.mode === 'finetune'),
    warmupEpochs: o.warmup ?? 0,
  };
  const loss: LossSpec = mode.teacher && mode.kd ? { kind: 'distill', ...mode.kd } : { kind: 'cross-entropy' };
  const options: TrainOptions = {
    ...data,
    epochs: o.epochs,
    batchSize: o.batch,
    schedule,
    optimizer,
    loss,
    teacher: mode.teacher,
    logits: o.logits,
    seed: o.seed ?? 0,
    limit: o.limit,
    evalLimit: o.evalLimit,
    checkpoint: o.output,
    protect: o.force ? [] : [file, ...(mode.teacher ? [mode.teacher] : [])],
    resume: o.resume,
    ep: o.ep,
    threads: o.threads,
    profileStep: o.profileStep,
    onProgress: o.onProgress,
  };
  return options;
}

async function runMode(model: Model, options: TrainOptions, mode: ModeSettings): Promise<Trained> {
  if (mode.mode === 'train') {
    const { train } = await import('../runtime/train/trainer.js');
    const result = await train(model, options);
    return { model: result.model, train: result, final: result.final, notes: result.notes };
  }
  const { finetune } = await import('../runtime/train/finetune.js');
  const dense = mode.local && mode.teacher ? loadModel(mode.teacher) : undefined;
  const result = await finetune(model, {
    ...options,
    keepZeros: mode.keepZeros,
    local: mode.local,
    dense,
    localSamples: mode.localSamples,
    onLocalProgress: localProgress(options.onProgress),
  });
  const notes = [...result.notes];
  const m = result.masks;
  if (m.tensors > 0)
    notes.push(
      `${m.zeros} of ${m.entries} weights in ${m.tensors} tensors held at zero (masks from the model's exact zeros)`,
    );
  if (result.local) notes.push(localSummary(result.local));
  return { model: result.model, train: result.global, local: result.local, final: result.final, notes };
}

/** Local-phase progress as notes on the same channel as training progress. */
function localProgress(onProgress: TrainOptions['onProgress']): ((event: LocalProgress) => void) | undefined {
  if (!onProgress) return undefined;
  return (event) => {
    if (event.phase === 'layer')
      onProgress({
        phase: 'note',
        message: `local: ${event.layers.join(', ')} done (${event.done}/${event.total} layers)`,
      });
  };
}

/** `local: 12 of 14 layers refitted on 512 images, relative error 0.31 → 0.12 (mean); skipped: fc (why)`. */
export function localSummary(local: LocalResult): string {
  const refitted = local.layers.filter((l) => l.status === 'refitted');
  const mean = (pick: (l: LocalResult['layers'][number]) => number | undefined) =>
    refitted.reduce((a, l) => a + (pick(l) ?? 0), 0) / Math.max(1, refitted.length);
  const skipped = local.layers.filter((l) => l.status === 'skipped').map((l) => `${l.name} (${l.reason})`);
  const errors =
    refitted.length > 0
      ? `, relative layer error ${mean((l) => l.errorBefore).toFixed(4)} → ${mean((l) => l.errorAfter).toFixed(4)} (mean)`
      : '';
  return `local: ${refitted.length} of ${local.layers.length} layers refitted on ${local.samples} images in ${local.seconds.toFixed(1)} s${errors}${skipped.length ? `; skipped: ${skipped.join('; ')}` : ''}`;
}

/** The common report: the trained model's cost, its final test accuracy and the training section. */
function trainingReport(
  input: string,
  output: string,
  model: Model,
  result: Trained,
  extra: { mode: ModeSettings; notes: string[]; testName: string | undefined },
): Report {
  const trained = computeCost(result.model, inferShapes(result.model)).totals;
  const before = computeCost(model, inferShapes(model)).totals;
  const report: Report = {
    format: REPORT_FORMAT,
    version: REPORT_VERSION,
    kind: extra.mode.mode,
    createdAt: new Date().toISOString(),
    model: {
      file: output,
      macs: trained.macs,
      params: trained.params,
      bytes: fs.existsSync(output) ? fileBytes(output) : 0,
    },
    baseline: { file: input, macs: before.macs, params: before.params },
    totals: {
      macsBefore: before.macs,
      macsAfter: trained.macs,
      paramsBefore: before.params,
      paramsAfter: trained.params,
    },
    notes: extra.notes,
  };
  if (result.train) report.training = trainingSection(result.train, extra.mode);
  if (result.final && extra.testName)
    report.accuracy = {
      top1: result.final.top1,
      top5: result.final.top5,
      samples: result.final.samples,
      dataset: extra.testName,
    };
  return report;
}

function trainingSection(result: TrainResult, mode: ModeSettings): ReportTraining {
  return {
    mode: mode.mode,
    epochs: result.epochs,
    steps: result.steps,
    batchSize: result.batchSize,
    trainSamples: result.trainSamples,
    optimizer: describeOptimizer(result.optimizer),
    schedule: result.schedule,
    loss: describeLoss(result.loss, mode.teacher),
    imagesPerSecond: result.imagesPerSecond,
    history: result.history.map((e) => ({
      epoch: e.epoch,
      trainLoss: e.trainLoss,
      trainAccuracy: e.trainAccuracy,
      ...(e.testAccuracy === undefined ? {} : { testAccuracy: e.testAccuracy }),
      lr: e.lr,
      seconds: e.seconds,
    })),
    lossCurve: result.lossCurve.map((p) => ({ step: p.step, loss: p.loss })),
  };
}

/** `SGD (momentum 0.9, Nesterov, weight decay 0.0005)` for reports. */
export function describeOptimizer(o: OptimizerSpec): string {
  if (o.kind === 'sgd')
    return `SGD (momentum ${o.momentum}${o.nesterov ? ', Nesterov' : ''}, weight decay ${o.weightDecay})`;
  return `${o.kind === 'adamw' ? 'AdamW' : 'Adam'} (β ${o.beta1}/${o.beta2}, ε ${o.eps}, weight decay ${o.weightDecay})`;
}

function describeLoss(loss: LossSpec, teacher: string | undefined): string {
  if (loss.kind === 'distill')
    return `distillation from ${teacher ?? 'a teacher'} (T ${loss.temperature}, α ${loss.alpha}) + cross-entropy`;
  return loss.labelSmoothing ? `cross-entropy (label smoothing ${loss.labelSmoothing})` : 'cross-entropy';
}

// ---------------------------------------------------------------------------------------
// Commands

interface CommandFlags
  extends Omit<FinetuneCommandOptions, 'onProgress' | 'local' | 'augment' | 'preset'>,
    PreprocessFlags {
  augment: boolean;
  localOnly?: boolean;
  localThenGlobal?: boolean;
  json?: boolean;
  report?: string;
  profile?: string;
  html?: string;
}

/** The flags `train` and `finetune` share. */
function addTrainingFlags(command: Command, defaults: { epochs?: number; lrHelp: string }): Command {
  command
    .argument('<model>', 'ONNX model file')
    .requiredOption(
      '-o, --output <file>',
      'where to write the trained model (after every epoch, atomically; <output>.train-state beside it for --resume)',
    )
    .requiredOption(
      '--data <spec>',
      'training data: mnist, fashion-mnist (train split; evaluated on the test split), DIR (DIR/train + DIR/test when present), DIR,labels.csv, or idx:PATH',
    )
    .option('--test-data <spec>', 'evaluation data (default: the test split that goes with --data)')
    .option(
      '--epochs <n>',
      `epochs${defaults.epochs ? ` (default ${defaults.epochs})` : ''}`,
      positiveInt,
      defaults.epochs,
    )
    .option('--lr <rate>', defaults.lrHelp, positiveNumber)
    .option('--batch <n>', 'batch size', positiveInt, 128)
    .addOption(new Option('--optimizer <name>', 'optimizer').choices(['sgd', 'adamw']).default('sgd'))
    .option('--momentum <m>', 'SGD momentum', unitFraction, 0.9)
    .option('--no-nesterov', 'plain momentum instead of Nesterov')
    .option('--weight-decay <w>', 'weight decay (default 5e-4 for SGD, 0.01 for AdamW)', nonNegativeNumber)
    .addOption(
      new Option('--schedule <kind>', 'learning-rate schedule, per update')
        .choices(['cosine', 'step', 'constant'])
        .default('cosine'),
    )
    .option('--warmup <epochs>', 'linear warm-up epochs', nonNegativeNumber, 0)
    .option('--no-augment', 'no random crops or flips (default: chosen per dataset; never flips for MNIST digits)')
    .option('--resume', 'continue from <output>.train-state (same flags), ending where an uninterrupted run would')
    .option('--seed <n>', 'seed of shuffling and augmentation', nonNegativeInt, 0)
    .addOption(new Option('--ep <provider>', 'execution provider').choices(['cpu', 'webgpu', 'cuda']).default('cpu'))
    .option('--threads <n>', 'intra-op threads (0 = onnxruntime default)', nonNegativeInt, 0)
    .option('--limit <n>', 'train on a fixed seeded subset of n samples', positiveInt)
    .option('--eval-limit <n>', 'evaluate on a seeded subset of n test samples', positiveInt);
  return addPreprocessFlags(command)
    .option('--logits <output>', 'the graph output holding the logits (default: the first output)')
    .option('--force', 'allow overwriting the input model')
    .option('--json', 'print the report as JSON')
    .option('--report <file>', 'also write the report in the common JSON format (see `regroup report`)')
    .option('--html <file>', 'also write a self-contained HTML page with the loss and accuracy curves')
    .option(
      '--profile <file>',
      "profile the training step with onnxruntime: time by op type, by layer and by node, and the arena's peak memory, printed and written to FILE as JSON",
    );
}

/** Add `train` and `finetune` to the program. */
export function registerTrainCommands(program: Command): void {
  addTrainingFlags(
    program
      .command('train')
      .description(
        "train a model with onnxruntime: SGD or AdamW through regroup's autodiff, per-epoch evaluation and checkpoints",
      ),
    { lrHelp: 'peak learning rate (default 0.05 for SGD, 1e-3 for AdamW)' },
  ).action(async (file: string, flags: CommandFlags) => {
    if (flags.epochs === undefined) throw new RegroupError('usage', 'say how long to train: --epochs N');
    await runCommand(file, flags, (options) => trainModelFile(file, options));
  });
  addTrainingFlags(
    program
      .command('finetune')
      .description(
        'fine-tune a compressed model globally, its zero weights held at zero, optionally distilling from the dense model',
      ),
    { epochs: 3, lrHelp: 'peak learning rate (default 0.005 for SGD, 1e-4 for AdamW)' },
  )
    .option('--teacher <model>', 'dense model to distil from (run on the same augmented batches)')
    .option('--kd-temperature <t>', 'distillation temperature (default 4)', positiveNumber)
    .option('--kd-alpha <a>', 'weight of the distillation term against cross-entropy (default 0.9)', unitFraction)
    .option('--no-keep-zeros', 'let zero weights change (default: masks from the exact zeros keep them zero)')
    .option('--local-only', 'layer-wise reconstruction against the teacher only')
    .option('--local-then-global', 'layer-wise reconstruction, then global fine-tuning')
    .option('--local-samples <n>', 'calibration images of the local phase (default 512)', positiveInt)
    .action(async (file: string, flags: CommandFlags) => {
      if (flags.localOnly && flags.localThenGlobal)
        throw new RegroupError('usage', 'give --local-only or --local-then-global, not both');
      const local = flags.localOnly ? 'only' : flags.localThenGlobal ? 'then-global' : undefined;
      await runCommand(file, flags, (options) =>
        finetuneModelFile(file, {
          ...options,
          teacher: flags.teacher,
          kdTemperature: flags.kdTemperature,
          kdAlpha: flags.kdAlpha,
          keepZeros: flags.keepZeros,
          local,
          localSamples: flags.localSamples,
        }),
      );
    });
}

async function runCommand(
  file: string,
  flags: CommandFlags,
  call: (options: TrainCommandOptions) => Promise<TrainOutcome>,
): Promise<void> {
  const bars = new ProgressBars(flags.json === true);
  const options: TrainCommandOptions = {
    data: flags.data,
    testData: flags.testData,
    output: flags.output,
    epochs: flags.epochs,
    lr: flags.lr,
    batch: flags.batch,
    optimizer: flags.optimizer,
    momentum: flags.momentum,
    nesterov: flags.nesterov,
    weightDecay: flags.weightDecay,
    schedule: flags.schedule,
    warmup: flags.warmup,
    augment: flags.augment,
    resume: flags.resume,
    seed: flags.seed,
    ep: flags.ep,
    threads: flags.threads,
    limit: flags.limit,
    evalLimit: flags.evalLimit,
    preprocessing: preprocessOptionsOf(flags),
    logits: flags.logits,
    force: flags.force,
    profileStep: flags.profile !== undefined,
    onProgress: (event) => bars.on(event),
  };
  const outcome = await call(options);
  bars.close();
  if (flags.json) console.log(JSON.stringify(outcome.report, null, 2));
  else printOutcome(file, outcome);
  if (flags.report) writeReport(flags.report, outcome.report);
  if (flags.profile) writeProfile(flags.profile, outcome.result.train?.profile, !flags.json);
  const title = `regroup ${outcome.report.kind} report: ${path.basename(flags.output)}`;
  if (flags.html) writeAtomic(flags.html, [Buffer.from(renderHtml([outcome.report], { title }))]);
}

/** One bar per epoch and per evaluation, finished with the epoch's figures. */
export class ProgressBars {
  #bar: Progress | undefined;
  #label = '';

  constructor(readonly quiet: boolean) {}

  on(event: TrainProgress): void {
    if (event.phase === 'train' || event.phase === 'eval') {
      const label = `${event.phase === 'train' ? 'epoch' : 'eval'} ${event.epoch}/${event.epochs}`;
      if (label !== this.#label) this.#start(label, event.total);
      this.#bar!.tick(event.done);
    } else if (event.phase === 'epoch') {
      const r = event.record;
      const test = r.testAccuracy === undefined ? '' : `, test top-1 ${(100 * r.testAccuracy).toFixed(2)}%`;
      this.#finish(
        `epoch ${r.epoch}/${event.epochs}: loss ${r.trainLoss.toFixed(4)}, train top-1 ${(100 * r.trainAccuracy).toFixed(2)}%${test}, lr ${r.lr.toPrecision(3)}, ${r.imagesPerSecond.toFixed(0)} images/s, ${r.seconds.toFixed(1)} s`,
      );
    } else if (event.phase === 'note' && !this.quiet) process.stderr.write(`note: ${event.message}\n`);
  }

  #start(label: string, total: number): void {
    this.#finish(undefined);
    this.#label = label;
    this.#bar = progress(label, total, { quiet: this.quiet });
  }

  /** End the current bar; with a message, print it in the bar's place (the epoch line). */
  #finish(message: string | undefined): void {
    if (this.#bar) this.#bar.done(message ?? `${this.#label} done`);
    else if (message && !this.quiet) process.stderr.write(`${message}\n`);
    this.#bar = undefined;
    this.#label = '';
  }

  close(): void {
    this.#finish(undefined);
  }
}

function printOutcome(file: string, o: TrainOutcome): void {
  const t = o.report.training;
  const verb = o.report.kind === 'finetune' ? 'fine-tuned' : 'trained';
  if (t)
    console.log(
      `${verb} ${file} on ${o.trainData}: ${t.epochs} epoch(s), ${t.steps} updates of batch ${t.batchSize}, ${t.imagesPerSecond.toFixed(1)} images/s`,
    );
  else console.log(`${verb} ${file} layer by layer on ${o.trainData}`);
  const final = o.result.final;
  if (final && o.testData)
    console.log(
      `test top-1 ${(100 * final.top1).toFixed(2)}%, top-5 ${(100 * final.top5).toFixed(2)}% on ${o.testData} (${final.samples} samples)`,
    );
  if (t) console.log(`optimizer ${t.optimizer}; schedule ${t.schedule}; loss ${t.loss}`);
  for (const note of o.report.notes) console.log(`note: ${note}`);
  console.log(
    `wrote ${o.report.model.file} (${human(o.report.model.bytes)}B)${t ? ` and ${o.report.model.file}.train-state` : ''}`,
  );
}
