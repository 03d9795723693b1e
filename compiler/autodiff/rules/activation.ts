/**
 * Gradients of pointwise activations (x input, y output, ∂y incoming):
 *
 *   Relu         ∂x = ∂y · [y > 0]
 *   Clip         ∂x = ∂y · [min ≤ x ≤ max]           (PyTorch's clamp convention)
 *   LeakyRelu    ∂x = ∂y · (x > 0 ? 1 : α)
 *   Sigmoid      ∂x = ∂y · y·(1 − y)
 *   Tanh         ∂x = ∂y · (1 − y²)
 *   HardSigmoid  ∂x = ∂y · α · [0 < αx + β < 1]
 *   HardSwish    ∂x = ∂y · (x < −3 ? 0 : x > 3 ? 1 : x/3 + ½)
 */
import type { Value } from '../../ir/node.js';
import type { GradientRule, RuleContext } from './context.js';

/** The incoming gradient of output 0 and the node's x, y and element type. */
function parts(c: RuleContext) {
  const dy = c.grad(0)!;
  const x = c.node.input(0);
  return { dy, x, y: c.node.output(0), dtype: c.dtype(x) };
}

const relu: GradientRule = (c) => {
  const { dy, y, dtype } = parts(c);
  const positive = c.e.op('Greater', [y, c.e.scalar(0, dtype)]);
  return [c.e.maskWhere(positive, dy, dtype)];
};

const clip: GradientRule = (c) => {
  if (c.needs(1) || c.needs(2)) c.unsupported('gradients with respect to Clip bounds are not supported');
  const { dy, x, dtype } = parts(c);
  const [min, max] = [c.node.inputs[1], c.node.inputs[2]];
  const conditions: Value[] = [];
  if (min) conditions.push(c.e.op('GreaterOrEqual', [x, min]));
  if (max) conditions.push(c.e.op('LessOrEqual', [x, max]));
  if (conditions.length === 0) return [dy];
  const inside = conditions.length === 1 ? conditions[0]! : c.e.op('And', conditions);
  return [c.e.maskWhere(inside, dy, dtype)];
};

const leakyRelu: GradientRule = (c) => {
  const { dy, x, dtype } = parts(c);
  const alpha = c.e.scalar(c.node.getFloat('alpha', 0.01), dtype);
  const positive = c.e.op('Greater', [x, c.e.scalar(0, dtype)]);
  return [c.e.op('Where', [positive, dy, c.e.mul(dy, alpha)])];
};

const sigmoid: GradientRule = (c) => {
  const { dy, y, dtype } = parts(c);
  const slope = c.e.mul(y, c.e.sub(c.e.scalar(1, dtype), y));
  return [c.e.mul(dy, slope)];
};

const tanh: GradientRule = (c) => {
  const { dy, y, dtype } = parts(c);
  return [c.e.mul(dy, c.e.sub(c.e.scalar(1, dtype), c.e.mul(y, y)))];
};

const hardSigmoid: GradientRule = (c) => {
  const { dy, x, dtype } = parts(c);
  const alpha = c.node.getFloat('alpha', 0.2);
  const t = c.e.add(c.e.mul(x, c.e.scalar(alpha, dtype)), c.e.scalar(c.node.getFloat('beta', 0.5), dtype));
  const inside = c.e.op('And', [
    c.e.op('Greater', [t, c.e.scalar(0, dtype)]),
    c.e.op('Less', [t, c.e.scalar(1, dtype)]),
  ]);
  return [c.e.maskWhere(inside, c.e.mul(dy, c.e.scalar(alpha, dtype)), dtype)];
};

const hardSwish: GradientRule = (c) => {
  const { dy, x, dtype } = parts(c);
  const middle = c.e.mul(dy, c.e.add(c.e.mul(x, c.e.scalar(1 / 3, dtype)), c.e.scalar(0.5, dtype)));
  const belowTop = c.e.op('Where', [c.e.op('Greater', [x, c.e.scalar(3, dtype)]), dy, middle]);
  return [c.e.maskWhere(c.e.op('GreaterOrEqual', [x, c.e.scalar(-3, dtype)]), belowTop, dtype)];
};

export const ACTIVATION_RULES: Record<string, GradientRule> = {
  Relu: relu,
  Clip: clip,
  LeakyRelu: leakyRelu,
  Sigmoid: sigmoid,
  Tanh: tanh,
  HardSigmoid: hardSigmoid,
  HardSwish: hardSwish,
};
