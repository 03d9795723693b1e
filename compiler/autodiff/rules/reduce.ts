/**
 * Gradients of reductions over axes R of x (y = reduce(x), ∂y incoming):
 *
 *   ReduceSum   ∂x = broadcast(∂y)            ReduceMean   ∂x = broadcast(∂y) / ∏_{r∈R} |x_r|
 *
 * where broadcast re-inserts the reduced axes (when keepdims = 0) and expands to x's shape.
 * Axes come from the attribute or, where the opset moved them, from a constant input.
 */
import { constantNumbers } from '../../ir/constants.js';
import type { Value } from '../../ir/node.js';
import type { GradientRule, RuleContext } from './context.js';

/** Reduced axes, normalised; undefined means "all axes". */
function reducedAxes(c: RuleContext, rank: number): number[] {
  const node = c.node;
  const fromInput = node.inputs[1] !== undefined;
  const axes = fromInput ? constantNumbers(node.inputs[1]) : node.getInts('axes');
  if (fromInput && axes === undefined)
    c.unsupported('the reduction axes are computed at run time; they must be constant');
  if (!axes || axes.length === 0) {
    if (node.getInt('noop_with_empty_axes', 0) === 1) return [];
    return Array.from({ length: rank }, (_, k) => k);
  }
  return axes.map((a) => (a < 0 ? a + rank : a)).sort((a, b) => a - b);
}

/** ∂y broadcast back over the reduced axes to x's shape. */
function spread(c: RuleContext, axes: readonly number[]): Value {
  const dy = c.grad(0)!;
  const x = c.node.input(0);
  if (axes.length === 0) return dy;
  const kept = c.node.getInt('keepdims', 1) === 1 ? dy : c.e.unsqueeze(dy, axes);
  return c.e.op('Expand', [kept, c.e.shapeOf(x)]);
}

const reduceSum: GradientRule = (c) => {
  const rank = c.shape(c.node.input(0)).length;
  return [spread(c, reducedAxes(c, rank))];
};

const reduceMean: GradientRule = (c) => {
  const x = c.node.input(0);
  const shape = c.shape(x);
  const axes = reducedAxes(c, shape.length);
  const dims = axes.map((a) => shape[a]);
  const count = dims.every((d): d is number => typeof d === 'number')
    ? c.e.scalar(
        dims.reduce((p, d) => p * d, 1),
        c.dtype(x),
      )
    : c.e.div(c.e.cast(c.e.op('Size', [x]), c.dtype(x)), c.e.cast(c.e.op('Size', [c.node.output(0)]), c.dtype(x)));
  return [c.e.div(spread(c, axes), count)];
};

export const REDUCE_RULES: Record<string, GradientRule> = { ReduceSum: reduceSum, ReduceMean: reduceMean };
