/**
 * Dimensions, symbolic dimension arithmetic, and shape values.
 *
 * A dimension (`Dim`) is a number, a symbol, or null when unknown. The symbols arithmetic
 * makes are monomials — an integer coefficient times a product of named symbols — written
 * canonically as `c*a*b` (names sorted, coefficient left out when it is 1):
 *
 *   batch · 512 = "512*batch"      "512*batch" / batch = 512      batch + batch = "2*batch"
 *
 * Division is kept only when it is exact, and a sum only when both terms have the same
 * symbols; anything else (batch + 1, batch / 3) and every operation on null is null. That is
 * enough for what CNN exports do with shapes: flatten [batch, C, H, W] to [batch, C·H·W] and
 * back, solve a Reshape's -1 against a symbolic batch, split or concatenate along it.
 *
 * A shape value is the element list of a small rank-0 or rank-1 tensor whose contents
 * inference follows (Shape outputs, integer constants, and what Gather, Concat, Slice,
 * arithmetic … make of them). Its elements are Dims too: Shape of [batch, 3] is
 * ['batch', 3], so PyTorch's Shape → Gather → Unsqueeze → Concat → Reshape chain folds to a
 * target shape ['batch', -1].
 */
import type { Dim } from '../ir/node.js';

export type { Dim };

/** The known elements of a small rank-0/1 tensor, flattened; a symbol stands for a dimension's size. */
export type ShapeValue = readonly Dim[];

/** An integer coefficient times a product of named symbols (sorted, repeats allowed). */
interface Monomial {
  readonly coef: number;
  readonly symbols: readonly string[];
}

function toMonomial(dim: number | string): Monomial {
  if (typeof dim === 'number') return { coef: dim, symbols: [] };
  let coef = 1;
  const symbols: string[] = [];
  for (const factor of dim.split('*')) {
    if (/^-?\d+$/.test(factor)) coef *= Number(factor);
    else symbols.push(factor);
  }
  return { coef, symbols: symbols.sort() };
}

function fromMonomial(m: Monomial): Dim {
  if (m.coef === 0 || m.symbols.length === 0) return m.coef;
  return (m.coef === 1 ? m.symbols : [String(m.coef), ...m.symbols]).join('*');
}

/** A dim in canonical form (symbol expressions reordered; a number stays a number). */
export function canonicalDim(dim: Dim): Dim {
  return typeof dim === 'string' ? fromMonomial(toMonomial(dim)) : dim;
}

/** True when two dims are known to be equal. */
export function sameDim(a: Dim, b: Dim): boolean {
  if (a === null || b === null) return false;
  return a === b || canonicalDim(a) === canonicalDim(b);
}

export function mulDim(a: Dim, b: Dim): Dim {
  if (a === null || b === null) return null;
  if (typeof a === 'number' && typeof b === 'number') return a * b;
  if (a === 0 || b === 0) return 0;
  // A symbol times a fraction (a float scale) is not a size this algebra can name.
  if (!Number.isInteger(a) && typeof a === 'number') return null;
  if (!Number.isInteger(b) && typeof b === 'number') return null;
  const ma = toMonomial(a),
    mb = toMonomial(b);
  return fromMonomial({ coef: ma.coef * mb.coef, symbols: [...ma.symbols, ...mb.symbols].sort() });
}

/** a / b when the division is exact (b's symbols cancel and the coefficients divide), else null. */
export function divDim(a: Dim, b: Dim): Dim {
  if (a === null || b === null || b === 0) return null;
  const ma = toMonomial(a),
    mb = toMonomial(b);
  if (ma.coef % mb.coef !== 0) return null;
  const rest = [...ma.symbols];
  for (const symbol of mb.symbols) {
    const at = rest.indexOf(symbol);
    if (at < 0) return null;
    rest.splice(at, 1);
  }
  return fromMonomial({ coef: ma.coef / mb.coef, symbols: rest });
}

export function addDim(a: Dim, b: Dim): Dim {
  if (a === null || b === null) return null;
  if (typeof a === 'number' && typeof b === 'number') return a + b;
  if (a === 0) return b;
  if (b === 0) return a;
  const ma = toMonomial(a),
    mb = toMonomial(b);
  if (ma.symbols.join('*') !== mb.symbols.join('*')) return null;
  return fromMonomial({ coef: ma.coef + mb.coef, symbols: ma.symbols });
}

export function subDim(a: Dim, b: Dim): Dim {
  return addDim(a, mulDim(b, -1));
}

/** Product of dims (1 for none); null if any is null. */
export function productOf(dims: readonly Dim[]): Dim {
  return dims.reduce<Dim>((acc, d) => mulDim(acc, d), 1);
}

/** Sum of dims; null unless every pair can be added. */
export function sumOf(dims: readonly Dim[]): Dim {
  return dims.reduce<Dim>((acc, d) => addDim(acc, d), 0);
}

/** A dim's value with each symbol bound by `bind` (a symbol it does not bind makes it undefined). */
export function evaluateDim(dim: Dim, bind: (symbol: string) => number | undefined): number | undefined {
  if (dim === null) return undefined;
  if (typeof dim === 'number') return dim;
  const m = toMonomial(dim);
  let result = m.coef;
  for (const symbol of m.symbols) {
    const size = bind(symbol);
    if (size === undefined) return undefined;
    result *= size;
  }
  return result;
}

/** True when the rank and every dim are known (numbers or symbols). */
export function isFullyKnown(shape: readonly Dim[] | undefined): shape is readonly Dim[] {
  return shape?.every((d) => d !== null) === true;
}

/** Two known-or-not dims that describe the same axis: the known one wins. */
export function mergeDim(a: Dim, b: Dim): Dim {
  return a ?? b;
}

/**
 * One axis of numpy broadcasting. Numbers other than 1 must agree; a symbol against a
 * number n > 1 is n (a valid model makes the symbol 1 or n); two different symbols are unknown.
 */
export function broadcastDim(a: Dim, b: Dim): Dim {
  if (a === 1) return b;
  if (b === 1) return a;
  if (a === null || b === null) {
    const other = a ?? b;
    return typeof other === 'number' && other > 1 ? other : null;
  }
  if (sameDim(a, b)) return a;
  if (typeof a === 'number' && typeof b === 'number') throw new RangeError(`dims ${a} and ${b} do not broadcast`);
  if (typeof a === 'number') return a;
  if (typeof b === 'number') return b;
  return null;
}

/** Multidirectional (numpy) broadcasting of shapes aligned on their last axis. */
export function broadcastShapes(shapes: readonly (readonly Dim[])[]): Dim[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let fromEnd = rank; fromEnd >= 1; fromEnd--) {
    let dim: Dim = 1;
    for (const shape of shapes) {
      const at = shape.length - fromEnd;
      if (at >= 0) dim = broadcastDim(dim, shape[at]!);
    }
    out.push(dim);
  }
  return out;
}

/** Number of elements when every dim is a number, else undefined. */
export function staticSize(shape: readonly Dim[]): number | undefined {
  const size = productOf(shape);
  return typeof size === 'number' ? size : undefined;
}

// ---------------------------------------------------------------------------------------------
// Element-wise work on shape values

/**
 * Apply an element rule across values paired the way broadcasting pairs rank ≤ 1 tensors
 * (equal lengths, or length 1 against any); undefined when they do not pair up.
 */
export function zipValues(values: readonly ShapeValue[], rule: (elements: Dim[]) => Dim): Dim[] | undefined {
  const length = Math.max(...values.map((v) => v.length));
  if (values.some((v) => v.length !== length && v.length !== 1)) return undefined;
  return Array.from({ length }, (_, at) => rule(values.map((v) => (v.length === 1 ? v[0]! : v[at]!))));
}

/** Integer (truncating) or float division of elements; symbols only when exact. */
export function divElement(x: Dim, y: Dim, integer: boolean): Dim {
  if (typeof x === 'number' && typeof y === 'number') {
    if (y === 0) return null;
    return integer ? Math.trunc(x / y) : x / y;
  }
  return divDim(x, y);
}

/** Equality of elements as 1/0; unknown when symbols differ (two names may still be the same size). */
export function equalElement(x: Dim, y: Dim): Dim {
  if (x === null || y === null) return null;
  if (sameDim(x, y)) return 1;
  return typeof x === 'number' && typeof y === 'number' ? 0 : null;
}

/** A numeric comparison of elements as 1/0 (unknown for symbols). */
export function compareElement(x: Dim, y: Dim, test: (a: number, b: number) => boolean): Dim {
  return typeof x === 'number' && typeof y === 'number' ? (test(x, y) ? 1 : 0) : null;
}

/** A numeric function of two numbers; unknown for symbols. */
export function numericElement(x: Dim, y: Dim, fn: (a: number, b: number) => number): Dim {
  return typeof x === 'number' && typeof y === 'number' ? fn(x, y) : null;
}

/** The elements ONNX Slice keeps along one axis of length `length`, as [start, count, step]. */
export function sliceRange(length: number, start: number, end: number, step: number): [number, number, number] {
  if (step === 0) throw new RangeError('Slice step 0');
  const clamp = (x: number, lo: number, hi: number) => Math.min(Math.max(x, lo), hi);
  let first = start < 0 ? start + length : start;
  let last = end < 0 ? end + length : end;
  if (step > 0) {
    first = clamp(first, 0, length);
    last = clamp(last, 0, length);
  } else {
    first = clamp(first, 0, length - 1);
    last = clamp(last, -1, length - 1);
  }
  const count = Math.max(0, Math.ceil((last - first) / step));
  return [first, count, step];
}

/** Elements [start:end:step] of a 1-D value. */
export function sliceElements(elements: ShapeValue, start: number, end: number, step: number): Dim[] {
  const [first, count] = sliceRange(elements.length, start, end, step);
  return Array.from({ length: count }, (_, k) => elements[first + k * step]!);
}

/** data[indices] for a 1-D value (negative indices count from the end); undefined when out of range. */
export function gatherElements(data: ShapeValue, indices: ShapeValue): Dim[] | undefined {
  const out: Dim[] = [];
  for (const index of indices) {
    if (typeof index !== 'number') return undefined;
    const at = index < 0 ? index + data.length : index;
    if (at < 0 || at >= data.length) return undefined;
    out.push(data[at]!);
  }
  return out;
}

/** What Cast does to an element: integers truncate, bool is 0/1; a symbol (a size) survives any numeric cast. */
export function castElement(x: Dim, toInteger: boolean, toBool: boolean): Dim {
  if (typeof x !== 'number') return toBool ? null : x;
  if (toBool) return x !== 0 ? 1 : 0;
  return toInteger ? Math.trunc(x) : x;
}
