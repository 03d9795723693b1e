/** Records the trainer keeps and reports: per-epoch history, the loss curve, progress events; the training hooks it takes. */
import type { LossTerm } from '../../compiler/autodiff/types.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Tensor } from '../../compiler/ir/tensor.js';

/** One finished epoch. Accuracies are fractions in 0..1. */
export interface EpochRecord {
  /** 1-based epoch number. */
  epoch: number;
  /** Mean training loss over the epoch's updates. */
  trainLoss: number;
  /** Top-1 on the (augmented) training batches, with the weights before each update. */
  trainAccuracy: number;
  /** Top-1 on the test split after the epoch, when there is one. */
  testAccuracy?: number;
  testTop5?: number;
  /** Learning rate of the epoch's last update. */
  lr: number;
  /** Wall time of the epoch: updates plus evaluation and checkpoint. */
  seconds: number;
  /** Training images per second over the updates alone. */
  imagesPerSecond: number;
  /** Updates done so far, this epoch included. */
  steps: number;
}

/** The mean loss over a window of updates ending at `step` (1-based count of updates). */
export interface LossPoint {
  step: number;
  loss: number;
}

/** What the trainer reports while it runs (the CLI draws progress bars from these). */
export type TrainProgress =
  | { phase: 'train'; epoch: number; epochs: number; done: number; total: number; loss: number }
  | { phase: 'eval'; epoch: number; epochs: number; done: number; total: number }
  | { phase: 'epoch'; record: EpochRecord; epochs: number }
  | { phase: 'checkpoint'; epoch: number; file: string }
  | { phase: 'note'; message: string };

/**
 * What training does for a compression method beyond the plain run (the method seam's
 * TrainingHooks, passes/methods/method.ts, has this shape and is passed through as is):
 * train another model, keep some of its initializers fed but never updated, train extra
 * initializers, add loss terms, refresh fed tensors before every epoch, and turn the
 * trained model back into the inference model.
 */
export interface TrainHooks {
  /** The model to train instead of the one given (same inputs and logits). */
  readonly model?: Model;
  /** Initializers of the trained model that no update changes; they are fed every step and `beforeEpoch` may replace them. */
  readonly frozen?: readonly string[];
  /** Initializers to train besides the default set. */
  readonly trainable?: readonly string[];
  readonly lossTerms?: readonly LossTerm[];
  /** Before every epoch (0-based, of `epochs`): `current` reads any initializer's current value; returns replacements for frozen ones. */
  beforeEpoch?(
    epoch: number,
    epochs: number,
    current: (name: string) => Tensor,
  ): ReadonlyMap<string, Tensor> | undefined;
  /** The trained model (inference form) → the model training returns and checkpoints save. */
  finish?(trained: Model): Model;
  /** A refit of the inference model (the local phase's) → the model to train, with the same forward. */
  adopt?(refitted: Model): Model;
}
