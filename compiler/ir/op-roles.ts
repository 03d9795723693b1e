/**
 * Op roles: what the compiler, the passes and the trainer need to know about ops that carry
 * weights, in one table. For a node of the default domain ('' or 'ai.onnx'):
 *
 *   op                  weight  bias  params  trained  masked  weight axes (out, in)
 *   Conv                1       2     1, 2    1, 2     1       out = dim 0, in = dim 1 (per group)
 *   ConvTranspose       1       2     1, 2    1, 2     1       out = dim 1 × group, in = dim 0
 *   Gemm                1       2     1, 2    1, 2     1       transB = 1: out = dim 0, in = dim 1;
 *                                                              transB = 0: out = dim 1, in = dim 0
 *   MatMul              1       —     0, 1    1        0, 1    out = last dim, in = second-to-last
 *   BatchNormalization  1 (γ)   2 (β) 1, 2    1, 2     —       per channel (not a linear layer)
 *   Instance/Layer/GroupNormalization  1 (γ)  2 (β)  1, 2  —  —
 *   PRelu               1 (slope) —   1       —        —
 *   QLinearConv         3       8     3, 8    —        —       (quantized forms: cost only,
 *   ConvInteger         1       —     1       —        —        integer weights count as
 *   QLinearMatMul       3       —     0, 3    —        —        parameters)
 *   MatMulInteger       1       —     0, 1    —        —
 *
 * "params": inputs the cost model counts as learnable parameters (running mean and variance
 * are not). "trained": inputs fine-tuning updates by default when they are float initializers.
 * "masked": inputs whose exact zeros a compressed model holds at zero while it trains (a
 * MatMul's constant may sit on either side). "weight axes" are those of the weight tensor at
 * the `weight` input of a linear layer; a grouped Conv's in axis counts channels per group.
 */
import type { Node } from './node.js';

export interface OpRole {
  /** Input index of the weight (normalizations: the scale γ; PRelu: the slope). */
  readonly weight: number;
  /** Input index of the bias (normalizations: the shift β); absent when the op has none. */
  readonly bias?: number;
  /** Inputs counted as learnable parameters by the cost model. */
  readonly params: readonly number[];
  /** Inputs updated by fine-tuning by default (when float initializers). */
  readonly trained: readonly number[];
  /** Inputs whose exact zeros compression creates and training must keep. */
  readonly masked: readonly number[];
  /** A float layer whose weight maps input channels to output channels (weightAxes applies). */
  readonly linear: boolean;
  /** Quantized ops: integer weights are parameters too. */
  readonly integer?: boolean;
}

const NORMALIZATION: OpRole = { weight: 1, bias: 2, params: [1, 2], trained: [], masked: [], linear: false };

/** The table (see the file header); keyed by op type of the default domain. */
export const OP_ROLES: ReadonlyMap<string, OpRole> = new Map<string, OpRole>([
  ['Conv', { weight: 1, bias: 2, params: [1, 2], trained: [1, 2], masked: [1], linear: true }],
  ['ConvTranspose', { weight: 1, bias: 2, params: [1, 2], trained: [1, 2], masked: [1], linear: true }],
  ['Gemm', { weight: 1, bias: 2, params: [1, 2], trained: [1, 2], masked: [1], linear: true }],
  ['MatMul', { weight: 1, params: [0, 1], trained: [1], masked: [0, 1], linear: true }],
  ['BatchNormalization', { ...NORMALIZATION, trained: [1, 2] }],
  ['InstanceNormalization', NORMALIZATION],
  ['LayerNormalization', NORMALIZATION],
  ['GroupNormalization', NORMALIZATION],
  ['PRelu', { weight: 1, params: [1], trained: [], masked: [], linear: false }],
  ['QLinearConv', { weight: 3, bias: 8, params: [3, 8], trained: [], masked: [], linear: false, integer: true }],
  ['ConvInteger', { weight: 1, params: [1], trained: [], masked: [], linear: false, integer: true }],
  ['QLinearMatMul', { weight: 3, params: [0, 3], trained: [], masked: [], linear: false, integer: true }],
  ['MatMulInteger', { weight: 1, params: [0, 1], trained: [], masked: [], linear: false, integer: true }],
]);

/** The role of a node's op, or undefined for ops without weights and for other domains. */
export function opRole(node: Node): OpRole | undefined {
  return node.domain === '' || node.domain === 'ai.onnx' ? OP_ROLES.get(node.opType) : undefined;
}

/** Whether the node's op maps input channels to output channels through a weight (Conv, ConvTranspose, Gemm, MatMul). */
export function isLinearLayer(node: Node): boolean {
  return opRole(node)?.linear === true;
}

/** Axes of a linear layer's weight: which carries output channels and which input channels. */
export interface WeightAxes {
  readonly out: number;
  readonly in: number;
}

/** The weight axes of a linear layer whose weight has rank `rank` (see the header); undefined for other ops. */
export function weightAxes(node: Node, rank: number): WeightAxes | undefined {
  if (!isLinearLayer(node)) return undefined;
  switch (node.opType) {
    case 'Conv':
      return { out: 0, in: 1 };
    case 'ConvTranspose':
      return { out: 1, in: 0 };
    case 'Gemm':
      return node.getInt('transB', 0) === 1 ? { out: 0, in: 1 } : { out: 1, in: 0 };
    default:
      return { out: rank - 1, in: rank - 2 };
  }
}

/**
 * Output channels of a linear layer from its weight dims: the out axis, times `group` for a
 * ConvTranspose (its dim 1 counts channels per group). Undefined for other ops.
 */
export function outputChannels(node: Node, weightDims: readonly number[]): number | undefined {
  const axes = weightAxes(node, weightDims.length);
  if (!axes) return undefined;
  const perAxis = weightDims[axes.out];
  return node.opType === 'ConvTranspose' && perAxis !== undefined ? perAxis * node.getInt('group', 1) : perAxis;
}

/** Input channels of a linear layer from its weight dims: the in axis, times `group` for a Conv. */
export function inputChannels(node: Node, weightDims: readonly number[]): number | undefined {
  const axes = weightAxes(node, weightDims.length);
  if (!axes) return undefined;
  const perAxis = weightDims[axes.in];
  return node.opType === 'Conv' && perAxis !== undefined ? perAxis * node.getInt('group', 1) : perAxis;
}
