/**
 * The contract between the autodiff pass (compiler/autodiff/) and the trainer
 * (runtime/train/). The autodiff side turns an inference Model into one ONNX "step"
 * model; the trainer feeds it batches, labels, the learning rate and the current
 * parameters/state, and feeds the updated tensors it returns into the next step.
 *
 *   step(data, labels[, teacherLogits], lr, step, params…, state…)
 *     → loss, logits, params'…, state'…
 *
 * Parameters and state are graph inputs of the step model (never initializers), so the
 * same session runs every step and the trainer owns the numbers between steps.
 */
import type { Model } from '../ir/model.js';
import type { Value } from '../ir/node.js';
import type { Tensor } from '../ir/tensor.js';
import type { Emitter } from './emitter.js';

/**
 * An extra loss term: the builder calls it with the step graph's emitter, a lookup of the
 * training model's initializers and trainable tensors by name, and the run's progress, and
 * adds the returned float scalar to the loss before taking gradients (e.g. λ·Σw², a MACs
 * penalty whose target is annealed over the run).
 */
export type LossTerm = (e: Emitter, value: (name: string) => Value, run: LossTermRun) => Value;

/** What a loss term can read about the run inside the step graph. */
export interface LossTermRun {
  /**
   * Float scalar: updates done before this one over the run's total (TrainingSpec.totalSteps),
   * from 0 at the first update towards 1 at the last; 0 throughout when the total is unknown.
   */
  readonly progress: Value;
}

/** Cross-entropy on labels, or distillation from teacher logits mixed with it. */
export type LossSpec =
  | { kind: 'cross-entropy'; labelSmoothing?: number }
  /**
   * loss = alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T)) + (1 − alpha) · CE(student, labels)
   * (Hinton et al. 2015; T² keeps gradient magnitudes comparable across temperatures).
   */
  | { kind: 'distill'; temperature: number; alpha: number };

/** Optimizers with PyTorch's update rules, so recipes carry over. */
export type OptimizerSpec =
  /** v ← μ·v + (g + wd·w); w ← w − lr·(nesterov ? g + wd·w + μ·v : v). */
  | { kind: 'sgd'; momentum: number; nesterov: boolean; weightDecay: number }
  /**
   * Adam (weightDecay added to the gradient) or AdamW (decoupled: w ← w − lr·wd·w), with
   * bias correction from the `step` input (1-based count of updates including this one).
   */
  | { kind: 'adam' | 'adamw'; beta1: number; beta2: number; eps: number; weightDecay: number };

export interface TrainingSpec {
  loss: LossSpec;
  optimizer: OptimizerSpec;
  /** The graph output holding the logits (N × classes); default the first output. */
  logits?: string;
  /**
   * Initializers that must not change (frozen). Default trainable set: every float
   * initializer that feeds a Conv/ConvTranspose/Gemm/MatMul weight or bias, or a
   * BatchNormalization scale/bias, minus these.
   */
  frozen?: readonly string[];
  /**
   * Connectivity masks: parameter name → 0/1 tensor of the parameter's shape. Masked
   * entries get zero gradient, zero update and stay exactly zero.
   */
  masks?: ReadonlyMap<string, Tensor>;
  /** Running-statistics momentum in PyTorch's sense (new = (1−m)·old + m·batch); default 0.1. */
  bnMomentum?: number;
  /** Initializers to train besides the default set (any float initializer, e.g. a filter bank behind a MatMul). */
  trainable?: readonly string[];
  /**
   * Initializers that become step-model inputs fed on every step but never updated nor carried
   * (derived tensors the trainer may replace between steps, e.g. DCFF's fusion matrix).
   */
  fed?: readonly string[];
  /** Scalars added to the loss before the gradients are taken. */
  lossTerms?: readonly LossTerm[];
  /**
   * Learning-rate multipliers by parameter name (default 1): the parameter steps with
   * lr × scale under every optimizer (e.g. MSGC's gate networks learning faster than the
   * backbone, as the paper trains them).
   */
  lrScale?: ReadonlyMap<string, number>;
  /**
   * Float scalar values of the model the step graph also outputs, for progress (e.g. a
   * method's MACs share or mask density on each batch): TrainingGraph.outputs.monitored.
   */
  monitor?: readonly string[];
  /** Updates in the whole run (epochs × updates per epoch), for LossTermRun.progress. */
  totalSteps?: number;
  /**
   * A float scalar initializer of the model that the step graph replaces by its `step` input,
   * the 1-based count of updates: what the model computes from it (e.g. noise drawn in the
   * graph, seeded by the update) changes with every update and repeats on a resumed run.
   */
  stepValue?: string;
  /**
   * Values whose producing node is a straight-through estimator (Bengio et al. 2013): the
   * forward runs the node (Sign, Round, Floor or Ceil of one input), the backward passes the
   * gradient through unchanged, ∂input = ∂output (e.g. DGConv's binary gates).
   */
  straightThrough?: readonly string[];
}

/** An initializer turned into a step-model input that the trainer feeds (TrainingSpec.fed). */
export interface FedTensor {
  /** Initializer name in the inference model (= the step input's name). */
  readonly name: string;
  readonly input: string;
  /** Its value in the model the step graph was built from. */
  readonly init: Tensor;
}

/** One tensor that flows from a step's output into the next step's input. */
export interface CarriedTensor {
  /** Parameter name in the inference model (initializer name), or a state slot name. */
  readonly name: string;
  /** Input name in the step model. */
  readonly input: string;
  /** Output name in the step model with the updated value. */
  readonly output: string;
  /** Starting value: the initializer for parameters, zeros for optimizer slots. */
  readonly init: Tensor;
}

export interface TrainingGraph {
  /** The step model (standard ONNX ops only, runs on onnxruntime's CPU provider). */
  readonly model: Model;
  /** The batch size the step takes, where it was built for one (TrainingBuildOptions.batch); else any. */
  readonly batch?: number;
  readonly inputs: {
    /** Model data inputs, same names as in the inference model (batch dim symbolic unless `batch`). */
    readonly data: readonly string[];
    /** int64 [N] class indices. */
    readonly labels: string;
    /** float [N × classes], present for the distill loss. */
    readonly teacherLogits?: string;
    /** float scalar. */
    readonly lr: string;
    /** float scalar: 1-based update count (Adam bias correction). */
    readonly step: string;
  };
  /** Trainable parameters, in a stable order. */
  readonly params: readonly CarriedTensor[];
  /** Fed, never updated inputs (TrainingSpec.fed), in the spec's order. */
  readonly fed: readonly FedTensor[];
  /**
   * Everything else carried between steps: optimizer slots (momentum, Adam moments) and
   * BatchNormalization running mean/var (`name` = the inference initializer for those).
   */
  readonly state: readonly CarriedTensor[];
  readonly outputs: {
    /** float scalar, mean over the batch (plus the spec's loss terms). */
    readonly loss: string;
    /** Student logits for this batch (for training accuracy). */
    readonly logits: string;
    /** Step outputs of TrainingSpec.monitor, by the value's name in the model. */
    readonly monitored: ReadonlyMap<string, string>;
  };
}

/**
 * What fine-tuning does for a method beyond training the structured model with its zeros held.
 * Every field is optional; a method without hooks is fine-tuned as it is.
 */
export interface TrainingHooks {
  /**
   * The model to train instead of the structured one — e.g. DCFF's, whose compact weights are
   * computed in the graph from the full filter bank so that gradients reach every filter.
   */
  readonly model?: Model;
  /** Initializers of `model` that training must not update (derived tensors a hook refreshes). */
  readonly frozen?: readonly string[];
  /** Initializers of `model` to train besides the default set (e.g. DGConv's gates). */
  readonly trainable?: readonly string[];
  /** Scalars added to the training loss (see LossTerm). */
  readonly lossTerms?: readonly LossTerm[];
  /** Values of `model` whose producer is a straight-through estimator (TrainingSpec.straightThrough). */
  readonly straightThrough?: readonly string[];
  /** A float scalar initializer of `model` that reads the update count in training (TrainingSpec.stepValue). */
  readonly stepValue?: string;
  /** Learning-rate multipliers of initializers of `model` (TrainingSpec.lrScale). */
  readonly lrScale?: ReadonlyMap<string, number>;
  /** Float scalar values of `model` averaged over each epoch's updates and handed to `afterEpoch`. */
  readonly monitor?: readonly string[];
  /**
   * Before every epoch (0-based, of `epochs`): the current value of any initializer by name →
   * the derived tensors to replace (frozen ones), or nothing to keep them.
   */
  beforeEpoch?(
    epoch: number,
    epochs: number,
    current: (name: string) => Tensor,
  ): ReadonlyMap<string, Tensor> | undefined;
  /** After every epoch trained (0-based, of `epochs`): the `monitor` values' means over its updates. */
  afterEpoch?(epoch: number, epochs: number, monitored: ReadonlyMap<string, number>): void;
  /** The trained training model → the inference model the pipeline lowers, checks and writes. */
  finish?(trained: Model): Model;
  /**
   * A refit of the inference model (the local least-squares phase's) → the training model
   * whose forward equals it; without it, local fine-tuning is refused for a method that
   * trains another model.
   */
  adopt?(refitted: Model): Model;
}
