/**
 * Gradients of Softmax, LogSoftmax and SoftmaxCrossEntropyLoss (opset ≥ 13 semantics: one
 * normalised axis). With y the output and ∂y incoming, along the axis:
 *
 *   Softmax     ∂x = y · (∂y − Σ ∂y·y)
 *   LogSoftmax  ∂x = ∂y − exp(y) · Σ ∂y
 *   SoftmaxCrossEntropyLoss(scores [N, C, …], labels [N, …] int64), p = exp(log_prob):
 *               ∂scores = (p − onehot(labels)) · ∂loss / count   (reduction 'mean', count = |labels|)
 *                       = (p − onehot(labels)) · ∂loss           ('sum')
 *                       = (p − onehot(labels)) · ∂loss[n, …]     ('none')
 *               The log_prob output is exposed by prepare.ts. Class weights and ignore_index
 *               are not supported.
 */
import type { GradientRule, RuleContext } from './context.js';

function softmaxAxis(c: RuleContext): number {
  const rank = c.shape(c.node.input(0)).length;
  const axis = c.node.getInt('axis', -1);
  return axis < 0 ? axis + rank : axis;
}

const softmax: GradientRule = (c) => {
  const y = c.node.output(0);
  const dy = c.grad(0)!;
  const dot = c.e.reduceSum(c.e.mul(dy, y), [softmaxAxis(c)], true);
  return [c.e.mul(y, c.e.sub(dy, dot))];
};

const logSoftmax: GradientRule = (c) => {
  const y = c.node.output(0);
  const dy = c.grad(0)!;
  const total = c.e.reduceSum(dy, [softmaxAxis(c)], true);
  return [c.e.sub(dy, c.e.mul(c.e.op('Exp', [y]), total))];
};

const softmaxCrossEntropy: GradientRule = (c) => {
  if (c.node.inputs[2]) c.unsupported('class weights are not supported');
  if (c.node.getInt('ignore_index') !== undefined) c.unsupported('ignore_index is not supported');
  if (c.grad(1)) c.unsupported('gradients through the log_prob output are not supported; use LogSoftmax for that');
  const [scores, labels] = [c.node.input(0), c.node.input(1)];
  const dtype = c.dtype(scores);
  const shape = c.shape(scores);
  const classes = shape[1];
  if (typeof classes !== 'number') return c.unsupported(`the class count of '${scores.name}' is not static`);
  const iota = c.e.int64(
    Array.from({ length: classes }, (_, k) => k),
    [1, classes, ...Array<number>(shape.length - 2).fill(1)],
  );
  const onehot = c.e.cast(c.e.op('Equal', [c.e.unsqueeze(labels, [1]), iota]), dtype);
  const diff = c.e.sub(c.e.op('Exp', [c.node.output(1)]), onehot);
  const dLoss = c.grad(0);
  if (!dLoss) return [];
  const reduction = c.node.getString('reduction', 'mean');
  if (reduction === 'none') return [c.e.mul(diff, c.e.unsqueeze(dLoss, [1]))];
  if (reduction === 'sum') return [c.e.mul(diff, dLoss)];
  const count = c.e.cast(c.e.op('Size', [labels]), dtype);
  return [c.e.mul(diff, c.e.div(dLoss, count))];
};

/** SoftmaxCrossEntropyLoss's gradient reads its log_prob output. */
export const SOFTMAX_OUTPUTS: Record<string, () => number> = { SoftmaxCrossEntropyLoss: () => 2 };

export const SOFTMAX_RULES: Record<string, GradientRule> = {
  Softmax: softmax,
  LogSoftmax: logSoftmax,
  SoftmaxCrossEntropyLoss: softmaxCrossEntropy,
};
