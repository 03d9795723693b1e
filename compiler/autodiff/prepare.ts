/**
 * Forward-graph changes a backward pass depends on: some gradients read an optional
 * output the exporter left off (MaxPool's Indices, SoftmaxCrossEntropyLoss's log_prob,
 * a training Dropout's mask). ONNX nodes have a fixed output list, so such a node is
 * replaced by a copy with the extra outputs; the copy's outputs keep the old names (a
 * graph output named 'logits' stays 'logits') and the old values' types.
 */
import type { Graph } from '../ir/graph.js';
import type { Node } from '../ir/node.js';

/** Replace `node` by an identical node with at least `count` outputs; returns the new node. */
export function withOutputs(graph: Graph, node: Node, count: number): Node {
  if (node.outputs.length >= count && node.outputs.slice(0, count).every((v) => v !== undefined)) return node;
  const names = node.outputs.map((v) => v?.name ?? '');
  for (const v of node.outputs) if (v) v.name = graph.names.fresh(`${v.name}_superseded`);
  const outputNames = Array.from(
    { length: count },
    (_, index) => names[index] || graph.names.fresh(`${node.name || node.opType}_out${index}`),
  );
  const replacement = graph.createNode(node.opType, node.inputs, {
    name: node.name,
    domain: node.domain,
    attributes: [...node.attributes.values()],
    outputs: outputNames,
    extras: node.extras,
  });
  graph.insertBefore(node, replacement);
  node.outputs.forEach((old, index) => {
    if (!old) return;
    const fresh = replacement.output(index);
    fresh.type = old.type;
    old.replaceAllUsesWith(fresh);
  });
  graph.remove(node);
  return replacement;
}
