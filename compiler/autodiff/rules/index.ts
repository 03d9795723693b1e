/**
 * The gradient rule table: ONNX op type (default domain) → rule, one file per op family,
 * and which ops' gradients read an optional output the forward node must expose.
 */
import type { Node } from '../../ir/node.js';
import { ACTIVATION_RULES } from './activation.js';
import type { GradientRule } from './context.js';
import { CONV_RULES } from './conv.js';
import { ELEMENTWISE_RULES } from './elementwise.js';
import { LINEAR_RULES } from './linear.js';
import { NORMALIZATION_OUTPUTS, NORMALIZATION_RULES } from './normalization.js';
import { POOL_OUTPUTS, POOL_RULES } from './pool.js';
import { REDUCE_RULES } from './reduce.js';
import { SHAPE_RULES } from './shape-ops.js';
import { SOFTMAX_OUTPUTS, SOFTMAX_RULES } from './softmax.js';

export const GRADIENT_RULES: Readonly<Record<string, GradientRule>> = {
  ...ACTIVATION_RULES,
  ...ELEMENTWISE_RULES,
  ...REDUCE_RULES,
  ...CONV_RULES,
  ...POOL_RULES,
  ...SHAPE_RULES,
  ...LINEAR_RULES,
  ...SOFTMAX_RULES,
  ...NORMALIZATION_RULES,
};

/** Op type → how many outputs the node needs for its gradient (0: as it is). */
export const REQUIRED_OUTPUTS: Readonly<Record<string, (node: Node) => number>> = {
  ...POOL_OUTPUTS,
  ...SOFTMAX_OUTPUTS,
  ...NORMALIZATION_OUTPUTS,
};
