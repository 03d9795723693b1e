/**
 * Node attributes. An Attribute is immutable: a pass that changes one sets a new one. When it
 * was decoded from a file, `source` keeps the decoded AttributeProto so values the IR widens
 * (int64 beyond 2^53, non-UTF-8 strings) are written back exactly; tensor and graph
 * attributes are always re-encoded from the IR because their contents may change.
 */
import type { Graph } from './graph.js';
import type { Tensor } from './tensor.js';
import type { WireShape } from './wire-shape.js';

export enum AttrType {
  UNDEFINED = 0,
  FLOAT = 1,
  INT = 2,
  STRING = 3,
  TENSOR = 4,
  GRAPH = 5,
  FLOATS = 6,
  INTS = 7,
  STRINGS = 8,
  TENSORS = 9,
  GRAPHS = 10,
  SPARSE_TENSOR = 11,
  SPARSE_TENSORS = 12,
  TYPE_PROTO = 13,
  TYPE_PROTOS = 14,
}

export type AttrValue =
  | { type: AttrType.FLOAT; value: number }
  | { type: AttrType.INT; value: number }
  | { type: AttrType.STRING; value: string }
  | { type: AttrType.TENSOR; value: Tensor }
  | { type: AttrType.GRAPH; value: Graph }
  | { type: AttrType.FLOATS; value: readonly number[] }
  | { type: AttrType.INTS; value: readonly number[] }
  | { type: AttrType.STRINGS; value: readonly string[] }
  | { type: AttrType.TENSORS; value: readonly Tensor[] }
  | { type: AttrType.GRAPHS; value: readonly Graph[] }
  /** Sparse tensors and type protos are carried through as decoded protos. */
  | {
      type:
        | AttrType.SPARSE_TENSOR
        | AttrType.SPARSE_TENSORS
        | AttrType.TYPE_PROTO
        | AttrType.TYPE_PROTOS
        | AttrType.UNDEFINED;
      value: unknown;
    };

export type Attribute = AttrValue & {
  readonly name: string;
  readonly docString?: string;
  /** Set inside function bodies: the attribute refers to the calling node's attribute of this name. */
  readonly refAttrName?: string;
  /** The decoded proto this attribute came from, if unchanged since decoding. */
  readonly source?: unknown;
  /** For tensor and graph attributes (re-encoded from the IR): how the decoded proto wrote its fields. */
  readonly wire?: WireShape;
};

export const attr = {
  int: (name: string, value: number): Attribute => Object.freeze({ name, type: AttrType.INT, value }),
  float: (name: string, value: number): Attribute => Object.freeze({ name, type: AttrType.FLOAT, value }),
  string: (name: string, value: string): Attribute => Object.freeze({ name, type: AttrType.STRING, value }),
  ints: (name: string, value: readonly number[]): Attribute =>
    Object.freeze({ name, type: AttrType.INTS, value: Object.freeze([...value]) }),
  floats: (name: string, value: readonly number[]): Attribute =>
    Object.freeze({ name, type: AttrType.FLOATS, value: Object.freeze([...value]) }),
  strings: (name: string, value: readonly string[]): Attribute =>
    Object.freeze({ name, type: AttrType.STRINGS, value: Object.freeze([...value]) }),
  tensor: (name: string, value: Tensor): Attribute => Object.freeze({ name, type: AttrType.TENSOR, value }),
  graph: (name: string, value: Graph): Attribute => Object.freeze({ name, type: AttrType.GRAPH, value }),
};
