/**
 * The contract between the shape-inference walk and its per-op rules: a rule reads its
 * node's inputs (types, shapes, followed elements) through a ShapeContext and sets output
 * types and elements on it. A rule that cannot proceed throws Unresolved; the walk then
 * leaves the node's outputs unknown and records an issue unless an input was already unknown.
 */
import { AttrType } from '../ir/attribute.js';
import type { DataType } from '../ir/dtype.js';
import type { Node } from '../ir/node.js';
import type { Dim, ShapeValue } from './shape-values.js';

/** Thrown by a rule (or a context accessor) when something it needs is not known. */
export class Unresolved extends Error {
  override readonly name = 'Unresolved';
}

export interface ShapeContext {
  readonly node: Node;
  /** Opset version of the default ONNX domain. */
  readonly opset: number;
  /** True when input slot `index` holds a value (optional inputs may be empty). */
  has(index: number): boolean;
  /** Element type of an input; throws Unresolved when unknown. */
  dtype(index: number): DataType;
  /** Shape of an input (dims may be null); throws Unresolved when the rank is unknown. */
  shape(index: number): readonly Dim[];
  /** Shape of an input, or undefined when absent or of unknown rank. */
  tryShape(index: number): readonly Dim[] | undefined;
  /** Elements of an input when inference follows them (shape values, small constants). */
  value(index: number): ShapeValue | undefined;
  /** Elements of an input that must all be numbers (axes, pads, scales); throws Unresolved otherwise. */
  numbers(index: number): number[];
  /** As numbers(), but undefined for an absent or empty optional input. */
  optionalNumbers(index: number): number[] | undefined;
  /** Set output `index`'s type; the element type defaults to input 0's. Absent outputs are skipped. */
  out(index: number, shape: readonly Dim[] | undefined, dtype?: DataType): void;
  /** Record the elements of output `index` (kept when the output is a small rank ≤ 1 tensor). */
  outValue(index: number, elements: ShapeValue | undefined): void;
}

/** A per-op rule. */
export type ShapeRule = (c: ShapeContext) => void;

/** A FLOATS attribute of a node. */
export function floatsAttr(node: Node, name: string): readonly number[] | undefined {
  const a = node.attr(name);
  return a?.type === AttrType.FLOATS ? a.value : undefined;
}

/** An axis in [0, rank), counting negative axes from the end; throws when out of range. */
export function normalizeAxis(axis: number, rank: number): number {
  const at = axis < 0 ? axis + rank : axis;
  if (at < 0 || at >= rank) throw new RangeError(`axis ${axis} is out of range for rank ${rank}`);
  return at;
}

/** Axes normalized and checked against a rank. */
export function normalizeAxes(axes: readonly number[], rank: number): number[] {
  return axes.map((axis) => normalizeAxis(axis, rank));
}

/** `[0, 1, …, count − 1]`. */
export function range(count: number): number[] {
  return Array.from({ length: count }, (_, k) => k);
}
