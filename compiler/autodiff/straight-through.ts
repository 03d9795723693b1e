/**
 * Straight-through estimators (Bengio, Léonard & Courville 2013): a value computed by Sign,
 * Round, Floor or Ceil of one input is used as it is in the forward pass, and its gradient is
 * passed to that input unchanged, ∂input = ∂output — the derivative of the identity the
 * rounding stands for. Each such value becomes a one-node GradientRegion with that rule.
 */
import { RegroupError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import type { GradientRegion } from './rules/context.js';

/** Ops a straight-through estimator may wrap: one input, same shape out, zero gradient almost everywhere. */
const STRAIGHT_THROUGH_OPS = new Set(['Sign', 'Round', 'Floor', 'Ceil']);

/** One region per straight-through value: its producer, differentiated as the identity. */
export function straightThroughRegions(graph: Graph, names: readonly string[]): GradientRegion[] {
  const byName = graph.valueMap();
  return names.map((name) => {
    const value = byName.get(name);
    const node = value?.producer;
    if (!value || !node || !STRAIGHT_THROUGH_OPS.has(node.opType) || node.inputs.length !== 1)
      throw new RegroupError(
        'usage',
        `straight-through value '${name}' must be the output of a Sign, Round, Floor or Ceil node of the training model${node ? ` (it comes from ${node.opType} '${node.name}')` : ''}`,
      );
    return { output: value, inputs: [node.input(0)], nodes: new Set([node]), rule: (c) => [c.grad(0)] };
  });
}
