/**
 * Graph edits that several passes share and the IR does not offer directly: removing a node
 * together with the value_info entries of its outputs (Graph.remove leaves them, and the
 * encoder would write them for values that no longer exist), and turning a computed value
 * into an initializer that keeps the value's name (the name authority never releases a
 * name, so the initializer is registered under a temporary one and then moved).
 */
import type { Graph } from '../compiler/ir/graph.js';
import type { Node, Value } from '../compiler/ir/node.js';
import type { Tensor } from '../compiler/ir/tensor.js';

/** Remove a node whose outputs are unused and forget their value_info entries. */
export function removeNode(graph: Graph, node: Node): void {
  graph.remove(node);
  forgetValueInfo(graph, node.outputs);
}

/** Drop value_info entries of the given values; returns how many were dropped. */
export function forgetValueInfo(graph: Graph, values: Iterable<Value | undefined>): number {
  let dropped = 0;
  for (const value of values) {
    if (!value) continue;
    const at = graph.valueInfo.indexOf(value);
    if (at < 0) continue;
    graph.valueInfo.splice(at, 1);
    dropped++;
  }
  return dropped;
}

/**
 * Replace `value`, the only used output of its producer, by an initializer holding `tensor`
 * under the same name, and remove the producer. The value must not be a graph output.
 */
export function replaceWithInitializer(graph: Graph, value: Value, tensor: Tensor): Value {
  const producer = value.producer;
  if (!producer) throw new Error(`internal: '${value.name}' has no producer to replace`);
  return replaceOutputsWithInitializers(graph, producer, new Map([[value, tensor]]))[0]!;
}

/**
 * Replace outputs of `node` by initializers holding the given tensors, each under its value's
 * name, and remove the node; its other outputs must be unused. None may be a graph output.
 */
export function replaceOutputsWithInitializers(graph: Graph, node: Node, tensors: ReadonlyMap<Value, Tensor>): Value[] {
  const initializers = [...tensors].map(([value, tensor]) => {
    if (value.producer !== node) throw new Error(`internal: '${value.name}' is not an output of ${node}`);
    const initializer = graph.addInitializer(unclaimedName(graph, `${value.name}_folded`), tensor);
    value.replaceAllUsesWith(initializer);
    return { initializer, name: value.name };
  });
  removeNode(graph, node);
  // The node is gone, so each name is free in fact though still reserved: move onto it.
  return initializers.map(({ initializer, name }) => {
    graph.initializers.delete(initializer.name);
    initializer.name = name;
    initializer.constValue!.name = name;
    graph.initializers.set(name, initializer);
    return initializer;
  });
}

/** A name nobody holds, left unreserved: addInitializer claims it and refuses one from names.fresh(). */
function unclaimedName(graph: Graph, base: string): string {
  let name = base;
  for (let n = 1; graph.names.has(name); n++) name = `${base}_${n}`;
  return name;
}
