/**
 * Gradients of matrix products (∂Y incoming).
 *
 * Gemm: Y = α·op(A)·op(B) + β·C with op = transpose when transA / transB is set.
 *   ∂op(A) = α·∂Y·op(B)ᵀ  and  ∂op(B) = α·op(A)ᵀ·∂Y, written as one Gemm each:
 *     transA = 0: ∂A = Gemm(∂Y, B, transB = ¬transB)      transA = 1: ∂A = Gemm(B, ∂Y, transA = transB, transB = 1)
 *     transB = 0: ∂B = Gemm(A, ∂Y, transA = ¬transA)      transB = 1: ∂B = Gemm(∂Y, A, transA = 1, transB = transA)
 *   ∂C = β·∂Y summed to C's (broadcast) shape.
 *
 * MatMul (both operands of rank ≥ 2, batch axes broadcast):
 *   ∂A = ∂Y·Bᵀ,  ∂B = Aᵀ·∂Y  (transposing the last two axes), each summed to its own shape.
 */
import { attr } from '../../ir/attribute.js';
import type { Dim, Value } from '../../ir/node.js';
import type { GradientRule, RuleContext } from './context.js';
import { sumToShape } from './helpers.js';

function gemmNode(c: RuleContext, a: Value, b: Value, transA: number, transB: number, alpha: number): Value {
  return c.e.op('Gemm', [a, b], [attr.float('alpha', alpha), attr.int('transA', transA), attr.int('transB', transB)]);
}

const gemm: GradientRule = (c) => {
  const [a, b, bias] = [c.node.input(0), c.node.input(1), c.node.inputs[2]];
  const dy = c.grad(0)!;
  const transA = c.node.getInt('transA', 0);
  const transB = c.node.getInt('transB', 0);
  const alpha = c.node.getFloat('alpha', 1);
  const beta = c.node.getFloat('beta', 1);
  const da = () => (transA ? gemmNode(c, b, dy, transB, 1, alpha) : gemmNode(c, dy, b, 0, 1 - transB, alpha));
  const db = () => (transB ? gemmNode(c, dy, a, 1, transA, alpha) : gemmNode(c, a, dy, 1 - transA, 0, alpha));
  const dc = () => {
    const scaled = beta === 1 ? dy : c.e.mul(dy, c.e.scalar(beta, c.dtype(a)));
    return sumToShape(c, scaled, c.shape(c.node.output(0)), bias!);
  };
  return [c.needs(0) ? da() : undefined, c.needs(1) ? db() : undefined, bias && c.needs(2) ? dc() : undefined];
};

/** Swap the last two axes of a rank-`rank` value. */
function swapLast(c: RuleContext, v: Value, rank: number): Value {
  const perm = Array.from({ length: rank }, (_, k) => k);
  [perm[rank - 2], perm[rank - 1]] = [rank - 1, rank - 2];
  return c.e.transpose(v, perm);
}

const matMul: GradientRule = (c) => {
  const [a, b] = [c.node.input(0), c.node.input(1)];
  const [aShape, bShape] = [c.shape(a), c.shape(b)];
  if (aShape.length < 2 || bShape.length < 2)
    c.unsupported('MatMul with a 1-D operand is not supported; reshape it to 2-D');
  const y = c.shape(c.node.output(0));
  const batch = y.slice(0, -2);
  const dy = c.grad(0)!;
  const withLast = (shape: readonly Dim[]): Dim[] => [...batch, ...shape.slice(-2)];
  const da = () => sumToShape(c, c.e.op('MatMul', [dy, swapLast(c, b, bShape.length)]), withLast(aShape), a);
  const db = () => sumToShape(c, c.e.op('MatMul', [swapLast(c, a, aShape.length), dy]), withLast(bShape), b);
  return [c.needs(0) ? da() : undefined, c.needs(1) ? db() : undefined];
};

export const LINEAR_RULES: Record<string, GradientRule> = { Gemm: gemm, MatMul: matMul };
