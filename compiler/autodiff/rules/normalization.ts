/**
 * Gradients of BatchNormalization in inference form (running statistics μ, σ² are
 * constants): with s = γ / √(σ² + ε) per channel and x̂ = (x − μ) / √(σ² + ε),
 *
 *   ∂x = ∂y · s      ∂γ = Σ_{n, spatial} ∂y · x̂      ∂β = Σ_{n, spatial} ∂y
 *
 * (Training-mode BatchNormalization, with batch statistics, is batchnorm-training.ts.)
 *
 * Dropout: a node in inference form (no training_mode input, or a constant false) is the
 * identity, forward and backward. With a constant true training_mode the forward draws a
 * mask and scales by 1/(1 − ratio); the gradient is ∂x = ∂y · mask / (1 − ratio), reading
 * the mask output that prepare.ts exposes.
 */
import { constantNumbers } from '../../ir/constants.js';
import type { Node, Value } from '../../ir/node.js';
import type { GradientRule, RuleContext } from './context.js';

/** A per-channel [C] value reshaped to broadcast against x: [C, 1, …]. */
function perChannel(c: RuleContext, v: Value, rank: number): Value {
  return rank > 2
    ? c.e.unsqueeze(
        v,
        Array.from({ length: rank - 2 }, (_, k) => k + 1),
      )
    : v;
}

const batchNorm: GradientRule = (c) => {
  if (c.needs(3) || c.needs(4)) c.unsupported('gradients with respect to the running mean/variance are not supported');
  if (c.node.getInt('training_mode', 0) === 1)
    c.unsupported(
      'training_mode = 1 BatchNormalization is differentiated through the training builder (lowerTrainingBatchNorms)',
    );
  const [x, gamma, mean, variance] = [c.node.input(0), c.node.input(1), c.node.input(3), c.node.input(4)];
  const rank = c.shape(x).length;
  const dtype = c.dtype(x);
  const dy = c.grad(0)!;
  const axes = [0, ...Array.from({ length: rank - 2 }, (_, k) => k + 2)];
  const invStd = c.e.op('Reciprocal', [
    c.e.op('Sqrt', [c.e.add(variance, c.e.scalar(c.node.getFloat('epsilon', 1e-5), dtype))]),
  ]);
  const dx = () => c.e.mul(dy, perChannel(c, c.e.mul(gamma, invStd), rank));
  const dGamma = () => {
    const xHat = c.e.mul(c.e.sub(x, perChannel(c, mean, rank)), perChannel(c, invStd, rank));
    return c.e.reduceSum(c.e.mul(dy, xHat), axes, false);
  };
  return [
    c.needs(0) ? dx() : undefined,
    c.needs(1) ? dGamma() : undefined,
    c.needs(2) ? c.e.reduceSum(dy, axes, false) : undefined,
  ];
};

/** The constant training_mode of a Dropout (false when absent); undefined when computed at run time. */
export function dropoutTraining(node: Node): boolean | undefined {
  const input = node.inputs[2];
  if (!input) return false;
  const values = constantNumbers(input);
  return values ? values[0] !== 0 : undefined;
}

const dropout: GradientRule = (c) => {
  const training = dropoutTraining(c.node);
  if (training === undefined) c.unsupported('training_mode is computed at run time; it must be a constant');
  if (!training) return [c.grad(0)!];
  const x = c.node.input(0);
  const ratio = c.node.inputs[1] ? constantNumbers(c.node.inputs[1])?.[0] : 0.5;
  if (ratio === undefined) return c.unsupported('the dropout ratio is computed at run time; it must be a constant');
  const mask = c.e.cast(c.node.output(1), c.dtype(x));
  return [c.e.mul(c.grad(0)!, c.e.mul(mask, c.e.scalar(1 / (1 - ratio), c.dtype(x))))];
};

/** A training-mode Dropout's gradient reads its mask output. */
export const NORMALIZATION_OUTPUTS: Record<string, (node: Node) => number> = {
  Dropout: (node) => (dropoutTraining(node) ? 2 : 0),
};

export const NORMALIZATION_RULES: Record<string, GradientRule> = { BatchNormalization: batchNorm, Dropout: dropout };
