/**
 * Global fine-tuning of a compressed model: train every layer end to end with the
 * compression's zeros held at zero, optionally distilling from the dense model.
 *
 * Masks: for every float weight of a Conv, ConvTranspose, Gemm or MatMul (the inputs the
 * op-role table, compiler/ir/op-roles.ts, marks "masked") that holds exact zeros,
 * mask[i] = (w[i] ≠ 0 ? 1 : 0). The step model multiplies gradients and updates by
 * the mask (compiler/autodiff TrainingSpec.masks), so a pruned or regrouped connection — a
 * zero-padded group, a removed input channel — stays exactly zero through fine-tuning,
 * weight decay and momentum included.
 *
 * Distillation (Hinton et al. 2015): loss = α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y)
 * with the teacher run on the same augmented batch as the student.
 *
 * Hooks (a method's TrainingHooks, `options.hooks`): the masks come from the model the hooks
 * train (`hooks.model`), never from its fed tensors (`hooks.frozen`); the local phase refits
 * the structured model's own layers and is refused with hooks that train another model.
 *
 * Local first (SG-CNN's local + global scheme): with `local`, each layer is first refitted by
 * least squares to reproduce the dense model's layer outputs on unlabelled training images
 * (runtime/train/local.ts, zeros kept); 'only' stops there, 'then-global' fine-tunes the
 * refitted model globally. A resumed run skips the local phase: its state already holds the
 * parameters global training reached.
 */
import { RegroupError } from '../../compiler/errors.js';
import { DataType, isFloat } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import { opRole } from '../../compiler/ir/op-roles.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { fixedBatchOf } from '../calibrate.js';
import { evaluate, type AccuracyResult } from '../evaluate.js';
import { checkWritable, saveCheckpoint } from './checkpoint.js';
import { localReconstruct, type LocalProgress, type LocalResult } from './local.js';
import { train, type TrainOptions, type TrainResult } from './trainer.js';

/** Mask statistics: how many weights are masked and how many of their entries are held at zero. */
export interface MaskSummary {
  tensors: number;
  zeros: number;
  entries: number;
}

/**
 * One 0/1 mask per weight initializer (input 1 of Conv/ConvTranspose/Gemm, either input of
 * MatMul) that holds at least one exact zero: 1 where the weight is non-zero.
 */
export function masksFromZeros(model: Model): Map<string, Tensor> {
  const masks = new Map<string, Tensor>();
  for (const node of model.graph.nodes()) {
    for (const value of (opRole(node)?.masked ?? []).map((inputIndex) => node.inputs[inputIndex])) {
      const tensor = value?.isInitializer() ? value.constValue : undefined;
      if (!tensor || !isFloat(tensor.dtype) || masks.has(value!.name)) continue;
      const mask = zeroMask(tensor);
      if (mask) masks.set(value!.name, mask);
    }
  }
  return masks;
}

/** The 0/1 mask of a float tensor, in float32; undefined when it has no zero. */
function zeroMask(tensor: Tensor): Tensor | undefined {
  const values = tensor.toFloat64();
  const mask = new Float32Array(values.length);
  let zeros = 0;
  for (let i = 0; i < values.length; i++) {
    if (values[i] === 0) zeros++;
    else mask[i] = 1;
  }
  if (zeros === 0) return undefined;
  return Tensor.fromArray(DataType.FLOAT, tensor.dims, mask, { name: `${tensor.name}.mask` });
}

/** Count masked tensors, held zeros and entries. */
export function summarizeMasks(masks: ReadonlyMap<string, Tensor>): MaskSummary {
  let zeros = 0;
  let entries = 0;
  for (const mask of masks.values()) {
    const data = mask.data as Float32Array;
    entries += data.length;
    for (const v of data) if (v === 0) zeros++;
  }
  return { tensors: masks.size, zeros, entries };
}

/** A training run plus how to treat the compressed model's zeros and the optional local phase. */
export interface FinetuneOptions extends TrainOptions {
  /** Hold the model's exact weight zeros at zero (default true); merged with `masks`. */
  keepZeros?: boolean;
  /** Layer-wise reconstruction against `dense` first; 'only' skips global fine-tuning. */
  local?: 'only' | 'then-global';
  /** The dense model the local phase reproduces (node names must match the compressed model's). */
  dense?: Model;
  /** Calibration images of the local phase (default 512). */
  localSamples?: number;
  onLocalProgress?: (event: LocalProgress) => void;
}

/** The fine-tuned model and the phases that produced it. */
export interface FinetuneResult {
  /** The fine-tuned inference model. */
  model: Model;
  masks: MaskSummary;
  /** The local phase, when it ran. */
  local?: LocalResult;
  /** Global fine-tuning, unless `local` is 'only'. */
  global?: TrainResult;
  /** Test accuracy of the final model, when there is a test split. */
  final?: AccuracyResult;
  notes: string[];
}

/** Fine-tune a compressed model: optionally local, then globally with its zeros held (see the header). */
export async function finetune(model: Model, options: FinetuneOptions): Promise<FinetuneResult> {
  const trained = options.hooks?.model ?? model;
  const fed = new Set(options.hooks?.frozen ?? []);
  const masks = new Map(
    options.keepZeros === false ? [] : [...masksFromZeros(trained)].filter(([name]) => !fed.has(name)),
  );
  for (const [name, mask] of options.masks ?? []) masks.set(name, mask);
  const summary = summarizeMasks(masks);
  const notes: string[] = [];
  let start = model;
  let local: LocalResult | undefined;
  if (options.local && options.hooks?.model && !options.hooks.adopt)
    throw new RegroupError(
      'usage',
      'local fine-tuning refits the structured layers one by one; this method trains another graph (training hooks), so fine-tune it globally (drop --local)',
    );
  if (options.local === 'only' && options.resume)
    throw new RegroupError(
      'usage',
      '--resume continues global fine-tuning; with --local-only there is nothing to resume (run it again without --resume)',
    );
  if (options.local && options.resume)
    notes.push('local phase skipped: the resumed state already holds the parameters it led to');
  else if (options.local) {
    local = await runLocal(model, options);
    start = local.model;
  }
  if (options.local === 'only') return finishLocalOnly(local!, summary, options, notes);
  // A method that trains another graph carries the refit into it (hooks.adopt).
  const hooks =
    local && options.hooks?.adopt ? { ...options.hooks, model: options.hooks.adopt(local.model) } : options.hooks;
  const global = await train(start, { ...options, hooks, masks: masks.size > 0 ? masks : undefined });
  const result: FinetuneResult = { model: global.model, masks: summary, global, notes: [...notes, ...global.notes] };
  if (local) result.local = local;
  if (global.final) result.final = global.final;
  return result;
}

async function runLocal(model: Model, options: FinetuneOptions): Promise<LocalResult> {
  if (!options.dense)
    throw new RegroupError(
      'usage',
      "local fine-tuning reproduces the dense model's layers: pass the dense model (--teacher DENSE.onnx)",
    );
  if (options.checkpoint) checkWritable(options.checkpoint, options.protect);
  return localReconstruct(options.dense, model, options.train, options.spec, {
    ep: options.ep,
    threads: options.threads,
    seed: options.seed ?? 0,
    samples: options.localSamples,
    onProgress: options.onLocalProgress,
  });
}

/** 'only': evaluate and save the refitted model. */
async function finishLocalOnly(
  local: LocalResult,
  masks: MaskSummary,
  options: FinetuneOptions,
  notes: string[],
): Promise<FinetuneResult> {
  const result: FinetuneResult = { model: local.model, masks, local, notes };
  if (options.test) {
    result.final = await evaluate(local.model, fixedBatchOf(local.model), options.test, options.spec, {
      ep: options.ep,
      threads: options.threads,
      limit: options.evalLimit,
      batchSize: options.evalBatchSize ?? 64,
    });
  }
  if (options.checkpoint) saveCheckpoint(local.model, options.checkpoint, options.protect);
  return result;
}
