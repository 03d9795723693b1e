/**
 * Node correspondence between two models that are not clones of each other but were derived
 * one from the other by rewrites that keep value names — a fine-tuned model (the trainer
 * works on its own copies), a model saved and loaded again. Node names cannot serve (they
 * may be empty or repeated); a node's first output value name can: ONNX keeps value names
 * unique within a graph, and regroup's rewrites keep the names of the values they replace.
 * Where a clone map exists (Model.clone), use it instead.
 */
import type { Graph } from './graph.js';
import type { Node } from './node.js';

/**
 * For each of `nodes` (nodes of some graph), the node of `to` with the same op type whose
 * first output has the same name; nodes without a counterpart are left out.
 */
export function matchNodesByOutput(nodes: Iterable<Node>, to: Graph): Map<Node, Node> {
  const byOutput = new Map<string, Node>();
  for (const node of to.nodes()) {
    const out = node.outputs[0];
    if (out) byOutput.set(out.name, node);
  }
  const matched = new Map<Node, Node>();
  for (const node of nodes) {
    const out = node.outputs[0];
    const other = out ? byOutput.get(out.name) : undefined;
    if (other && other.opType === node.opType && other.domain === node.domain) matched.set(node, other);
  }
  return matched;
}
