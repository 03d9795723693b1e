/**
 * Shape helpers shared by the gradient rules.
 *
 *   sumToShape   ∂L/∂a for a broadcast operand a: ReduceSum of the output gradient over the
 *                axes where a was stretched (leading axes a lacks, and axes where a has 1
 *                and the output does not), then Reshape to a's shape.
 *   reshapeLike  Reshape to a forward value's shape: a constant target when the shape is
 *                static or has one symbolic dim (written −1), else Shape(value) at run time.
 */
import type { Dim, Value } from '../../ir/node.js';
import type { RuleContext } from './context.js';

/** Static dims of a forward value, or a RegroupError naming the node and value. */
export function staticShape(c: RuleContext, value: Value): number[] {
  const shape = c.shape(value);
  if (!shape.every((d): d is number => typeof d === 'number')) {
    c.unsupported(
      `'${value.name}' has shape [${shape.map((d) => d ?? '?').join(', ')}]; its gradient needs static dims here (give the graph inputs static shapes except the batch)`,
    );
  }
  return [...shape] as number[];
}

/** Static dims from `from` on (channels and spatial dims behind a symbolic batch). */
export function staticTail(c: RuleContext, value: Value, from: number): number[] {
  const shape = c.shape(value);
  const tail = shape.slice(from);
  if (!tail.every((d): d is number => typeof d === 'number')) {
    c.unsupported(
      `'${value.name}' has shape [${shape.map((d) => d ?? '?').join(', ')}]; axes ${from}.. must be static for this gradient`,
    );
  }
  return tail as number[];
}

/** Reshape `x` to the shape of the forward value `like` (same element count). */
export function reshapeLike(c: RuleContext, x: Value, like: Value): Value {
  return c.e.reshape(x, shapeTarget(c, like));
}

/** A Reshape target reproducing `like`'s shape: constant where possible, Shape(like) otherwise. */
export function shapeTarget(c: RuleContext, like: Value): Value {
  const shape = c.shape(like);
  const unknown = shape.filter((d) => typeof d !== 'number').length;
  if (unknown === 0) return c.e.int64(shape as number[]);
  if (unknown === 1) return c.e.int64(shape.map((d) => (typeof d === 'number' ? d : -1)));
  return c.e.shapeOf(like);
}

/**
 * Reduce `grad` (shaped like the broadcast result `outShape`) to the shape of operand
 * `input`, summing over the axes along which `input` was broadcast.
 */
export function sumToShape(c: RuleContext, grad: Value, outShape: readonly Dim[], input: Value): Value {
  const inShape = c.shape(input);
  const lead = outShape.length - inShape.length;
  const axes: number[] = [];
  for (let axis = 0; axis < outShape.length; axis++) {
    const inDim = axis < lead ? undefined : inShape[axis - lead];
    if (inDim === undefined) axes.push(axis);
    else if (inDim === 1 && outShape[axis] !== 1) axes.push(axis);
    else if (inDim !== outShape[axis] && typeof inDim !== 'number') {
      c.unsupported(
        `cannot tell whether '${input.name}' (dim ${axis - lead} = ${inDim ?? '?'}) is broadcast against [${outShape.map((d) => d ?? '?').join(', ')}]; give the graph inputs static shapes`,
      );
    }
  }
  if (axes.length === 0) return grad;
  const summed = c.e.reduceSum(grad, axes, true);
  return lead === 0 ? summed : reshapeLike(c, summed, input);
}

/** Spatial attribute with a default of `fill` per spatial axis. */
export function intsOr(c: RuleContext, name: string, count: number, fill: number): number[] {
  return [...(c.node.getInts(name) ?? Array<number>(count).fill(fill))];
}
