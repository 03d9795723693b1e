/**
 * Deep copy of a graph tree (If/Loop/Scan bodies included) without encoding and decoding.
 *
 * Every object the IR owns is new in the copy: graphs, nodes, values, tensors (their bytes
 * are copied, since passes may write into a tensor's typed array), node/graph/value extras.
 * Immutable parts are shared: attributes other than TENSOR/TENSORS/GRAPH/GRAPHS (they are
 * frozen), value types (readonly records, replaced rather than mutated) and the decoded
 * protos a model passes through (functions, training info, sparse initializers, …).
 *
 * Use lists keep their order: every edge is rewired value by value, use by use, so a walk
 * over `clone.uses()` visits the copies of the original's uses in the same order. The copy
 * gets a fresh name authority that holds exactly the names live in the tree (node names
 * and value names), as decoding the encoded model would.
 */
import { RegroupError } from '../errors.js';
import { AttrType, type Attribute } from './attribute.js';
import { Graph } from './graph.js';
import { Node, Value } from './node.js';
import type { Tensor } from './tensor.js';

/** Original → copy, for everything a clone made. */
export interface CloneMap {
  readonly nodes: Map<Node, Node>;
  readonly values: Map<Value, Value>;
  readonly graphs: Map<Graph, Graph>;
}

/** Copy a root graph; `graph.parent` must be undefined (clone the enclosing graph instead). */
export function cloneGraph(graph: Graph): { graph: Graph } & CloneMap {
  if (graph.parent) {
    throw new RegroupError(
      'invalid-ir',
      `graph '${graph.name}' is a subgraph; clone the graph (or model) that encloses it`,
    );
  }
  const map: CloneMap = { nodes: new Map(), values: new Map(), graphs: new Map() };
  const copy = copyStructure(graph, undefined, map);
  wireUses(graph, map);
  reserveNames(copy);
  return { graph: copy, ...map };
}

/** Graphs, values and nodes of the tree, without edges; node input slots start empty. */
function copyStructure(graph: Graph, parent: Graph | undefined, map: CloneMap): Graph {
  const copy = new Graph(graph.name, parent);
  map.graphs.set(graph, copy);
  copy.extras = copyGraphExtras(graph.extras);
  for (const [name, value] of graph.initializers) copy.initializers.set(name, copyValue(value, copy, map));
  for (const value of graph.inputs) copy.inputs.push(map.values.get(value) ?? copyValue(value, copy, map));
  for (const node of graph.nodes()) copy.append(copyNode(node, copy, map));
  for (const value of graph.outputs) copy.outputs.push(mapped(map, value, graph));
  for (const value of graph.valueInfo) copy.valueInfo.push(mapped(map, value, graph));
  return copy;
}

function copyNode(node: Node, graph: Graph, map: CloneMap): Node {
  const outputNames = node.outputs.map((v) => v?.name ?? '');
  const copy = new Node(
    graph,
    node.opType,
    node.inputs.map(() => undefined),
    outputNames,
    {
      name: node.name,
      domain: node.domain,
      extras: copyNodeExtras(node.extras),
    },
  );
  map.nodes.set(node, copy);
  node.outputs.forEach((value, index) => {
    if (!value) return;
    const out = copy.output(index);
    copyValueFields(value, out);
    map.values.set(value, out);
  });
  for (const a of node.attributes.values()) copy.attributes.set(a.name, copyAttribute(a, graph, map));
  return copy;
}

/** A graph input or initializer. */
function copyValue(value: Value, graph: Graph, map: CloneMap): Value {
  const copy = new Value(graph, value.name, value.type);
  copyValueFields(value, copy);
  map.values.set(value, copy);
  return copy;
}

function copyValueFields(from: Value, to: Value): void {
  to.type = from.type;
  to.constValue = from.constValue?.clone();
  if (from.info)
    to.info = {
      ...from.info,
      ...(from.info.metadataProps ? { metadataProps: copyProps(from.info.metadataProps) } : {}),
    };
}

function copyAttribute(a: Attribute, graph: Graph, map: CloneMap): Attribute {
  switch (a.type) {
    case AttrType.TENSOR:
      return Object.freeze({ ...a, value: a.value.clone() });
    case AttrType.TENSORS:
      return Object.freeze({ ...a, value: Object.freeze(a.value.map((t: Tensor) => t.clone())) });
    case AttrType.GRAPH:
      return Object.freeze({ ...a, value: copyStructure(a.value, graph, map) });
    case AttrType.GRAPHS:
      return Object.freeze({ ...a, value: Object.freeze(a.value.map((g: Graph) => copyStructure(g, graph, map))) });
    default:
      return a;
  }
}

/** Rebuild every edge in the original's use-list order. */
function wireUses(graph: Graph, map: CloneMap): void {
  for (const value of graph.values()) {
    const copy = map.values.get(value)!;
    for (const use of value.uses()) {
      const user = map.nodes.get(use.node);
      if (!user)
        throw new RegroupError(
          'invalid-ir',
          `value '${value.name}' is used by node ${use.node}, which is not in the cloned graph`,
        );
      user.setInput(use.inputIndex, copy);
    }
  }
  for (const node of graph.nodes()) {
    for (const sub of node.subgraphs()) wireUses(sub, map);
    node.inputs.forEach((value) => {
      if (value && !map.values.has(value)) {
        throw new RegroupError('invalid-ir', `node ${node} reads '${value.name}', which no graph being cloned defines`);
      }
    });
  }
}

/** The names a decoder of the encoded tree would reserve: node names and value names. */
function reserveNames(graph: Graph): void {
  for (const value of graph.values()) graph.names.reserve(value.name);
  for (const node of graph.nodes()) {
    graph.names.reserve(node.name);
    for (const sub of node.subgraphs()) reserveNames(sub);
  }
}

function mapped(map: CloneMap, value: Value, graph: Graph): Value {
  const copy = map.values.get(value);
  if (!copy)
    throw new RegroupError(
      'invalid-ir',
      `graph '${graph.name}' lists '${value.name}' as output or value_info but does not define it`,
    );
  return copy;
}

function copyProps(props: [string, string][]): [string, string][] {
  return props.map(([key, value]) => [key, value]);
}

function copyGraphExtras(extras: Graph['extras']): Graph['extras'] {
  const copy = { ...extras };
  if (extras.metadataProps) copy.metadataProps = copyProps(extras.metadataProps);
  if (extras.quantizationAnnotation) copy.quantizationAnnotation = [...extras.quantizationAnnotation];
  if (extras.sparseInitializers) copy.sparseInitializers = [...extras.sparseInitializers];
  if (extras.orphanValueInfo) copy.orphanValueInfo = [...extras.orphanValueInfo];
  return copy;
}

function copyNodeExtras(extras: Node['extras']): Node['extras'] {
  const copy = { ...extras };
  if (extras.metadataProps) copy.metadataProps = copyProps(extras.metadataProps);
  if (extras.deviceConfigurations) copy.deviceConfigurations = [...extras.deviceConfigurations];
  return copy;
}
