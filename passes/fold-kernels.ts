/**
 * ONNX semantics, on constant tensors, of the ops fold-constants evaluates. A kernel returns
 * the output tensor or a reason it does not apply; it never throws on odd input, because
 * declining to fold is always safe.
 *
 * - Data movement (Identity, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat,
 *   Gather) copies stored elements, so float16/bfloat16 bit patterns pass through untouched.
 * - Add/Sub/Mul/Div take float32 or int64 with numpy broadcasting. float32 is computed in
 *   float64 and rounded once with Math.fround: for + − × ÷ that is the correctly rounded IEEE
 *   result, the same onnxruntime gives, because float64 has more than 2·24 + 2 bits. int64
 *   wraps modulo 2^64; division truncates toward zero and is refused by zero or for MIN/−1.
 * - Cast among float32, float64, int32 and int64 only where the result is exact and defined:
 *   float → int truncates and is refused out of range or for NaN/∞; int64 → float32 is refused
 *   beyond 2^53, where converting through a float64 would round twice.
 * - ConstantOfShape, Expand and Slice copy stored elements too (a fill repeats the `value`
 *   attribute's bits). Range folds integers only: onnxruntime builds a float Range by repeated
 *   addition, whose rounding is its own, so float Ranges are left to a runtime evaluator.
 * - No kernel makes a tensor of more than 2^28 elements (1 GiB of float32): the size is checked
 *   before anything is allocated.
 */
import { AttrType } from '../compiler/ir/attribute.js';
import { DataType, dtypeInfo, type TypedArray } from '../compiler/ir/dtype.js';
import type { Node } from '../compiler/ir/node.js';
import { Tensor } from '../compiler/ir/tensor.js';

/** The folded output, or why the node is left alone. */
export type KernelResult = Tensor | string;

/** A node's constant inputs (undefined for an empty optional input) and the opset in force. */
export interface KernelArgs {
  readonly node: Node;
  readonly inputs: readonly (Tensor | undefined)[];
  readonly opset: number;
}

type Kernel = (args: KernelArgs) => KernelResult;
/** Indexable view over any numeric typed array (number or bigint elements). */
type Elements = { [index: number]: number | bigint; readonly length: number };

const product = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/** Row-major strides. */
function stridesOf(dims: readonly number[]): number[] {
  const strides = new Array<number>(dims.length).fill(1);
  for (let axis = dims.length - 2; axis >= 0; axis--) strides[axis] = strides[axis + 1]! * dims[axis + 1]!;
  return strides;
}

/** For each element of `outDims` in row-major order, the source offset Σ coord·sourceStrides. */
function mapIndices(outDims: readonly number[], sourceStrides: readonly number[]): Float64Array {
  const map = new Float64Array(product(outDims));
  const coord = new Array<number>(outDims.length).fill(0);
  let offset = 0;
  for (let i = 0; i < map.length; i++) {
    map[i] = offset;
    for (let axis = outDims.length - 1; axis >= 0; axis--) {
      coord[axis]!++;
      offset += sourceStrides[axis]!;
      if (coord[axis]! < outDims[axis]!) break;
      offset -= coord[axis]! * sourceStrides[axis]!;
      coord[axis] = 0;
    }
  }
  return map;
}

function allocate(like: Tensor, length: number): TypedArray {
  return new (like.data.constructor as new (n: number) => TypedArray)(length);
}

/** Copy elements of `source` picked by `map` into a new tensor of the same dtype. */
function pick(source: Tensor, dims: readonly number[], map: ArrayLike<number>): Tensor {
  const from = source.data as Elements;
  const out = allocate(source, map.length);
  const to = out as Elements;
  for (let i = 0; i < map.length; i++) to[i] = from[map[i]!]!;
  return Tensor.fromArray(source.dtype, dims, out);
}

/** Whether elements can be moved one by one (not strings, packed sub-byte or complex types). */
export function isMovable(dtype: DataType): boolean {
  const info = dtypeInfo(dtype);
  return info.array !== undefined && info.bits >= 8 && info.lanes === 1;
}

/** Same elements, new dims (a copy, so the result owns its buffer). */
function reshaped(t: Tensor, dims: readonly number[]): Tensor {
  return Tensor.fromArray(t.dtype, dims, t.data.slice());
}

/** Integers from an int64/int32 tensor, or undefined for any other dtype. */
function intsOf(t: Tensor | undefined): number[] | undefined {
  if (!t || (t.dtype !== DataType.INT64 && t.dtype !== DataType.INT32)) return undefined;
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

/** Normalise an axis against `rank`, or undefined when out of [-rank, rank). */
function normalizeAxis(axis: number, rank: number): number | undefined {
  const a = axis < 0 ? axis + rank : axis;
  return a >= 0 && a < rank ? a : undefined;
}

function normalizeAxes(axes: readonly number[], rank: number): number[] | undefined {
  const out = axes.map((a) => normalizeAxis(a, rank));
  if (out.some((a) => a === undefined) || new Set(out).size !== out.length) return undefined;
  return out as number[];
}

const identity: Kernel = ({ inputs: [data] }) => reshaped(data!, data!.dims);

const reshape: Kernel = ({ node, inputs: [data, shapeInput], opset }) => {
  const shape = opset < 5 ? node.getInts('shape') : intsOf(shapeInput);
  if (!shape) return 'shape is not a constant int64 list';
  const allowZero = node.getInt('allowzero', 0) === 1;
  const dims = shape.map((d, axis) => (d === 0 && !allowZero ? (data!.dims[axis] ?? NaN) : d));
  const inferred = dims.filter((d) => d === -1).length;
  if (dims.some((d) => Number.isNaN(d) || d < -1) || inferred > 1) return `invalid target shape [${shape}]`;
  const known = product(dims.filter((d) => d !== -1));
  if (inferred === 1) {
    if (known === 0 || data!.size % known !== 0) return `cannot infer -1 in [${shape}] for ${data!.size} elements`;
    dims[dims.indexOf(-1)] = data!.size / known;
  } else if (known !== data!.size) return `[${shape}] does not hold ${data!.size} elements`;
  return reshaped(data!, dims);
};

const flatten: Kernel = ({ node, inputs: [data] }) => {
  const rank = data!.dims.length;
  const raw = node.getInt('axis', 1);
  const axis = raw < 0 ? raw + rank : raw;
  if (axis < 0 || axis > rank) return `axis ${raw} is out of range for rank ${rank}`;
  return reshaped(data!, [product(data!.dims.slice(0, axis)), product(data!.dims.slice(axis))]);
};

const squeeze: Kernel = ({ node, inputs: [data, axesInput], opset }) => {
  const dims = data!.dims;
  const given = opset < 13 ? node.getInts('axes') : axesInput && intsOf(axesInput);
  if (opset >= 13 && axesInput && !given) return 'axes are not int64';
  const axes = given ? normalizeAxes(given, dims.length) : dims.flatMap((d, axis) => (d === 1 ? [axis] : []));
  if (!axes || axes.some((axis) => dims[axis] !== 1)) return `cannot squeeze axes [${given}] of [${dims}]`;
  return reshaped(
    data!,
    dims.filter((_, axis) => !axes.includes(axis)),
  );
};

const unsqueeze: Kernel = ({ node, inputs: [data, axesInput], opset }) => {
  const given = opset < 13 ? node.getInts('axes') : intsOf(axesInput);
  if (!given) return 'axes are missing or not int64';
  const rank = data!.dims.length + given.length;
  const axes = normalizeAxes(given, rank);
  if (!axes) return `invalid axes [${given}] for output rank ${rank}`;
  const rest = [...data!.dims];
  const dims = Array.from({ length: rank }, (_, axis) => (axes.includes(axis) ? 1 : rest.shift()!));
  return reshaped(data!, dims);
};

const transpose: Kernel = ({ node, inputs: [data] }) => {
  const dims = data!.dims;
  const perm = node.getInts('perm') ?? dims.map((_, axis) => dims.length - 1 - axis);
  const valid = perm.length === dims.length && normalizeAxes(perm, dims.length)?.every((p, i) => p === perm[i]);
  if (!valid) return `perm [${perm}] is not a permutation of rank ${dims.length}`;
  const strides = stridesOf(dims);
  return pick(
    data!,
    perm.map((p) => dims[p]!),
    mapIndices(
      perm.map((p) => dims[p]!),
      perm.map((p) => strides[p]!),
    ),
  );
};

const concat: Kernel = ({ node, inputs, opset }) => {
  if (inputs.some((t) => !t)) return 'an input is empty';
  const parts = inputs as Tensor[];
  const first = parts[0]!;
  const axis = normalizeAxis(node.getInt('axis', opset < 4 ? 1 : NaN), first.dims.length);
  if (axis === undefined) return 'axis is missing or out of range';
  const sameOtherDims = (t: Tensor) =>
    t.dtype === first.dtype &&
    t.dims.length === first.dims.length &&
    t.dims.every((d, i) => i === axis || d === first.dims[i]);
  if (!parts.every(sameOtherDims)) return 'inputs differ in dtype or in dims off the axis';
  const dims = [...first.dims];
  dims[axis] = parts.reduce((sum, t) => sum + t.dims[axis]!, 0);
  const outer = product(first.dims.slice(0, axis));
  const out = allocate(first, product(dims)) as Elements;
  let at = 0;
  for (let block = 0; block < outer; block++) {
    for (const part of parts) {
      const chunk = part.size / (outer || 1);
      const from = part.data as Elements;
      for (let i = 0; i < chunk; i++) out[at++] = from[block * chunk + i]!;
    }
  }
  return Tensor.fromArray(first.dtype, dims, out as TypedArray);
};

const gather: Kernel = ({ node, inputs: [data, indexTensor] }) => {
  const dims = data!.dims;
  const axis = normalizeAxis(node.getInt('axis', 0), dims.length);
  const indices = intsOf(indexTensor);
  if (axis === undefined || !indices) return 'axis out of range or indices not int32/int64';
  const axisLength = dims[axis]!;
  if (indices.some((k) => k < -axisLength || k >= axisLength))
    return `an index is out of range for axis length ${axisLength}`;
  const outer = product(dims.slice(0, axis));
  const inner = product(dims.slice(axis + 1));
  const map: number[] = [];
  for (let block = 0; block < outer; block++) {
    for (const k of indices) {
      const start = (block * axisLength + (k < 0 ? k + axisLength : k)) * inner;
      for (let i = 0; i < inner; i++) map.push(start + i);
    }
  }
  return pick(data!, [...dims.slice(0, axis), ...indexTensor!.dims, ...dims.slice(axis + 1)], map);
};

/** numpy broadcasting of two shapes, or undefined when incompatible. */
function broadcastDims(a: readonly number[], b: readonly number[]): number[] | undefined {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let axis = 0; axis < rank; axis++) {
    const da = a[axis - rank + a.length] ?? 1;
    const db = b[axis - rank + b.length] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return undefined;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Strides of `dims` seen from `outDims`: 0 along broadcast axes. */
function broadcastStrides(dims: readonly number[], outDims: readonly number[]): number[] {
  const strides = stridesOf(dims);
  return outDims.map((_, axis) => {
    const own = axis - outDims.length + dims.length;
    return own < 0 || dims[own] === 1 ? 0 : strides[own]!;
  });
}

const FLOAT_OPS: Record<string, (x: number, y: number) => number> = {
  Add: (x, y) => x + y,
  Sub: (x, y) => x - y,
  Mul: (x, y) => x * y,
  Div: (x, y) => x / y,
};
const INT_OPS: Record<string, (x: bigint, y: bigint) => bigint> = {
  Add: (x, y) => x + y,
  Sub: (x, y) => x - y,
  Mul: (x, y) => x * y,
  Div: (x, y) => x / y,
};
const INT64_MIN = -(2n ** 63n);

const elementwise: Kernel = ({ node, inputs: [a, b], opset }) => {
  if (opset < 7) return 'legacy (pre-opset-7) broadcasting';
  if (!b) return 'the second input is empty';
  if (a!.dtype !== b!.dtype || (a!.dtype !== DataType.FLOAT && a!.dtype !== DataType.INT64))
    return 'only float32 and int64 arithmetic is folded';
  const dims = broadcastDims(a!.dims, b!.dims);
  if (!dims) return `shapes [${a!.dims}] and [${b!.dims}] do not broadcast`;
  const refused = refuseSize(dims);
  if (refused) return refused;
  const mapA = mapIndices(dims, broadcastStrides(a!.dims, dims));
  const mapB = mapIndices(dims, broadcastStrides(b!.dims, dims));
  if (a!.dtype === DataType.FLOAT) {
    const [x, y, f] = [a!.data as Float32Array, b!.data as Float32Array, FLOAT_OPS[node.opType]!];
    return Tensor.fromArray(
      DataType.FLOAT,
      dims,
      Float32Array.from(mapA, (ia, i) => Math.fround(f(x[ia]!, y[mapB[i]!]!))),
    );
  }
  const [x, y, f] = [a!.data as BigInt64Array, b!.data as BigInt64Array, INT_OPS[node.opType]!];
  const out = new BigInt64Array(mapA.length);
  for (let i = 0; i < out.length; i++) {
    const [xi, yi] = [x[mapA[i]!]!, y[mapB[i]!]!];
    if (node.opType === 'Div' && (yi === 0n || (xi === INT64_MIN && yi === -1n)))
      return 'int64 division by zero or overflow';
    out[i] = BigInt.asIntN(64, f(xi, yi));
  }
  return Tensor.fromArray(DataType.INT64, dims, out);
};

const CASTABLE = new Set([DataType.FLOAT, DataType.DOUBLE, DataType.INT32, DataType.INT64]);
const TWO_53 = 2 ** 53;

/** One element cast exactly as onnxruntime does, or undefined where that is not exact or defined. */
function castElement(x: number | bigint, to: DataType): number | bigint | undefined {
  if (typeof x === 'bigint') {
    if (to === DataType.INT64) return x;
    if (to === DataType.INT32) return x >= -(2n ** 31n) && x < 2n ** 31n ? Number(x) : undefined;
    if (to === DataType.DOUBLE) return Number(x);
    return x >= -TWO_53 && x <= TWO_53 ? Math.fround(Number(x)) : undefined;
  }
  if (to === DataType.FLOAT) return Math.fround(x);
  if (to === DataType.DOUBLE) return x;
  if (!Number.isFinite(x)) return undefined;
  const t = Math.trunc(x);
  if (to === DataType.INT32) return t >= -(2 ** 31) && t < 2 ** 31 ? t : undefined;
  return t >= -(2 ** 63) && t < 2 ** 63 ? BigInt(t) : undefined;
}

const cast: Kernel = ({ node, inputs: [data] }) => {
  const to = node.getInt('to');
  if (to === undefined || !CASTABLE.has(data!.dtype) || !CASTABLE.has(to))
    return 'only casts among float32, float64, int32 and int64 are folded';
  // Same type: copy bits (a NaN's payload survives, as in onnxruntime).
  if (to === data!.dtype) return reshaped(data!, data!.dims);
  const from = data!.data as Elements;
  const out = new (dtypeInfo(to).array!)(data!.size) as Elements;
  for (let i = 0; i < data!.size; i++) {
    const value = castElement(from[i]!, to);
    if (value === undefined) return `element ${i} (${from[i]}) has no exact ${DataType[to]} value`;
    out[i] = value;
  }
  return Tensor.fromArray(to, data!.dims, out as TypedArray);
};

/** The most elements any kernel creates; checked before allocating. */
const MAX_KERNEL_ELEMENTS = 2 ** 28;

/** Why a tensor of `dims` is not made, or undefined when it may be. */
function refuseSize(dims: readonly number[]): string | undefined {
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) return `invalid dims [${dims}]`;
  const size = product(dims);
  return size > MAX_KERNEL_ELEMENTS ? `[${dims}] has ${size} elements, more than ${MAX_KERNEL_ELEMENTS}` : undefined;
}

/** ConstantOfShape: dims from the input, every element the `value` attribute's one element (default float32 0). */
const constantOfShape: Kernel = ({ node, inputs: [shapeInput] }) => {
  const dims = intsOf(shapeInput);
  if (!dims || shapeInput!.dims.length !== 1) return 'the shape is not a 1-D int64 tensor';
  const refused = refuseSize(dims);
  if (refused) return refused;
  const value = node.attr('value');
  const fill =
    value === undefined ? Tensor.float32([1], [0]) : value.type === AttrType.TENSOR ? value.value : undefined;
  if (fill?.size !== 1 || !isMovable(fill.dtype)) return 'value is not a one-element numeric tensor';
  const out = allocate(fill, product(dims));
  (out as { fill(v: number | bigint): unknown }).fill((fill.data as Elements)[0]!);
  return Tensor.fromArray(fill.dtype, dims, out);
};

/** Expand: numpy broadcasting of the data against the shape input (either side may be 1). */
const expand: Kernel = ({ inputs: [data, shapeInput] }) => {
  const shape = intsOf(shapeInput);
  if (!shape) return 'the shape is not int64';
  const dims = broadcastDims(data!.dims, shape);
  if (!dims) return `[${data!.dims}] does not broadcast to [${shape}]`;
  return refuseSize(dims) ?? pick(data!, dims, mapIndices(dims, broadcastStrides(data!.dims, dims)));
};

/** One axis of a Slice: first index, count and step, clamped as ONNX specifies. */
function sliceAxis(length: number, start: number, end: number, step: number): { first: number; count: number } {
  const from = start < 0 ? start + length : start;
  const to = end < 0 ? end + length : end;
  const clamp = (i: number, low: number, high: number) => Math.min(Math.max(i, low), high);
  if (step > 0) {
    const [first, last] = [clamp(from, 0, length), clamp(to, 0, length)];
    return { first, count: Math.max(0, Math.ceil((last - first) / step)) };
  }
  const [first, last] = [clamp(from, 0, length - 1), clamp(to, -1, length - 1)];
  return { first, count: Math.max(0, Math.ceil((first - last) / -step)) };
}

/** Slice-1 (attributes) and Slice-10+ (inputs), negative steps included. */
const slice: Kernel = ({ node, inputs: [data, startsIn, endsIn, axesIn, stepsIn], opset }) => {
  const dims = data!.dims;
  const starts = opset < 10 ? node.getInts('starts') : intsOf(startsIn);
  const ends = opset < 10 ? node.getInts('ends') : intsOf(endsIn);
  const givenAxes = opset < 10 ? node.getInts('axes') : axesIn && intsOf(axesIn);
  const steps = (opset >= 10 && stepsIn && intsOf(stepsIn)) || starts?.map(() => 1);
  if (!starts || !ends || !steps || (opset >= 10 && ((axesIn && !givenAxes) || (stepsIn && !intsOf(stepsIn)))))
    return 'starts, ends, axes or steps are missing or not integers';
  const axes = normalizeAxes(givenAxes ?? starts.map((_, i) => i), dims.length);
  if (!axes || ends.length !== starts.length || axes.length !== starts.length || steps.length !== starts.length)
    return 'starts, ends, axes and steps disagree';
  if (steps.some((step) => step === 0)) return 'a step is 0';
  const first = dims.map(() => 0);
  const outDims = [...dims];
  const step = dims.map(() => 1);
  axes.forEach((axis, i) => {
    const picked = sliceAxis(dims[axis]!, starts[i]!, ends[i]!, steps[i]!);
    [first[axis], outDims[axis], step[axis]] = [picked.first, picked.count, steps[i]!];
  });
  const strides = stridesOf(dims);
  const base = first.reduce((sum, f, axis) => sum + f * strides[axis]!, 0);
  const map = mapIndices(
    outDims,
    strides.map((s, axis) => s * step[axis]!),
  );
  return pick(
    data!,
    outDims,
    map.map((offset) => offset + base),
  );
};

/** Range over int32/int64 scalars: start, start + delta, … while before limit. */
const range: Kernel = ({ inputs: [start, limit, delta] }) => {
  const [s, l, d] = [intsOf(start), intsOf(limit), intsOf(delta)];
  if (!s || !l || !d) return 'only integer Ranges are folded (a float Range accumulates in onnxruntime)';
  if (
    start!.dtype !== limit!.dtype ||
    start!.dtype !== delta!.dtype ||
    s.length !== 1 ||
    l.length !== 1 ||
    d.length !== 1
  )
    return 'start, limit and delta are not scalars of one type';
  if (d[0] === 0) return 'delta is 0';
  if ([s[0]!, l[0]!, d[0]!].some((v) => Math.abs(v) > 2 ** 53)) return 'an int64 operand is beyond 2^53';
  const count = Math.max(0, Math.ceil((l[0]! - s[0]!) / d[0]!));
  const refused = refuseSize([count]);
  if (refused) return refused;
  const values = Array.from({ length: count }, (_, i) => s[0]! + i * d[0]!);
  return start!.dtype === DataType.INT64
    ? Tensor.int64([count], values)
    : Tensor.fromArray(DataType.INT32, [count], Int32Array.from(values));
};

/** Kernels for nodes whose inputs are all constant, by op type (default domain). */
export const KERNELS: ReadonlyMap<string, Kernel> = new Map([
  ['Identity', identity],
  ['Reshape', reshape],
  ['Flatten', flatten],
  ['Squeeze', squeeze],
  ['Unsqueeze', unsqueeze],
  ['Transpose', transpose],
  ['Concat', concat],
  ['Gather', gather],
  ['Cast', cast],
  ['ConstantOfShape', constantOfShape],
  ['Expand', expand],
  ['Slice', slice],
  ['Range', range],
  ['Add', elementwise],
  ['Sub', elementwise],
  ['Mul', elementwise],
  ['Div', elementwise],
]);

/** Ops that only move elements: they fold for any movable dtype, float16/bfloat16 included. */
export const DATA_MOVEMENT = new Set([
  'Identity',
  'Reshape',
  'Flatten',
  'Squeeze',
  'Unsqueeze',
  'Transpose',
  'Concat',
  'Gather',
  'ConstantOfShape',
  'Expand',
  'Slice',
]);

/** Shape of a value whose dims are all known numbers (opset 15 adds start/end, clamped). */
export function foldShape(node: Node, dims: readonly number[], opset: number): Tensor {
  const rank = dims.length;
  const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + rank : i, 0), rank);
  const start = opset >= 15 ? clamp(node.getInt('start', 0)) : 0;
  const end = opset >= 15 ? clamp(node.getInt('end', rank)) : rank;
  const slice = dims.slice(start, Math.max(start, end));
  return Tensor.int64([slice.length], slice);
}
