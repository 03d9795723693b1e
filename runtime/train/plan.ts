/**
 * A training run's resolved plan (batch, iterations per epoch, schedule, optimizer, loss,
 * seed, class count) and the checks made before any update: the logits output is N × classes
 * and covers the dataset's classes, and every label of a batch is a class index.
 */
import type { Tensor as OrtTensor } from 'onnxruntime-node';
import type { LossSpec, OptimizerSpec, TrainingSpec } from '../../compiler/autodiff/types.js';
import { RegroupError } from '../../compiler/errors.js';
import type { Model } from '../../compiler/ir/model.js';
import { fixedBatchOf } from '../calibrate.js';
import { argmax } from '../compare.js';
import type { Dataset, LabeledImage } from '../data/types.js';
import { subsetDataset } from './data.js';
import { makeSchedule, type Schedule, type ScheduleSpec } from './schedule.js';
import type { TrainOptions } from './trainer.js';

const DEFAULT_BATCH = 128;
/** SGD, momentum 0.9, Nesterov, weight decay 5e-4. */
export const DEFAULT_OPTIMIZER: OptimizerSpec = { kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 5e-4 };
/** Cosine from 0.05 to 0 over the run, no warm-up. */
export const DEFAULT_SCHEDULE: ScheduleSpec = { kind: 'cosine', baseLr: 0.05 };

/** Resolved settings of one run. */
export interface Plan {
  train: Dataset;
  batchSize: number;
  dropLast: boolean;
  fixedBatch: number | undefined;
  perEpoch: number;
  schedule: Schedule;
  optimizer: OptimizerSpec;
  loss: LossSpec;
  seed: number;
  classes: number | undefined;
}

/** Resolve a run's settings (defaults in trainer.ts) and check the model's logits against the data. */
export function makePlan(model: Model, options: TrainOptions): Plan {
  const seed = options.seed ?? 0;
  const trainSet = options.limit !== undefined ? subsetDataset(options.train, options.limit, seed) : options.train;
  const fixedBatch = fixedBatchOf(model);
  const batchSize = options.batchSize ?? DEFAULT_BATCH;
  const dropLast = trainSet.size >= batchSize;
  const perEpoch = dropLast ? Math.floor(trainSet.size / batchSize) : 1;
  const classes = logitsClasses(model, options.logits, trainSet);
  return {
    train: trainSet,
    batchSize,
    dropLast,
    fixedBatch,
    perEpoch,
    schedule: makeSchedule(options.schedule ?? DEFAULT_SCHEDULE, options.epochs, perEpoch),
    optimizer: options.optimizer ?? DEFAULT_OPTIMIZER,
    loss: options.loss ?? { kind: 'cross-entropy' },
    seed,
    classes,
  };
}

/** The autodiff TrainingSpec of a run. */
export function trainingSpec(options: TrainOptions, plan: Plan): TrainingSpec {
  const spec: TrainingSpec = { loss: plan.loss, optimizer: plan.optimizer };
  if (options.logits !== undefined) spec.logits = options.logits;
  if (options.frozen) spec.frozen = options.frozen;
  if (options.masks) spec.masks = options.masks;
  if (options.bnMomentum !== undefined) spec.bnMomentum = options.bnMomentum;
  const hooks = options.hooks;
  if (hooks?.trainable?.length) spec.trainable = hooks.trainable;
  if (hooks?.frozen?.length) spec.fed = hooks.frozen;
  if (hooks?.lossTerms?.length) spec.lossTerms = hooks.lossTerms;
  if (hooks?.straightThrough?.length) spec.straightThrough = hooks.straightThrough;
  if (hooks?.stepValue) spec.stepValue = hooks.stepValue;
  if (hooks?.lrScale?.size) spec.lrScale = hooks.lrScale;
  if (hooks?.monitor?.length) spec.monitor = hooks.monitor;
  spec.totalSteps = plan.perEpoch * options.epochs;
  return spec;
}

/**
 * The class count of the logits output (undefined when its width is symbolic), after
 * checking that it is an N × classes output and covers the dataset's classes.
 */
function logitsClasses(model: Model, name: string | undefined, dataset: Dataset): number | undefined {
  const outputs = model.graph.outputs;
  const output = name === undefined ? outputs[0] : outputs.find((v) => v.name === name);
  const names = outputs.map((v) => `'${v.name}'`).join(', ');
  if (!output)
    throw new RegroupError(
      'usage',
      name === undefined
        ? 'the model has no outputs to train'
        : `the model has no output '${name}'; its outputs are ${names}; pass the logits output with --logits`,
    );
  const shape = output.type?.shape;
  if (shape && shape.length !== 2) {
    throw new RegroupError(
      'unsupported',
      `output '${output.name}' has shape [${shape.map((d) => d ?? '?').join(',')}]; training needs N × classes logits${outputs.length > 1 ? ` (outputs: ${names}; pass --logits)` : ''}`,
    );
  }
  const classes = typeof shape?.[1] === 'number' ? shape[1] : undefined;
  const wanted = dataset.classes?.length;
  if (classes !== undefined && wanted !== undefined && wanted > classes) {
    throw new RegroupError(
      'bad-data',
      `${dataset.name} has ${wanted} classes but the logits output '${output.name}' has ${classes}; train a model with ${wanted} outputs or use matching data`,
    );
  }
  return classes;
}

/** Every label must be a class index of the logits (unlabelled IDX images carry −1). */
export function checkLabels(labels: Int32Array, classes: number | undefined, images: readonly LabeledImage[]): void {
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i]!;
    if (label < 0 || (classes !== undefined && label >= classes)) {
      const why = label < 0 ? 'it is unlabelled' : `the logits have ${classes} classes`;
      throw new RegroupError(
        'bad-data',
        `${images[i]!.source}: label ${label} cannot be trained on (${why}); check the dataset`,
      );
    }
  }
}

/** How many rows of logits [N, classes] have their maximum at the label. */
export function countCorrect(logits: OrtTensor, labels: Int32Array): number {
  const values = logits.data as Float32Array;
  const n = labels.length;
  const per = values.length / n;
  let correct = 0;
  for (let i = 0; i < n; i++) if (argmax(values.subarray(i * per, (i + 1) * per)) === labels[i]) correct++;
  return correct;
}
