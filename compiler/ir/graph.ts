/**
 * Graph: an ordered node list (a linked list, so nodes may be removed while iterating),
 * graph inputs and outputs, initializers registered by name, a name authority shared with
 * every nested subgraph, a stable topological sort and a verifier that tests run after
 * every pass.
 */
import { RegroupError } from '../errors.js';
import type { Attribute } from './attribute.js';
import { cloneGraph, type CloneMap } from './clone.js';
import { Node, Value, type NodeInit, type TensorType } from './node.js';
import type { Tensor } from './tensor.js';
import type { WireShape } from './wire-shape.js';

/** Hands out names no other value or node in the graph tree uses. */
export class NameAuthority {
  readonly #taken = new Set<string>();
  readonly #counters = new Map<string, number>();

  reserve(name: string): void {
    if (name) this.#taken.add(name);
  }

  has(name: string): boolean {
    return this.#taken.has(name);
  }

  /** `base` if free, else `base_1`, `base_2`, … */
  fresh(base: string): string {
    const stem = base || 'v';
    if (!this.#taken.has(stem)) {
      this.#taken.add(stem);
      return stem;
    }
    let n = this.#counters.get(stem) ?? 1;
    while (this.#taken.has(`${stem}_${n}`)) n++;
    this.#counters.set(stem, n + 1);
    const name = `${stem}_${n}`;
    this.#taken.add(name);
    return name;
  }
}

export interface GraphExtras {
  docString?: string;
  metadataProps?: [string, string][];
  /** Decoded TensorAnnotation list, passed through. */
  quantizationAnnotation?: unknown[];
  /** Decoded SparseTensorProto list, passed through. */
  sparseInitializers?: unknown[];
  /** value_info entries naming values the graph does not define, passed through. */
  orphanValueInfo?: unknown[];
  /** How the decoded GraphProto wrote its fields (presence, unknown fields). */
  wire?: WireShape;
}

export class Graph {
  name: string;
  extras: GraphExtras = {};
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  /** Values with a declared value_info entry, in file order. */
  readonly valueInfo: Value[] = [];
  readonly initializers = new Map<string, Value>();
  /** The enclosing graph for If/Loop/Scan bodies. */
  readonly parent: Graph | undefined;
  readonly names: NameAuthority;
  /** @internal set while a decoder registers names it has already reserved. */
  _decoding = false;
  #head: Node | undefined;
  #tail: Node | undefined;
  #count = 0;

  constructor(name = 'main', parent?: Graph) {
    this.name = name;
    this.parent = parent;
    this.names = parent ? parent.names : new NameAuthority();
  }

  get nodeCount(): number {
    return this.#count;
  }

  /** Nodes in order. Removing the current (or any) node while iterating is safe. */
  *nodes(): IterableIterator<Node> {
    let node = this.#head;
    while (node) {
      if (!node._removed) yield node;
      node = node._next;
    }
  }

  /** A snapshot array of the nodes in order. */
  nodeList(): Node[] {
    return [...this.nodes()];
  }

  /** Make a node that belongs to this graph, not yet placed in the list. */
  createNode(opType: string, inputs: readonly (Value | undefined)[], init: NodeInit = {}): Node {
    const name =
      init.name !== undefined && init.name !== '' && !this.names.has(init.name)
        ? (this.names.reserve(init.name), init.name)
        : (init.name ?? this.names.fresh(opType));
    const outputs = init.outputs ?? 1;
    const outputNames =
      typeof outputs === 'number'
        ? Array.from({ length: outputs }, (_, i) => this.names.fresh(`${name || opType}_out${outputs > 1 ? i : ''}`))
        : outputs.map((o) => {
            if (o !== '') this.names.reserve(o);
            return o;
          });
    return new Node(this, opType, inputs, outputNames, { ...init, name });
  }

  /** Create a node and append it at the end of the list. */
  addNode(opType: string, inputs: readonly (Value | undefined)[], init: NodeInit = {}): Node {
    return this.append(this.createNode(opType, inputs, init));
  }

  append(node: Node): Node {
    return this.#link(node, this.#tail, undefined);
  }

  insertBefore(ref: Node, node: Node): Node {
    this.#owned(ref);
    return this.#link(node, ref._prev, ref);
  }

  insertAfter(ref: Node, node: Node): Node {
    this.#owned(ref);
    return this.#link(node, ref, ref._next);
  }

  /** Remove a node whose outputs are no longer used; its input edges are dropped. */
  remove(node: Node): void {
    this.#owned(node);
    for (const out of node.outputs) {
      if (!out) continue;
      if (out.useCount > 0)
        throw new RegroupError(
          'invalid-ir',
          `cannot remove node ${node}: output '${out.name}' still has ${out.useCount} use(s)`,
        );
      if (this.outputs.includes(out))
        throw new RegroupError('invalid-ir', `cannot remove node ${node}: output '${out.name}' is a graph output`);
    }
    node._detachInputs();
    for (const out of node.outputs) {
      const at = out ? this.valueInfo.indexOf(out) : -1;
      if (at >= 0) this.valueInfo.splice(at, 1);
    }
    if (node._prev) node._prev._next = node._next;
    else this.#head = node._next;
    if (node._next) node._next._prev = node._prev;
    else this.#tail = node._prev;
    node._removed = true;
    node._graph = undefined;
    this.#count--;
  }

  addInput(name: string, type?: TensorType): Value {
    const value = new Value(this, this.#claim(name), type);
    this.inputs.push(value);
    return value;
  }

  /**
   * Register an initializer; its value gets the tensor's dtype and dims as type. With
   * `fresh`, `name` is a base and a free variant of it is used.
   */
  addInitializer(name: string, tensor: Tensor, options: { fresh?: boolean } = {}): Value {
    const value = new Value(this, options.fresh ? this.names.fresh(name) : this.#claim(name), {
      dtype: tensor.dtype,
      shape: [...tensor.dims],
    });
    tensor.name = value.name;
    value.constValue = tensor;
    this.initializers.set(value.name, value);
    return value;
  }

  /** Replace an initializer's tensor (e.g. pruned weights); the value's type follows. */
  setInitializer(value: Value, tensor: Tensor): void {
    if (this.initializers.get(value.name) !== value)
      throw new RegroupError('invalid-ir', `'${value.name}' is not an initializer of graph '${this.name}'`);
    tensor.name = value.name;
    value.constValue = tensor;
    value.type = { ...value.type, dtype: tensor.dtype, shape: [...tensor.dims] };
  }

  removeInitializer(value: Value): void {
    if (value.useCount > 0)
      throw new RegroupError(
        'invalid-ir',
        `cannot remove initializer '${value.name}': it has ${value.useCount} use(s)`,
      );
    this.initializers.delete(value.name);
    value.constValue = undefined;
    const inputAt = this.inputs.indexOf(value);
    if (inputAt >= 0) this.inputs.splice(inputAt, 1);
    const infoAt = this.valueInfo.indexOf(value);
    if (infoAt >= 0) this.valueInfo.splice(infoAt, 1);
  }

  /**
   * Rename a value defined in this graph. Node inputs, graph inputs/outputs and value_info
   * hold the value itself and follow; an initializer keeps its place in the initializer
   * order and its tensor takes the new name. The new name must be free in the whole graph
   * tree (the old one stays reserved, so later fresh names never reuse it).
   */
  renameValue(value: Value, newName: string): void {
    if (value.graph !== this)
      throw new RegroupError('invalid-ir', `cannot rename '${value.name}': it is not defined in graph '${this.name}'`);
    if (newName === value.name) return;
    if (newName === '') throw new RegroupError('invalid-ir', `cannot rename '${value.name}' to an empty name`);
    if (this.names.has(newName))
      throw new RegroupError('invalid-ir', `cannot rename '${value.name}' to '${newName}': the name is already used`);
    const wasInitializer = this.initializers.get(value.name) === value;
    this.names.reserve(newName);
    const oldName = value.name;
    value.name = newName;
    if (!wasInitializer) return;
    const entries = [...this.initializers].map(([name, v]) => [name === oldName ? newName : name, v] as const);
    this.initializers.clear();
    for (const [name, v] of entries) this.initializers.set(name, v);
    value.constValue!.name = newName;
  }

  /**
   * A deep copy of this root graph and its subgraphs, with the original → copy maps of
   * nodes, values and graphs (see clone.ts for what is copied and what is shared).
   */
  clone(): { graph: Graph } & CloneMap {
    return cloneGraph(this);
  }

  /** Every value defined here: inputs, initializers, node outputs. */
  *values(): IterableIterator<Value> {
    const seen = new Set<Value>();
    for (const v of this.inputs) if (!seen.has(v)) seen.add(v), yield v;
    for (const v of this.initializers.values()) if (!seen.has(v)) seen.add(v), yield v;
    for (const node of this.nodes()) for (const v of node.outputs) if (v) yield v;
  }

  /** name → value over this graph's own values. */
  valueMap(): Map<string, Value> {
    const map = new Map<string, Value>();
    for (const v of this.values()) map.set(v.name, v);
    return map;
  }

  /** Stable topological order: a node moves only when it must come after an input's producer. */
  sort(): void {
    const nodes = this.nodeList();
    const position = new Map(nodes.map((n, i) => [n, i] as const));
    const pending = new Map<Node, number>();
    const dependents = new Map<Node, Node[]>();
    for (const node of nodes) {
      const producers = new Set<Node>();
      for (const v of capturedInputs(node)) {
        const p = ancestorProducer(v, this);
        if (p && p !== node && position.has(p)) producers.add(p);
      }
      pending.set(node, producers.size);
      for (const p of producers) (dependents.get(p) ?? dependents.set(p, []).get(p)!).push(node);
    }
    const ready = new MinHeap<Node>((a, b) => position.get(a)! - position.get(b)!);
    for (const node of nodes) if (pending.get(node) === 0) ready.push(node);
    const order: Node[] = [];
    while (ready.size > 0) {
      const node = ready.pop();
      order.push(node);
      for (const d of dependents.get(node) ?? []) {
        const left = pending.get(d)! - 1;
        pending.set(d, left);
        if (left === 0) ready.push(d);
      }
    }
    if (order.length !== nodes.length) {
      const stuck = nodes.find((n) => pending.get(n)! > 0)!;
      throw new RegroupError('invalid-ir', `graph '${this.name}' has a cycle through node ${stuck}`);
    }
    this.#head = this.#tail = undefined;
    for (const node of order) {
      node._prev = this.#tail;
      node._next = undefined;
      if (this.#tail) this.#tail._next = node;
      else this.#head = node;
      this.#tail = node;
    }
  }

  /** Check ownership, unique names, def-before-use, use lists, initializer shapes; throws on the first problem. */
  verify(): void {
    verifyGraph(this, new Set());
  }

  #claim(name: string): string {
    if (this.names.has(name) && !this._decoding)
      throw new RegroupError('invalid-ir', `value name '${name}' is already used in graph '${this.name}'`);
    this.names.reserve(name);
    return name;
  }

  #owned(node: Node): void {
    if (node._graph !== this || node._removed)
      throw new RegroupError('invalid-ir', `node ${node} is not in graph '${this.name}'`);
  }

  #link(node: Node, prev: Node | undefined, next: Node | undefined): Node {
    if (node._graph) throw new RegroupError('invalid-ir', `node ${node} is already in a graph`);
    node._graph = this;
    node._removed = false;
    node._prev = prev;
    node._next = next;
    if (prev) prev._next = node;
    else this.#head = node;
    if (next) next._prev = node;
    else this.#tail = node;
    this.#count++;
    return node;
  }
}

/** Inputs of a node plus the outer values its subgraphs read. */
function capturedInputs(node: Node): Value[] {
  const out: Value[] = node.inputs.filter((v): v is Value => v !== undefined);
  for (const sub of node.subgraphs()) {
    for (const inner of sub.nodes())
      for (const v of capturedInputs(inner)) if (v.graph !== sub && !isInside(v.graph, sub)) out.push(v);
  }
  return out;
}

function isInside(graph: Graph, ancestor: Graph): boolean {
  for (let g: Graph | undefined = graph; g; g = g.parent) if (g === ancestor) return true;
  return false;
}

/** The node of `graph` that (directly or through a subgraph) produces v. */
function ancestorProducer(v: Value, graph: Graph): Node | undefined {
  return v.graph === graph ? v.producer : undefined;
}

function verifyGraph(graph: Graph, visibleOuter: Set<Value>): void {
  const fail = (message: string): never => {
    throw new RegroupError('invalid-ir', `graph '${graph.name}': ${message}`);
  };
  const defined = new Set<Value>(visibleOuter);
  const names = new Set<string>();
  const define = (v: Value, what: string) => {
    if (v.graph !== graph) fail(`${what} '${v.name}' belongs to another graph`);
    if (names.has(v.name)) fail(`value name '${v.name}' is defined twice`);
    names.add(v.name);
    defined.add(v);
  };
  for (const v of graph.inputs) define(v, 'input');
  for (const [name, v] of graph.initializers) {
    if (v.name !== name) fail(`initializer registered as '${name}' is named '${v.name}'`);
    if (!v.constValue) fail(`initializer '${name}' has no tensor`);
    if (!graph.inputs.includes(v)) define(v, 'initializer');
    const shape = v.type?.shape;
    const dims = v.constValue!.dims;
    if (shape && (shape.length !== dims.length || shape.some((d, i) => typeof d === 'number' && d !== dims[i]))) {
      fail(`initializer '${name}' has dims [${dims.join(',')}] but its type says [${shape.join(',')}]`);
    }
  }
  let count = 0;
  for (const node of graph.nodes()) {
    count++;
    if (node.graph !== graph) fail(`node ${node} is listed but owned elsewhere`);
    node.inputs.forEach((v, index) => {
      if (!v) return;
      if (!defined.has(v)) fail(`node ${node} reads '${v.name}' before it is defined (or from outside the graph)`);
      if (!v.uses().some((u) => u.node === node && u.inputIndex === index))
        fail(`use list of '${v.name}' misses node ${node} input ${index}`);
    });
    for (const sub of node.subgraphs()) {
      if (sub.parent !== graph) fail(`subgraph '${sub.name}' of node ${node} does not name this graph as its parent`);
      verifyGraph(sub, defined);
    }
    node.outputs.forEach((v, index) => {
      if (!v) return;
      if (v.producer !== node || v.outputIndex !== index)
        fail(`output ${index} of node ${node} ('${v.name}') names another producer`);
      define(v, 'node output');
    });
  }
  if (count !== graph.nodeCount) fail(`node count ${graph.nodeCount} but ${count} nodes listed`);
  for (const v of defined) {
    if (v.graph !== graph) continue;
    for (const use of v.uses()) {
      if (use.node._removed || !use.node.graph) fail(`'${v.name}' is used by removed node ${use.node}`);
      if (use.node.inputs[use.inputIndex] !== v)
        fail(`use list of '${v.name}' names node ${use.node} input ${use.inputIndex}, which reads something else`);
    }
  }
  for (const v of graph.outputs) if (!defined.has(v)) fail(`graph output '${v.name}' is not defined`);
}

/** A small binary heap (stable sort needs a priority queue by original position). */
class MinHeap<T> {
  readonly #items: T[] = [];
  constructor(private readonly less: (a: T, b: T) => number) {}
  get size(): number {
    return this.#items.length;
  }
  push(item: T): void {
    const a = this.#items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.less(a[i]!, a[parent]!) >= 0) break;
      [a[i], a[parent]] = [a[parent]!, a[i]!];
      i = parent;
    }
  }
  pop(): T {
    const a = this.#items;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1,
          r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!) < 0) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!) < 0) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

export type { Attribute };
