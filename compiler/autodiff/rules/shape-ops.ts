/**
 * Gradients of ops that move elements without changing them (∂y incoming):
 *
 *   Flatten, Reshape, Squeeze, Unsqueeze   ∂x = reshape(∂y, shape(x))
 *   Transpose(perm)                         ∂x = Transpose(∂y, perm⁻¹)
 *   Concat(axis)                            ∂x_i = Split(∂y, sizes along axis)_i
 *   Split(axis)                             ∂x = Concat(∂y_i, or zeros for outputs off the path)
 *   Slice                                   ∂x = scatter of ∂y into zeros at the positions the
 *                                           slice read: the same Slice applied to an iota of x's
 *                                           flat indices gives them (any starts/ends/steps)
 *   GatherElements(axis)                    ∂x = ScatterElements(0, indices, ∂y, axis, reduction = add)
 *   Gather(axis, indices of rank ≤ 1)       ∂x = ScatterElements(0, indices broadcast to ∂y,
 *                                           ∂y, axis, reduction = add) — repeated indices sum
 */
import { attr } from '../../ir/attribute.js';
import type { Value } from '../../ir/node.js';
import type { GradientRule, RuleContext } from './context.js';
import { reshapeLike } from './helpers.js';

const reshapeBack: GradientRule = (c) => [reshapeLike(c, c.grad(0)!, c.node.input(0))];

const transpose: GradientRule = (c) => {
  const rank = c.shape(c.node.input(0)).length;
  const perm = c.node.getInts('perm') ?? Array.from({ length: rank }, (_, k) => rank - 1 - k);
  const inverse = Array<number>(rank);
  perm.forEach((from, to) => (inverse[from] = to));
  return [c.e.transpose(c.grad(0)!, inverse)];
};

function axisOf(c: RuleContext, rank: number, fallback: number): number {
  const axis = c.node.getInt('axis', fallback);
  return axis < 0 ? axis + rank : axis;
}

const concat: GradientRule = (c) => {
  const rank = c.shape(c.node.output(0)).length;
  const axis = axisOf(c, rank, 0);
  const present = c.node.inputs.filter((v): v is Value => v !== undefined);
  const sizes = present.map((v) => {
    const size = c.shape(v)[axis];
    return typeof size === 'number'
      ? size
      : c.unsupported(`input '${v.name}' has a non-static size along the concat axis ${axis}`);
  });
  const parts = c.e.ops('Split', [c.grad(0)!, c.e.int64(sizes)], present.length, [attr.int('axis', axis)]);
  let next = 0;
  return c.node.inputs.map((v) => (v ? parts[next++] : undefined));
};

const split: GradientRule = (c) => {
  const x = c.node.input(0);
  const axis = axisOf(c, c.shape(x).length, 0);
  const parts = c.node.outputs.map((y, index) => (y ? (c.grad(index) ?? c.e.zerosLike(y, c.dtype(x))) : undefined));
  return [
    c.e.op(
      'Concat',
      parts.filter((v): v is Value => v !== undefined),
      [attr.int('axis', axis)],
    ),
  ];
};

const slice: GradientRule = (c) => {
  const x = c.node.input(0);
  const e = c.e;
  const flat = e.int64([-1]);
  const count = e.op('Size', [x]);
  const iota = e.reshape(e.op('Range', [e.int64([0], []), count, e.int64([1], [])]), e.shapeOf(x));
  const read = e.op('Slice', [iota, ...c.node.inputs.slice(1)]);
  const zeros = e.reshape(e.zerosLike(x, c.dtype(x)), flat);
  const scattered = e.op(
    'ScatterElements',
    [zeros, e.reshape(read, flat), e.reshape(c.grad(0)!, flat)],
    [attr.int('axis', 0)],
  );
  return [e.reshape(scattered, e.shapeOf(x))];
};

const gather: GradientRule = (c) => {
  const [x, indices] = [c.node.input(0), c.node.input(1)];
  const rank = c.shape(x).length;
  const axis = axisOf(c, rank, 0);
  const indexRank = c.shape(indices).length;
  if (indexRank > 1) return c.unsupported(`Gather with rank-${indexRank} indices is not supported (rank ≤ 1 only)`);
  const dy = indexRank === 0 ? c.e.unsqueeze(c.grad(0)!, [axis]) : c.grad(0)!;
  const along = Array<number>(rank).fill(1);
  along[axis] = -1;
  const spread = c.e.op('Expand', [c.e.reshape(indices, c.e.int64(along)), c.e.shapeOf(dy)]);
  const zeros = c.e.zerosLike(x, c.dtype(x));
  return [c.e.op('ScatterElements', [zeros, spread, dy], [attr.int('axis', axis), attr.string('reduction', 'add')])];
};

const gatherElements: GradientRule = (c) => {
  const [x, indices] = [c.node.input(0), c.node.input(1)];
  const axis = axisOf(c, c.shape(x).length, 0);
  const zeros = c.e.zerosLike(x, c.dtype(x));
  return [
    c.e.op('ScatterElements', [zeros, indices, c.grad(0)!], [attr.int('axis', axis), attr.string('reduction', 'add')]),
  ];
};

export const SHAPE_RULES: Record<string, GradientRule> = {
  Flatten: reshapeBack,
  Reshape: reshapeBack,
  Squeeze: reshapeBack,
  Unsqueeze: reshapeBack,
  Transpose: transpose,
  Concat: concat,
  Split: split,
  Slice: slice,
  Gather: gather,
  GatherElements: gatherElements,
};
