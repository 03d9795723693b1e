/** Records the trainer keeps and reports: per-epoch history, the loss curve, progress events; the training hooks it takes. */
import type { TrainingHooks } from '../../compiler/autodiff/types.js';

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

/** What training does for a compression method beyond the plain run (compiler/autodiff/types.ts). */
export type TrainHooks = TrainingHooks;
