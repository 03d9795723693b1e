/**
 * Value and Node: SSA edges and the operations between them. A Value has one producer (a
 * node output, a graph input, or an initializer) and an ordered use list of
 * {node, inputIndex}; the only way to change an edge is Node.setInput, which keeps both
 * sides right, and everything else (replaceAllUsesWith, removal) is built on it.
 */
import type { DataType } from './dtype.js';
import type { Graph } from './graph.js';
import type { Tensor } from './tensor.js';
import { AttrType, type Attribute } from './attribute.js';
import type { ValueInfoShapes, WireShape } from './wire-shape.js';

/** A dimension: a number, a symbolic name, or null when unknown. */
export type Dim = number | string | null;

export interface TensorType {
  readonly dtype: DataType;
  /** undefined: rank unknown. */
  readonly shape?: readonly Dim[];
  readonly denotation?: string;
  readonly dimDenotations?: readonly (string | undefined)[];
}

export interface Use {
  readonly node: Node;
  readonly inputIndex: number;
}

/** Extra ValueInfoProto fields carried through unchanged. */
export interface ValueInfoExtras {
  docString?: string;
  metadataProps?: [string, string][];
  /** A non-tensor TypeProto (sequence, map, optional, sparse, opaque), decoded and kept as is. */
  typeProto?: unknown;
  /** How each decoded ValueInfoProto of the value wrote its fields (presence, unknown fields). */
  wire?: ValueInfoShapes;
}

export class Value {
  name: string;
  /** Declared or assigned type; inference results live in side tables, not here. */
  type: TensorType | undefined;
  /** The initializer's tensor when this value is an initializer. */
  constValue: Tensor | undefined;
  info: ValueInfoExtras | undefined;
  /** The graph that defines this value (as input, initializer or node output). */
  readonly graph: Graph;
  #producer: Node | undefined;
  #outputIndex = -1;
  readonly #uses: Use[] = [];

  /** @internal created by Graph and Node only. */
  constructor(graph: Graph, name: string, type?: TensorType) {
    this.graph = graph;
    this.name = name;
    this.type = type;
  }

  get producer(): Node | undefined {
    return this.#producer;
  }

  /** Index among the producer's outputs (-1 when there is no producer). */
  get outputIndex(): number {
    return this.#outputIndex;
  }

  /** A copy of the use list, so callers may rewrite edges while walking it. */
  uses(): Use[] {
    return [...this.#uses];
  }

  get useCount(): number {
    return this.#uses.length;
  }

  isGraphInput(): boolean {
    return this.graph.inputs.includes(this);
  }

  isGraphOutput(): boolean {
    return this.graph.outputs.includes(this);
  }

  isInitializer(): boolean {
    return this.constValue !== undefined && this.graph.initializers.get(this.name) === this;
  }

  /** Point every use (and graph-output slot) of this value at `other`. */
  replaceAllUsesWith(other: Value): void {
    if (other === this) return;
    for (const use of this.uses()) use.node.setInput(use.inputIndex, other);
    const outputs = this.graph.outputs;
    for (let i = 0; i < outputs.length; i++) if (outputs[i] === this) outputs[i] = other;
  }

  /** @internal */
  _setProducer(node: Node | undefined, outputIndex: number): void {
    this.#producer = node;
    this.#outputIndex = outputIndex;
  }

  /** @internal */
  _addUse(node: Node, inputIndex: number): void {
    this.#uses.push({ node, inputIndex });
  }

  /** @internal */
  _removeUse(node: Node, inputIndex: number): void {
    const at = this.#uses.findIndex((u) => u.node === node && u.inputIndex === inputIndex);
    if (at < 0) throw new Error(`internal: use of '${this.name}' by '${node.name}' input ${inputIndex} is missing`);
    this.#uses.splice(at, 1);
  }
}

/** Extra NodeProto fields carried through unchanged. */
export interface NodeExtras {
  docString?: string;
  metadataProps?: [string, string][];
  overload?: string;
  /** Decoded NodeDeviceConfigurationProto list. */
  deviceConfigurations?: unknown[];
  /** How the decoded NodeProto wrote its fields (presence, unknown fields). */
  wire?: WireShape;
}

export interface NodeInit {
  name?: string;
  domain?: string;
  attributes?: Attribute[];
  /** Number of outputs, or explicit output names ('' for an omitted optional output). */
  outputs?: number | readonly string[];
  extras?: NodeExtras;
}

export class Node {
  opType: string;
  domain: string;
  name: string;
  readonly attributes = new Map<string, Attribute>();
  extras: NodeExtras;
  readonly #inputs: (Value | undefined)[] = [];
  readonly #outputs: (Value | undefined)[] = [];
  /** @internal owner and list links, managed by Graph. */
  _graph: Graph | undefined;
  /** @internal */ _prev: Node | undefined;
  /** @internal */ _next: Node | undefined;
  /** @internal */ _removed = false;

  /** @internal nodes are made with Graph.createNode so their outputs get names. */
  constructor(
    graph: Graph,
    opType: string,
    inputs: readonly (Value | undefined)[],
    outputNames: readonly string[],
    init: NodeInit,
  ) {
    this.opType = opType;
    this.domain = init.domain ?? '';
    this.name = init.name ?? '';
    this.extras = init.extras ?? {};
    for (const a of init.attributes ?? []) this.attributes.set(a.name, a);
    for (const v of inputs) this.appendInput(v);
    outputNames.forEach((outName, index) => {
      if (outName === '') {
        this.#outputs.push(undefined);
        return;
      }
      const value = new Value(graph, outName);
      value._setProducer(this, index);
      this.#outputs.push(value);
    });
  }

  get graph(): Graph | undefined {
    return this._graph;
  }

  get inputs(): readonly (Value | undefined)[] {
    return this.#inputs;
  }

  get outputs(): readonly (Value | undefined)[] {
    return this.#outputs;
  }

  /** Input i, which must be present. */
  input(index: number): Value {
    const v = this.#inputs[index];
    if (!v) throw new Error(`node '${this.name}' (${this.opType}) has no input ${index}`);
    return v;
  }

  /** Output i, which must be present. */
  output(index = 0): Value {
    const v = this.#outputs[index];
    if (!v) throw new Error(`node '${this.name}' (${this.opType}) has no output ${index}`);
    return v;
  }

  /** Change input i, keeping both use lists right. `undefined` leaves an optional input empty. */
  setInput(index: number, value: Value | undefined): void {
    if (index < 0 || index >= this.#inputs.length)
      throw new RangeError(`node '${this.name}' has no input slot ${index}`);
    const old = this.#inputs[index];
    if (old === value) return;
    old?._removeUse(this, index);
    this.#inputs[index] = value;
    value?._addUse(this, index);
  }

  appendInput(value: Value | undefined): void {
    this.#inputs.push(value);
    value?._addUse(this, this.#inputs.length - 1);
  }

  /** Drop trailing input slots from `length` on. */
  truncateInputs(length: number): void {
    while (this.#inputs.length > length) {
      const index = this.#inputs.length - 1;
      this.#inputs[index]?._removeUse(this, index);
      this.#inputs.pop();
    }
  }

  /** @internal drop every input edge (used when the node leaves its graph). */
  _detachInputs(): void {
    this.truncateInputs(0);
  }

  attr(name: string): Attribute | undefined {
    return this.attributes.get(name);
  }

  setAttr(attribute: Attribute): void {
    this.attributes.set(attribute.name, attribute);
  }

  getInt(name: string, fallback: number): number;
  getInt(name: string): number | undefined;
  getInt(name: string, fallback?: number): number | undefined {
    const a = this.attributes.get(name);
    return a?.type === AttrType.INT ? a.value : fallback;
  }

  getInts(name: string, fallback: readonly number[]): readonly number[];
  getInts(name: string): readonly number[] | undefined;
  getInts(name: string, fallback?: readonly number[]): readonly number[] | undefined {
    const a = this.attributes.get(name);
    return a?.type === AttrType.INTS ? a.value : fallback;
  }

  getFloat(name: string, fallback: number): number;
  getFloat(name: string): number | undefined;
  getFloat(name: string, fallback?: number): number | undefined {
    const a = this.attributes.get(name);
    return a?.type === AttrType.FLOAT ? a.value : fallback;
  }

  getString(name: string, fallback: string): string;
  getString(name: string): string | undefined;
  getString(name: string, fallback?: string): string | undefined {
    const a = this.attributes.get(name);
    return a?.type === AttrType.STRING ? a.value : fallback;
  }

  /** Subgraphs held in GRAPH / GRAPHS attributes. */
  subgraphs(): Graph[] {
    const out: Graph[] = [];
    for (const a of this.attributes.values()) {
      if (a.type === AttrType.GRAPH) out.push(a.value);
      else if (a.type === AttrType.GRAPHS) out.push(...a.value);
    }
    return out;
  }

  toString(): string {
    return `${this.name || '<unnamed>'} (${this.domain ? `${this.domain}.` : ''}${this.opType})`;
  }
}
