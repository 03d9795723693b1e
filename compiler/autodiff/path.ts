/**
 * Which part of a graph reverse mode must differentiate: the values that depend on one of
 * the `wrt` values AND influence the loss. A node is on the path when one of its inputs
 * depends on a wrt value and one of its outputs reaches the loss; only those nodes get
 * backward nodes, and only their on-path inputs get gradients.
 */
import type { Graph } from '../ir/graph.js';
import type { Node, Value } from '../ir/node.js';

export interface GradientPath {
  /** Nodes on the path, in the graph's (topological) order. */
  readonly nodes: readonly Node[];
  /** Values on the path: depend on a wrt value and reach the loss. */
  readonly values: ReadonlySet<Value>;
}

/**
 * The nodes and values between `wrt` and `loss`; the graph must be topologically sorted.
 * Values `differentiable` rejects (integer shapes, boolean masks) carry no gradient.
 */
export function findPath(
  graph: Graph,
  wrt: readonly Value[],
  loss: Value,
  differentiable: (v: Value) => boolean = () => true,
): GradientPath {
  const order = graph.nodeList();
  const fromWrt = dependents(order, wrt, differentiable);
  const toLoss = influencers(order, loss, differentiable);
  const values = new Set([...fromWrt].filter((v) => toLoss.has(v)));
  const nodes = order.filter(
    (node) => node.inputs.some((v) => v && values.has(v)) && node.outputs.some((v) => v && values.has(v)),
  );
  return { nodes, values };
}

/** Values computed (transitively) from any of `sources`, sources included. */
function dependents(
  order: readonly Node[],
  sources: readonly Value[],
  differentiable: (v: Value) => boolean,
): Set<Value> {
  const reached = new Set(sources);
  for (const node of order) {
    if (!node.inputs.some((v) => v && reached.has(v))) continue;
    for (const out of node.outputs) if (out && differentiable(out)) reached.add(out);
  }
  return reached;
}

/** Values that `target` is computed from, target included. */
function influencers(order: readonly Node[], target: Value, differentiable: (v: Value) => boolean): Set<Value> {
  const reached = new Set([target]);
  for (let at = order.length - 1; at >= 0; at--) {
    const node = order[at]!;
    if (!node.outputs.some((v) => v && reached.has(v))) continue;
    for (const input of node.inputs) if (input && differentiable(input)) reached.add(input);
  }
  return reached;
}
