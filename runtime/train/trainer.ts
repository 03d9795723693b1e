/**
 * The trainer: epochs of seeded, shuffled, augmented mini-batches through the autodiff step
 * model, a per-iteration learning-rate schedule, evaluation on the test split after every
 * epoch (through the inference model with the current weights), checkpoints and resume.
 *
 * Reproducibility: epoch e shuffles with seed h(seed, e, shuffle) and augments with a
 * generator seeded h(seed, e, augment) (augment.ts: epochSeed), draws consumed in batch
 * order on the main thread; update i (0-based, across epochs) uses lr = schedule(i) and
 * step = i + 1. A run resumed after epoch k from its `.train-state` therefore feeds the step
 * model the same batches, rates and tensors as an uninterrupted run, and ends with the same
 * bits (onnxruntime's kernels being deterministic for a fixed thread count).
 *
 * Hooks (TrainOptions.hooks, a compression method's TrainingHooks passed through): the run
 * trains `hooks.model` instead of the given model, with `hooks.trainable` trained too,
 * `hooks.frozen` fed to every step but never updated, `hooks.lossTerms` added to the loss;
 * `hooks.beforeEpoch` runs at the start of every epoch (a resumed one included) and may
 * replace the frozen tensors; `hooks.finish` turns the trained model into the one returned
 * and checkpointed. The fed tensors are saved in `.train-state`, so a resumed run feeds the
 * same values as an uninterrupted one. The trainer never knows which method it trains.
 *
 * Defaults follow the common CIFAR recipe: batch 128, SGD momentum 0.9 with Nesterov and
 * weight decay 5e-4, cosine schedule from lr 0.05, cross-entropy.
 */
import type { Tensor as OrtTensor } from 'onnxruntime-node';
import { parameterConstantsToInitializers } from '../../compiler/autodiff/constants.js';
import type { LossSpec, OptimizerSpec } from '../../compiler/autodiff/types.js';
import { RegroupError } from '../../compiler/errors.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Tensor } from '../../compiler/ir/tensor.js';
import type { Random } from '../../compiler/util/random.js';
import { batches } from '../data/loader.js';
import type { Dataset, InputSpec, LabeledImage } from '../data/types.js';
import { evaluate, type AccuracyResult } from '../evaluate.js';
import type { SessionOptions } from '../session.js';
import { augmentRandom, epochSeed, type AugmentSpec } from './augment.js';
import { checkWritable, relaxBatch, saveCheckpoint, setTrainedValues } from './checkpoint.js';
import { labelTensor, trainingTensor } from './data.js';
import { describeSchedule, type ScheduleSpec } from './schedule.js';
import { checkLabels, countCorrect, DEFAULT_SCHEDULE, makePlan, trainingSpec, type Plan } from './plan.js';
import { readTrainState, settingsMismatch, stateFileFor, writeTrainState, type TrainState } from './state.js';
import { StepRunner } from './step-runner.js';
import { profilePrefix, type ProfileSummary } from '../profile.js';
import { Teacher } from './teacher.js';
import type { EpochRecord, LossPoint, TrainHooks, TrainProgress } from './types.js';

/** A training run: data, length, optimisation, loss, augmentation, checkpoints (defaults in the header). */
export interface TrainOptions extends Omit<SessionOptions, 'profile'> {
  /** Profile the step graph with onnxruntime and return the summary (TrainResult.profile). */
  profileStep?: boolean;
  train: Dataset;
  /** Evaluated after every epoch when given. */
  test?: Dataset;
  /** Preprocessing of the model input (runtime/data/preprocess.ts inputSpecFor). */
  spec: InputSpec;
  epochs: number;
  /** Default 128; a model whose input fixes another batch trains with that dim made symbolic. */
  batchSize?: number;
  /** Default cosine from 0.05, no warm-up. */
  schedule?: ScheduleSpec;
  /** Default SGD, momentum 0.9, Nesterov, weight decay 5e-4. */
  optimizer?: OptimizerSpec;
  /** Default cross-entropy; 'distill' needs `teacher`. */
  loss?: LossSpec;
  teacher?: Model | string;
  /** Graph output holding the logits (default: the first output). */
  logits?: string;
  masks?: ReadonlyMap<string, Tensor>;
  frozen?: readonly string[];
  bnMomentum?: number;
  /** Crop/flip policy; undefined: no augmentation (augment.ts defaultAugmentation picks one). */
  augment?: AugmentSpec;
  /** Default 0. */
  seed?: number;
  /** Train on a fixed seeded subset of this many samples. */
  limit?: number;
  /** Evaluate on a seeded subset of this many test samples. */
  evalLimit?: number;
  evalBatchSize?: number;
  /** Write the inference model here (and `<file>.train-state`) after every epoch. */
  checkpoint?: string;
  /** Input files a checkpoint must never overwrite. */
  protect?: readonly string[];
  /** Continue from `<checkpoint>.train-state`. */
  resume?: boolean;
  /** Stop after this many epochs in all (as if interrupted); the schedule still spans `epochs`. */
  stopAfterEpochs?: number;
  /** A compression method's training hooks (see the header). */
  hooks?: TrainHooks;
  /** Loss-curve points average this many updates (default 10). */
  logEvery?: number;
  onProgress?: (event: TrainProgress) => void;
}

/** The trained model and how training went. */
export interface TrainResult {
  /** The inference model with the trained weights (BN in inference mode; after `hooks.finish`). */
  model: Model;
  history: EpochRecord[];
  lossCurve: LossPoint[];
  /** Updates done in all. */
  steps: number;
  epochs: number;
  /** The epoch count a resumed run started after, when it resumed. */
  resumedAfter?: number;
  /** Test accuracy after the last epoch, when there is a test split. */
  final?: AccuracyResult;
  /** Mean training throughput over the epochs run in this call (images per second). */
  imagesPerSecond: number;
  trainSamples: number;
  batchSize: number;
  optimizer: OptimizerSpec;
  loss: LossSpec;
  schedule: string;
  augment?: AugmentSpec;
  /** Where the step graph's time went (with `profileStep`). */
  profile?: ProfileSummary;
  notes: string[];
}

export { DEFAULT_OPTIMIZER, DEFAULT_SCHEDULE } from './plan.js';

/** Train `model` (not changed) and return the trained inference model with its history. */
export async function train(model: Model, options: TrainOptions): Promise<TrainResult> {
  const trainer = await Trainer.create(model, options);
  try {
    return await trainer.run();
  } finally {
    await trainer.close();
  }
}

/** Progress that a resume restores. */
interface Position {
  epoch: number;
  step: number;
  history: EpochRecord[];
  lossCurve: LossPoint[];
}

/** A training run with an explicit lifetime: create, run, inspect (forward), close. */
export class Trainer {
  readonly notes: string[] = [];
  #position: Position = { epoch: 0, step: 0, history: [], lossCurve: [] };
  #resumedAfter: number | undefined;
  #final: AccuracyResult | undefined;
  #secondsTraining = 0;
  #imagesTrained = 0;

  private constructor(
    readonly options: TrainOptions,
    readonly plan: Plan,
    readonly runner: StepRunner,
    readonly teacher: Teacher | undefined,
    /** The trainer's own copy of the model, whose initializers follow training. */
    readonly working: Model,
  ) {}

  static async create(source: Model, options: TrainOptions): Promise<Trainer> {
    // Weights stored as Constant nodes (paddle2onnx exports) become initializers, so trained
    // values have somewhere to go in the checkpoint.
    const model = (options.hooks?.model ?? source).clone().model;
    parameterConstantsToInitializers(model);
    const plan = makePlan(model, options);
    if (options.checkpoint) checkWritable(options.checkpoint, options.protect);
    if (plan.loss.kind === 'distill' && !options.teacher)
      throw new RegroupError('usage', 'distillation needs a teacher model (--teacher DENSE.onnx)');
    const relaxed = plan.fixedBatch !== undefined && plan.fixedBatch !== plan.batchSize;
    // With a teacher, its session and the step take turns every update: threads that spin
    // after their work (onnxruntime's default) take the cores from the other session. Measured
    // on 2 cores, Fashion-MNIST ResNet at batch 128, teacher forward + step: 224–235 ms spinning,
    // 183–188 ms not (a step alone runs about 5% faster spinning, so only distillation turns it off).
    const distilling = Boolean(options.teacher) && plan.loss.kind === 'distill';
    const session = {
      ep: options.ep,
      threads: options.threads,
      optimization: options.optimization,
      ...(distilling ? { spinning: false } : {}),
    };
    const runner = await StepRunner.build(
      relaxed ? relaxBatch(model, plan.fixedBatch!) : model,
      trainingSpec(options, plan),
      plan.dropLast ? plan.batchSize : plan.train.size, // every batch of the run (plan.ts)
      options.profileStep ? { ...session, profile: profilePrefix() } : session,
    );
    let teacher: Teacher | undefined;
    try {
      teacher = distilling ? await Teacher.create(options.teacher!, session) : undefined;
      const trainer = new Trainer(options, plan, runner, teacher, model.clone().model);
      if (relaxed)
        trainer.notes.push(
          `the model's input fixes batch ${plan.fixedBatch}: it trains on batches of ${plan.batchSize} with that dim made symbolic; the saved model keeps batch ${plan.fixedBatch}`,
        );
      trainer.notes.push(runner.layoutNote);
      if (options.resume) trainer.#resume();
      return trainer;
    } catch (err) {
      await runner.release();
      await teacher?.release();
      throw err;
    }
  }

  /** Run the remaining epochs (all of them, or up to stopAfterEpochs). */
  async run(): Promise<TrainResult> {
    const { epochs } = this.options;
    const stopAt = Math.min(epochs, this.options.stopAfterEpochs ?? epochs);
    for (let epoch = this.#position.epoch; epoch < stopAt; epoch++) await this.#epoch(epoch);
    if (this.#position.epoch >= epochs && this.#resumedAfter === epochs)
      this.notes.push(`the saved state had already finished all ${epochs} epochs; nothing to train`);
    this.#syncWeights();
    const result = this.#result();
    const profile = this.runner.finishProfile();
    if (profile) result.profile = profile;
    return result;
  }

  /** The hooks' refresh of the fed tensors at the start of an epoch. */
  #beforeEpoch(epoch: number): void {
    const hook = this.options.hooks?.beforeEpoch;
    if (!hook) return;
    this.#syncWeights();
    const current = (name: string): Tensor => {
      const tensor = this.working.graph.initializers.get(name)?.constValue;
      if (!tensor)
        throw new RegroupError(
          'usage',
          `a training hook asks for '${name}', which is not an initializer of the trained model`,
        );
      return tensor;
    };
    const replaced = hook.call(this.options.hooks, epoch, this.options.epochs, current);
    if (!replaced || replaced.size === 0) return;
    for (const [name, tensor] of replaced) this.runner.setFed(name, tensor);
    this.#syncWeights();
  }

  /** The working model as the run returns and saves it (through `hooks.finish`). */
  #finished(): Model {
    const finish = this.options.hooks?.finish;
    return finish ? finish.call(this.options.hooks, this.working) : this.working;
  }

  /** Logits [N, classes] of the step model for unaugmented images with the current tensors (nothing changes). */
  async forward(images: readonly LabeledImage[]): Promise<OrtTensor> {
    const data = trainingTensor(images, this.options.spec);
    const labels = labelTensor(images.map((s) => s.label));
    const teacherLogits = this.teacher ? await this.#teacherLogits(data, images.length) : undefined;
    return this.runner.forward(data, labels, teacherLogits);
  }

  /** The inference model with the current weights (the trainer's copy; do not change it). */
  currentModel(): Model {
    this.#syncWeights();
    return this.working;
  }

  async close(): Promise<void> {
    await this.runner.release();
    await this.teacher?.release();
  }

  async #epoch(epoch: number): Promise<void> {
    const started = performance.now();
    this.#beforeEpoch(epoch);
    const tally = await this.#trainEpoch(epoch);
    const monitored = new Map([...tally.monitored].map(([name, sum]) => [name, sum / Math.max(1, tally.updates)]));
    this.options.hooks?.afterEpoch?.call(this.options.hooks, epoch, this.options.epochs, monitored);
    const trainSeconds = (performance.now() - started) / 1000;
    this.#secondsTraining += trainSeconds;
    this.#imagesTrained += tally.images;
    const test = await this.#evaluate(epoch);
    const pos = this.#position;
    pos.epoch = epoch + 1;
    const record: EpochRecord = {
      epoch: epoch + 1,
      trainLoss: tally.lossSum / Math.max(1, tally.updates),
      trainAccuracy: tally.correct / Math.max(1, tally.images),
      lr: tally.lastLr,
      seconds: 0,
      imagesPerSecond: tally.images / Math.max(trainSeconds, 1e-9),
      steps: pos.step,
    };
    if (test) Object.assign(record, { testAccuracy: test.top1, testTop5: test.top5 });
    pos.history.push(record);
    if (this.options.checkpoint) this.#checkpoint(this.options.checkpoint);
    record.seconds = (performance.now() - started) / 1000;
    this.options.onProgress?.({ phase: 'epoch', record, epochs: this.options.epochs });
  }

  async #trainEpoch(epoch: number): Promise<EpochTally> {
    const { augment, epochs, onProgress } = this.options;
    const plan = this.plan;
    const random = augment ? augmentRandom(plan.seed, epoch) : undefined;
    const stream = batches(plan.train, {
      batchSize: plan.batchSize,
      shuffle: true,
      seed: epochSeed(plan.seed, epoch, 'shuffle'),
      dropLast: plan.dropLast,
    });
    const tally: EpochTally = { lossSum: 0, updates: 0, correct: 0, images: 0, lastLr: 0, monitored: new Map() };
    const window = new LossWindow(this.options.logEvery ?? 10, this.#position.lossCurve);
    for await (const batch of stream) {
      const loss = await this.#update(batch.images, batch.labels, random, tally);
      window.add(loss, this.#position.step);
      onProgress?.({ phase: 'train', epoch: epoch + 1, epochs, done: tally.updates, total: plan.perEpoch, loss });
    }
    window.flush(this.#position.step);
    if (tally.updates === 0)
      throw new RegroupError('bad-data', `${plan.train.name}: no readable training images in epoch ${epoch + 1}`);
    return tally;
  }

  /** One update on a batch (augmented with `random` when the run augments). */
  async #update(
    images: readonly LabeledImage[],
    labels: Int32Array,
    random: Random | undefined,
    tally: EpochTally,
  ): Promise<number> {
    checkLabels(labels, this.plan.classes, images);
    const data = trainingTensor(images, this.options.spec, this.options.augment, random);
    const teacherLogits = this.teacher ? await this.#teacherLogits(data, images.length) : undefined;
    const lr = this.plan.schedule.at(this.#position.step);
    const out = await this.runner.step({
      data,
      labels: labelTensor(labels),
      teacherLogits,
      lr,
      step: this.#position.step + 1,
    });
    this.#position.step++;
    if (!Number.isFinite(out.loss)) {
      throw new RegroupError(
        'runtime',
        `the training loss became ${out.loss} at update ${this.#position.step} (lr ${lr.toPrecision(3)}); lower the learning rate (--lr) or add warm-up (--warmup 1)`,
      );
    }
    tally.lossSum += out.loss;
    for (const [name, value] of out.monitored) tally.monitored.set(name, (tally.monitored.get(name) ?? 0) + value);
    tally.updates++;
    tally.correct += countCorrect(out.logits, labels);
    tally.images += images.length;
    tally.lastLr = lr;
    return out.loss;
  }

  async #teacherLogits(data: OrtTensor, n: number): Promise<OrtTensor> {
    const t = await this.teacher!.logits(data);
    const classes = this.plan.classes;
    if (classes !== undefined && t.dims.length !== 2) {
      if (t.size !== n * classes)
        throw new RegroupError(
          'usage',
          `the teacher's output has shape [${t.dims.join(',')}], which does not hold ${n}×${classes} logits like the student's`,
        );
      return t.reshape([n, classes]);
    }
    return t;
  }

  async #evaluate(epoch: number): Promise<AccuracyResult | undefined> {
    const { test, spec, epochs, onProgress } = this.options;
    if (!test) return undefined;
    this.#syncWeights();
    const result = await evaluate(this.working, this.plan.fixedBatch, test, spec, {
      ep: this.options.ep,
      threads: this.options.threads,
      batchSize: this.options.evalBatchSize ?? Math.max(this.plan.batchSize, 64),
      limit: this.options.evalLimit,
      onProgress: (done, total) => onProgress?.({ phase: 'eval', epoch: epoch + 1, epochs, done, total }),
    });
    this.#final = result;
    return result;
  }

  #syncWeights(): void {
    setTrainedValues(
      this.working,
      this.runner.trainedValues((name) => this.working.graph.initializers.has(name)),
    );
  }

  #checkpoint(file: string): void {
    this.#syncWeights();
    saveCheckpoint(this.#finished(), file, this.options.protect);
    const pos = this.#position;
    const state: TrainState = {
      epoch: pos.epoch,
      step: pos.step,
      seed: this.plan.seed,
      epochs: this.options.epochs,
      settings: this.#settings(),
      history: pos.history,
      lossCurve: pos.lossCurve,
      tensors: this.runner.snapshot(),
    };
    writeTrainState(stateFileFor(file), state);
    this.options.onProgress?.({ phase: 'checkpoint', epoch: pos.epoch, file });
  }

  /** What a resume must repeat for its result to equal an uninterrupted run. */
  #settings(): TrainState['settings'] {
    const o = this.options;
    return {
      trainSamples: this.plan.train.size,
      batchSize: this.plan.batchSize,
      seed: this.plan.seed,
      optimizer: JSON.stringify(this.plan.optimizer),
      loss: JSON.stringify(this.plan.loss),
      schedule: JSON.stringify(this.options.schedule ?? DEFAULT_SCHEDULE),
      augment: JSON.stringify(o.augment ?? null),
      masks: [...(o.masks?.keys() ?? [])].sort().join(','),
      frozen: [...(o.frozen ?? [])].sort().join(','),
      ...hookSettings(o.hooks),
    };
  }

  #resume(): void {
    const file = this.options.checkpoint;
    if (!file)
      throw new RegroupError('usage', '--resume needs the output path (-o) whose .train-state to continue from');
    const stateFile = stateFileFor(file);
    const state = readTrainState(stateFile);
    const changed = settingsMismatch(state.settings, this.#settings());
    if (changed.length > 0)
      throw new RegroupError(
        'usage',
        `${stateFile} was written with other settings (${changed.join('; ')}); resume with the same flags, or train without --resume`,
      );
    if (state.epochs !== this.options.epochs)
      this.notes.push(
        `resumed a run planned for ${state.epochs} epochs with --epochs ${this.options.epochs}: the learning-rate schedule now spans ${this.options.epochs} epochs`,
      );
    this.runner.restore(state.tensors, stateFile);
    this.#position = { epoch: state.epoch, step: state.step, history: state.history, lossCurve: state.lossCurve };
    this.#resumedAfter = state.epoch;
    this.notes.push(`resumed from ${stateFile} after epoch ${state.epoch} (update ${state.step})`);
  }

  #result(): TrainResult {
    const pos = this.#position;
    const result: TrainResult = {
      model: this.#finished(),
      history: pos.history,
      lossCurve: pos.lossCurve,
      steps: pos.step,
      epochs: pos.epoch,
      imagesPerSecond: this.#imagesTrained / Math.max(this.#secondsTraining, 1e-9),
      trainSamples: this.plan.train.size,
      batchSize: this.plan.batchSize,
      optimizer: this.plan.optimizer,
      loss: this.plan.loss,
      schedule: describeSchedule(this.plan.schedule.spec),
      notes: this.notes,
    };
    if (this.#resumedAfter !== undefined) result.resumedAfter = this.#resumedAfter;
    if (this.#final) result.final = this.#final;
    if (this.options.augment) result.augment = this.options.augment;
    return result;
  }
}

/** The hooks' part of the settings a resume must repeat (nothing without hooks, so older state files still match). */
function hookSettings(hooks: TrainHooks | undefined): Record<string, string | number> {
  if (!hooks) return {};
  return {
    hookModel: hooks.model ? 'yes' : 'no',
    hookTrainable: [...(hooks.trainable ?? [])].sort().join(','),
    hookFed: [...(hooks.frozen ?? [])].sort().join(','),
    hookLossTerms: hooks.lossTerms?.length ?? 0,
    ...(hooks.straightThrough?.length ? { hookStraightThrough: [...hooks.straightThrough].sort().join(',') } : {}),
    ...(hooks.stepValue ? { hookStepValue: hooks.stepValue } : {}),
    ...(hooks.lrScale?.size
      ? {
          hookLrScale: [...hooks.lrScale]
            .map(([name, scale]) => `${name}:${scale}`)
            .sort()
            .join(','),
        }
      : {}),
  };
}

interface EpochTally {
  lossSum: number;
  updates: number;
  correct: number;
  images: number;
  lastLr: number;
  /** Sums of the monitored values over the epoch's updates. */
  monitored: Map<string, number>;
}

/** Loss-curve points: the mean of every `every` updates, and of the rest at an epoch's end. */
class LossWindow {
  #sum = 0;
  #count = 0;

  constructor(
    readonly every: number,
    readonly points: LossPoint[],
  ) {
    if (!Number.isInteger(every) || every <= 0)
      throw new RegroupError('usage', `logEvery ${every} must be a positive whole number`);
  }

  add(loss: number, step: number): void {
    this.#sum += loss;
    if (++this.#count === this.every) this.flush(step);
  }

  flush(step: number): void {
    if (this.#count === 0) return;
    this.points.push({ step, loss: this.#sum / this.#count });
    this.#sum = 0;
    this.#count = 0;
  }
}
