/**
 * Gradients of broadcasting arithmetic and simple unary maps (y = f(a, b), ∂y incoming;
 * each operand's gradient is summed back to its own shape, see sumToShape):
 *
 *   Add  ∂a = ∂y            ∂b = ∂y
 *   Sub  ∂a = ∂y            ∂b = −∂y
 *   Mul  ∂a = ∂y·b          ∂b = ∂y·a
 *   Div  ∂a = ∂y / b        ∂b = −∂y·y / b
 *   Neg −∂y   Identity ∂y   Exp ∂y·y   Log ∂y / a   Sqrt ∂y / (2y)   Reciprocal −∂y·y²
 *   Cast (float → float)    ∂y cast back to a's type
 */
import { attr } from '../../ir/attribute.js';
import { isFloat } from '../../ir/dtype.js';
import type { Value } from '../../ir/node.js';
import type { GradientRule, RuleContext } from './context.js';
import { sumToShape } from './helpers.js';

/** Gradients for two broadcast operands, each computed only when needed. */
function binary(c: RuleContext, da: () => Value, db: () => Value): (Value | undefined)[] {
  const outShape = c.shape(c.node.output(0));
  const [a, b] = [c.node.input(0), c.node.input(1)];
  return [
    c.needs(0) ? sumToShape(c, da(), outShape, a) : undefined,
    c.needs(1) ? sumToShape(c, db(), outShape, b) : undefined,
  ];
}

const add: GradientRule = (c) =>
  binary(
    c,
    () => c.grad(0)!,
    () => c.grad(0)!,
  );

const sub: GradientRule = (c) =>
  binary(
    c,
    () => c.grad(0)!,
    () => c.e.neg(c.grad(0)!),
  );

const mul: GradientRule = (c) => {
  const dy = c.grad(0)!;
  return binary(
    c,
    () => c.e.mul(dy, c.node.input(1)),
    () => c.e.mul(dy, c.node.input(0)),
  );
};

const div: GradientRule = (c) => {
  const dy = c.grad(0)!;
  const b = c.node.input(1);
  return binary(
    c,
    () => c.e.div(dy, b),
    () => c.e.neg(c.e.div(c.e.mul(dy, c.node.output(0)), b)),
  );
};

/** A unary rule from ∂x = f(∂y, x, y). */
const unary =
  (f: (c: RuleContext, dy: Value, x: Value, y: Value) => Value): GradientRule =>
  (c) => [f(c, c.grad(0)!, c.node.input(0), c.node.output(0))];

const cast: GradientRule = (c) => {
  const from = c.dtype(c.node.input(0));
  if (!isFloat(from)) c.unsupported('the input of this Cast is not a float tensor');
  return [c.e.op('Cast', [c.grad(0)!], [attr.int('to', from)])];
};

export const ELEMENTWISE_RULES: Record<string, GradientRule> = {
  Add: add,
  Sub: sub,
  Mul: mul,
  Div: div,
  Neg: unary((c, dy) => c.e.neg(dy)),
  Identity: unary((_c, dy) => dy),
  Exp: unary((c, dy, _x, y) => c.e.mul(dy, y)),
  Log: unary((c, dy, x) => c.e.div(dy, x)),
  Sqrt: unary((c, dy, x, y) => c.e.div(dy, c.e.mul(y, c.e.scalar(2, c.dtype(x))))),
  Reciprocal: unary((c, dy, _x, y) => c.e.neg(c.e.mul(dy, c.e.mul(y, y)))),
  Cast: cast,
};
