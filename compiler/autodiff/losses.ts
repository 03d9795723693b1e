/**
 * Loss graphs for training, on logits s [N, C], int64 labels y [N] and (distillation)
 * teacher logits t [N, C]; every loss is a float scalar, a mean over the batch.
 *
 *   cross-entropy            CE = −mean_n log softmax(s)[n, y_n]
 *   … with label smoothing ε (PyTorch's definition, targets (1 − ε)·onehot + ε/C):
 *                            (1 − ε)·CE + ε · (−mean_{n,c} log softmax(s)[n, c])
 *   distill (Hinton et al.)  α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α)·CE
 *                            KL = mean_n Σ_c p_t (log p_t − log p_s)   (PyTorch's 'batchmean')
 */
import { attr } from '../ir/attribute.js';
import type { DataType } from '../ir/dtype.js';
import type { Value } from '../ir/node.js';
import type { Emitter } from './emitter.js';
import type { LossSpec } from './types.js';

export interface LossInputs {
  readonly logits: Value;
  readonly labels: Value;
  readonly teacherLogits?: Value;
  readonly dtype: DataType;
}

/** Emit the loss of `spec` and return the scalar loss value. */
export function emitLoss(e: Emitter, spec: LossSpec, inputs: LossInputs): Value {
  if (spec.kind === 'cross-entropy') return smoothedCrossEntropy(e, inputs, spec.labelSmoothing ?? 0);
  if (!inputs.teacherLogits) throw new Error('internal: the distillation loss needs teacher logits');
  const kl = distillationKl(e, inputs.logits, inputs.teacherLogits, spec.temperature, inputs.dtype);
  const weighted = e.mul(kl, e.scalar(spec.alpha * spec.temperature ** 2, inputs.dtype));
  if (spec.alpha === 1) return weighted;
  return e.add(weighted, e.mul(crossEntropy(e, inputs), e.scalar(1 - spec.alpha, inputs.dtype)));
}

/**
 * Mean cross-entropy as −mean_n GatherElements(LogSoftmax(s), y)[n] (the same numbers as
 * SoftmaxCrossEntropyLoss, from ops shape inference follows; the [N, C] tensors are tiny).
 */
function crossEntropy(e: Emitter, inputs: LossInputs, logProbs = logSoftmax(e, inputs.logits)): Value {
  const picked = e.op('GatherElements', [logProbs, e.unsqueeze(inputs.labels, [1])], [attr.int('axis', 1)]);
  return e.neg(e.reduceMean(picked, [0, 1], false));
}

function logSoftmax(e: Emitter, logits: Value): Value {
  return e.op('LogSoftmax', [logits], [attr.int('axis', 1)]);
}

function smoothedCrossEntropy(e: Emitter, inputs: LossInputs, epsilon: number): Value {
  const logProbs = logSoftmax(e, inputs.logits);
  const ce = crossEntropy(e, inputs, logProbs);
  if (epsilon === 0) return ce;
  const uniform = e.neg(e.reduceMean(logProbs, [0, 1], false));
  return e.add(e.mul(ce, e.scalar(1 - epsilon, inputs.dtype)), e.mul(uniform, e.scalar(epsilon, inputs.dtype)));
}

/** mean_n Σ_c p_t·(log p_t − log p_s) at temperature T. */
function distillationKl(e: Emitter, student: Value, teacher: Value, temperature: number, dtype: DataType): Value {
  const invT = e.scalar(1 / temperature, dtype);
  const logStudent = e.op('LogSoftmax', [e.mul(student, invT)], [attr.int('axis', 1)]);
  const logTeacher = e.op('LogSoftmax', [e.mul(teacher, invT)], [attr.int('axis', 1)]);
  const perSample = e.reduceSum(e.mul(e.op('Exp', [logTeacher]), e.sub(logTeacher, logStudent)), [1], false);
  return e.reduceMean(perSample, [0], false);
}
