/**
 * Per-op shape rules: one table, op type → rule. Each rule reads its inputs through a
 * ShapeContext and sets output types, and for small integer tensors the elements they hold.
 *
 *   elementwise        out = broadcast(in₀, in₁, …) aligned right; a dim of 1 stretches
 *   Gemm               [M, K]·[K, N] → [M, N] (transA / transB swap the operand's axes)
 *   MatMul             [..., M, K]·[..., K, N] → [broadcast(...), M, N]; a 1-D operand gets a
 *                      1 prepended (left) or appended (right), removed again from the result
 *   Flatten(axis)      [∏ d[:axis], ∏ d[axis:]]
 *   Reshape            0 copies the input dim (unless allowzero), one −1 (or one unknown
 *                      element) is ∏ input / ∏ the other elements
 *   Concat             dims add along the axis; Split / Slice / Gather / Transpose / Squeeze /
 *                      Unsqueeze / Expand / Tile as the ONNX spec defines them
 *   Reduce*, ArgMax    the reduced axes become 1 (keepdims) or vanish
 *
 * Spatial ops (Conv, pools, Pad, Resize) are in shape-spatial.ts. Axes, pads, split sizes
 * and the like moved from attributes to inputs at different opsets; each rule reads them
 * from where `c.opset` puts them.
 */
import { AttrType } from '../ir/attribute.js';
import { constantOf } from '../ir/constants.js';
import { DataType, isFloat } from '../ir/dtype.js';
import { normalizeAxes, normalizeAxis, range, Unresolved, type ShapeContext, type ShapeRule } from './shape-context.js';
import {
  convShape,
  convTransposeShape,
  depthSpaceShape,
  globalPoolShape,
  padShape,
  poolShape,
  resizeShape,
} from './shape-spatial.js';
import {
  addDim,
  broadcastShapes,
  castElement,
  compareElement,
  divDim,
  divElement,
  equalElement,
  gatherElements,
  mergeDim,
  mulDim,
  numericElement,
  productOf,
  sliceElements,
  sliceRange,
  subDim,
  sumOf,
  zipValues,
  type Dim,
  type ShapeValue,
} from './shape-values.js';

/** Values longer than this are not followed element by element. */
export const MAX_VALUE_ELEMENTS = 64;

// ---------------------------------------------------------------------------------------------
// Elementwise

/** Output 0 has input 0's shape; `dtype` overrides the element type. */
const sameShape =
  (dtype?: (c: ShapeContext) => DataType): ShapeRule =>
  (c) =>
    c.out(0, c.shape(0), dtype?.(c));

/** Same shape, and the elements map one to one (Identity, Neg, Floor, …). */
const sameShapeMapped =
  (map: (x: Dim) => Dim): ShapeRule =>
  (c) => {
    c.out(0, c.shape(0));
    c.outValue(0, c.value(0)?.map(map));
  };

const numeric =
  (fn: (x: number) => number) =>
  (x: Dim): Dim =>
    typeof x === 'number' ? fn(x) : null;

function cast(c: ShapeContext): void {
  const to = c.node.getInt('to');
  if (to === undefined) throw new RangeError('Cast has no `to`');
  c.out(0, c.shape(0), to);
  const toBool = to === DataType.BOOL;
  const toInteger = !toBool && !isFloat(to);
  c.outValue(
    0,
    c.value(0)?.map((x) => castElement(x, toInteger, toBool)),
  );
}

type ElementRule = (elements: Dim[], integer: boolean) => Dim;

/** How the elements of followed values combine, per broadcasting op. */
const ELEMENT_RULES: Record<string, ElementRule> = {
  Add: ([a, b]) => addDim(a!, b!),
  Sub: ([a, b]) => subDim(a!, b!),
  Mul: ([a, b]) => mulDim(a!, b!),
  Div: ([a, b], integer) => divElement(a!, b!, integer),
  Equal: ([a, b]) => equalElement(a!, b!),
  Less: ([a, b]) => compareElement(a!, b!, (x, y) => x < y),
  Greater: ([a, b]) => compareElement(a!, b!, (x, y) => x > y),
  Max: (xs) => xs.reduce((a, b) => numericElement(a, b, Math.max)),
  Min: (xs) => xs.reduce((a, b) => numericElement(a, b, Math.min)),
  Where: ([cond, a, b]) => (cond === 1 ? a! : cond === 0 ? b! : null),
};

/** Multidirectional broadcasting over every input; `dtype` picks the output element type. */
const broadcast =
  (dtype: (c: ShapeContext) => DataType = (c) => c.dtype(0)): ShapeRule =>
  (c) => {
    const inputs = range(c.node.inputs.length).filter((index) => c.has(index));
    c.out(0, broadcastShapes(inputs.map((index) => c.shape(index))), dtype(c));
    const rule = ELEMENT_RULES[c.node.opType];
    const values = inputs.map((index) => c.value(index));
    if (!rule || values.some((v) => v === undefined)) return;
    const integer = c.has(0) && !isFloat(c.dtype(inputs[0]!));
    c.outValue(
      0,
      zipValues(values as ShapeValue[], (elements) => rule(elements, integer)),
    );
  };

const bool = () => DataType.BOOL;

// ---------------------------------------------------------------------------------------------
// Normalization and other multi-output elementwise ops

/** BatchNormalization: Y like X; training-mode statistics outputs are [C]. */
function batchNorm(c: ShapeContext): void {
  const x = c.shape(0);
  c.out(0, x);
  for (const index of [1, 2, 3, 4]) c.out(index, [x[1] ?? null]);
}

/** LayerNormalization: Y like X; Mean and InvStdDev keep the leading axes, 1 from `axis` on. */
function layerNorm(c: ShapeContext): void {
  const x = c.shape(0);
  const axis = normalizeAxis(c.node.getInt('axis', -1), x.length);
  c.out(0, x);
  const stats = x.map((d, at) => (at < axis ? d : 1));
  const stash = c.node.getInt('stash_type', DataType.FLOAT);
  c.out(1, stats, stash);
  c.out(2, stats, stash);
}

/** Dropout: output like input; the mask is bool from opset 10 (the input's type before). */
function dropout(c: ShapeContext): void {
  const x = c.shape(0);
  c.out(0, x);
  c.out(1, x, c.opset >= 10 ? DataType.BOOL : c.dtype(0));
}

// ---------------------------------------------------------------------------------------------
// Linear algebra

function gemm(c: ShapeContext): void {
  const a = c.shape(0),
    b = c.shape(1);
  if (a.length !== 2 || b.length !== 2)
    throw new RangeError(`Gemm needs 2-D operands, got ranks ${a.length} and ${b.length}`);
  const rows = c.node.getInt('transA', 0) ? a[1]! : a[0]!;
  const cols = c.node.getInt('transB', 0) ? b[0]! : b[1]!;
  c.out(0, [rows, cols]);
}

/** numpy matmul shape of inputs aIndex and bIndex. */
function matmulShape(c: ShapeContext, aIndex: number, bIndex: number): Dim[] {
  const a = c.shape(aIndex),
    b = c.shape(bIndex);
  if (a.length === 0 || b.length === 0) throw new RangeError('MatMul operands must not be scalars');
  const left = a.length === 1 ? [1, a[0]!] : a;
  const right = b.length === 1 ? [b[0]!, 1] : b;
  const batch = broadcastShapes([left.slice(0, -2), right.slice(0, -2)]);
  const out = [
    ...batch,
    ...(a.length === 1 ? [] : [left[left.length - 2]!]),
    ...(b.length === 1 ? [] : [right[right.length - 1]!]),
  ];
  return out;
}

const matmul =
  (aIndex: number, bIndex: number, dtype?: (c: ShapeContext) => DataType): ShapeRule =>
  (c) =>
    c.out(0, matmulShape(c, aIndex, bIndex), dtype?.(c));

// ---------------------------------------------------------------------------------------------
// Reshaping

/** Reshape: 0 copies (unless allowzero), and the single open element (−1 or unknown) is solved from the element count. */
function reshape(c: ShapeContext): void {
  const x = c.tryShape(0);
  const target = c.opset < 5 ? c.node.getInts('shape') : c.value(1);
  if (!target) return unknownElements(c, 1);
  const allowZero = c.node.getInt('allowzero', 0) === 1;
  const dims = target.map((t, axis): Dim => {
    if (t === 0 && !allowZero) return x?.[axis] ?? null;
    if (typeof t === 'number' && t < 0) return null;
    return t;
  });
  const open = dims.flatMap((d, axis) => (d === null ? [axis] : []));
  if (open.length === 1 && x) {
    const known = dims.filter((_, axis) => axis !== open[0]);
    dims[open[0]!] = divDim(productOf(x), productOf(known));
  }
  c.out(0, dims);
  c.outValue(0, c.value(0));
}

/** A shape taken from input `index` whose elements are unknown: only its length (the rank) is. */
function unknownElements(c: ShapeContext, index: number): void {
  const length = c.shape(index)[0];
  if (typeof length !== 'number') throw new Unresolved(`the shape in input ${index} is not known`);
  c.out(0, Array<Dim>(length).fill(null));
}

function flatten(c: ShapeContext): void {
  const x = c.shape(0);
  const axis = c.node.getInt('axis', 1);
  const at = axis < 0 ? axis + x.length : axis;
  c.out(0, [productOf(x.slice(0, at)), productOf(x.slice(at))]);
  c.outValue(0, c.value(0));
}

function transpose(c: ShapeContext): void {
  const x = c.shape(0);
  const perm = c.node.getInts('perm') ?? range(x.length).reverse();
  c.out(
    0,
    perm.map((axis) => x[normalizeAxis(axis, x.length)]!),
  );
}

/** Axes from the `axes` attribute before `inputFrom`, from input 1 after. */
function axesOf(c: ShapeContext, inputFrom: number): readonly number[] | undefined {
  return c.opset < inputFrom ? c.node.getInts('axes') : c.optionalNumbers(1);
}

function squeeze(c: ShapeContext): void {
  const x = c.shape(0);
  const axes = axesOf(c, 13);
  if (!axes && x.includes(null)) throw new Unresolved('Squeeze without axes over unknown dims');
  const drop = new Set(axes ? normalizeAxes(axes, x.length) : range(x.length).filter((axis) => x[axis] === 1));
  c.out(
    0,
    x.filter((_, axis) => !drop.has(axis)),
  );
  c.outValue(0, c.value(0));
}

function unsqueeze(c: ShapeContext): void {
  const x = c.shape(0);
  const axes = axesOf(c, 13);
  if (!axes) throw new Unresolved('Unsqueeze axes are not known');
  const rank = x.length + axes.length;
  const added = new Set(normalizeAxes(axes, rank));
  let next = 0;
  c.out(
    0,
    range(rank).map((axis) => (added.has(axis) ? 1 : x[next++]!)),
  );
  c.outValue(0, c.value(0));
}

function concat(c: ShapeContext): void {
  const inputs = range(c.node.inputs.length).filter((index) => c.has(index));
  const shapes = inputs.map((index) => c.shape(index));
  const rank = shapes[0]!.length;
  const axis = normalizeAxis(c.node.getInt('axis', 0), rank);
  const out = range(rank).map((at) =>
    at === axis ? sumOf(shapes.map((s) => s[at]!)) : shapes.reduce<Dim>((d, s) => mergeDim(d, s[at]!), null),
  );
  c.out(0, out);
  const values = inputs.map((index) => c.value(index));
  if (values.every((v) => v !== undefined)) c.outValue(0, values.flat());
}

/** Split: sizes from the attribute (< 13) or input 1, else num_outputs (18, last chunk smaller), else equal parts. */
function split(c: ShapeContext): void {
  const x = c.shape(0);
  const axis = normalizeAxis(c.node.getInt('axis', 0), x.length);
  const sizes = splitSizes(c, x[axis]!);
  sizes.forEach((size, index) =>
    c.out(
      index,
      x.map((d, at) => (at === axis ? size : d)),
    ),
  );
}

function splitSizes(c: ShapeContext, length: Dim): Dim[] {
  const given = c.opset < 13 ? c.node.getInts('split') : c.optionalNumbers(1);
  if (given) return [...given];
  const parts = c.node.getInt('num_outputs') ?? c.node.outputs.length;
  if (typeof length !== 'number' || length % parts === 0) return Array<Dim>(parts).fill(divDim(length, parts));
  const chunk = Math.ceil(length / parts);
  return range(parts).map((k) => (k < parts - 1 ? chunk : length - chunk * (parts - 1)));
}

/** Slice: starts/ends/axes attributes before opset 10, inputs 1–4 from then on. */
function slice(c: ShapeContext): void {
  const x = c.shape(0);
  const params = sliceParams(c, x.length);
  const out = [...x];
  if (!params)
    return c.out(
      0,
      out.map(() => null),
    );
  params.axes.forEach(
    (axis, k) => (out[axis] = slicedDim(x[axis]!, params.starts[k]!, params.ends[k]!, params.steps[k] ?? 1)),
  );
  c.out(0, out);
  const elements = c.value(0);
  if (elements && x.length === 1 && params.axes.length === 1)
    c.outValue(0, sliceElements(elements, params.starts[0]!, params.ends[0]!, params.steps[0] ?? 1));
}

interface SliceParams {
  readonly starts: readonly number[];
  readonly ends: readonly number[];
  readonly axes: readonly number[];
  readonly steps: readonly number[];
}

function sliceParams(c: ShapeContext, rank: number): SliceParams | undefined {
  const node = c.node;
  const known = (index: number) => {
    const v = c.value(index);
    return v?.every((e): e is number => typeof e === 'number') ? v : undefined;
  };
  const starts = c.opset < 10 ? node.getInts('starts') : known(1);
  const ends = c.opset < 10 ? node.getInts('ends') : known(2);
  const axes = c.opset < 10 ? node.getInts('axes') : c.optionalNumbers(3);
  const steps = (c.opset < 10 ? undefined : c.optionalNumbers(4)) ?? [];
  if (!starts || !ends) return undefined;
  return { starts, ends, steps, axes: normalizeAxes(axes ?? range(starts.length), rank) };
}

/** Huge ends (INT64_MAX / INT64_MIN and the like) mean "to the end". */
const TO_END = 2 ** 31 - 1;

function slicedDim(d: Dim, start: number, end: number, step: number): Dim {
  if (typeof d === 'number') return sliceRange(d, start, end, step)[1];
  const forwardAll = step === 1 && start === 0 && end >= TO_END;
  const backwardAll = step === -1 && (start === -1 || start >= TO_END) && end <= -TO_END;
  return forwardAll || backwardAll ? d : null;
}

/** Gather: data[:axis] ++ indices ++ data[axis+1:]. */
function gather(c: ShapeContext): void {
  const data = c.shape(0),
    indices = c.shape(1);
  const axis = normalizeAxis(c.node.getInt('axis', 0), data.length);
  c.out(0, [...data.slice(0, axis), ...indices, ...data.slice(axis + 1)]);
  const elements = c.value(0),
    picks = c.value(1);
  if (elements && picks && data.length === 1) c.outValue(0, gatherElements(elements, picks));
}

function expand(c: ShapeContext): void {
  const target = c.value(1);
  if (!target) return unknownElements(c, 1);
  c.out(0, broadcastShapes([c.shape(0), target]));
}

function tile(c: ShapeContext): void {
  const x = c.shape(0);
  const repeats = c.value(1);
  c.out(0, repeats ? x.map((d, axis) => mulDim(d, repeats[axis] ?? null)) : x.map(() => null));
}

// ---------------------------------------------------------------------------------------------
// Shape producers

/** Shape (start/end from opset 15): a 1-D int64 tensor whose elements are the dims. */
function shapeOf(c: ShapeContext): void {
  const x = c.shape(0);
  const clamp = (at: number) => Math.min(Math.max(at < 0 ? at + x.length : at, 0), x.length);
  const dims = x.slice(clamp(c.node.getInt('start', 0)), clamp(c.node.getInt('end', x.length)));
  c.out(0, [dims.length], DataType.INT64);
  c.outValue(0, dims);
}

function size(c: ShapeContext): void {
  c.out(0, [], DataType.INT64);
  c.outValue(0, [productOf(c.shape(0))]);
}

function constant(c: ShapeContext): void {
  const tensor = constantOf(c.node.output(0));
  if (tensor) {
    c.out(0, tensor.dims, tensor.dtype);
    if (tensor.dtype !== DataType.STRING && tensor.dims.length <= 1 && tensor.size <= MAX_VALUE_ELEMENTS)
      c.outValue(0, tensor.toNumbers());
    return;
  }
  const strings = c.node.attr('value_strings');
  if (c.node.attr('value_string')) return c.out(0, [], DataType.STRING);
  if (strings?.type === AttrType.STRINGS) return c.out(0, [strings.value.length], DataType.STRING);
  throw new Unresolved('Constant holds a sparse tensor or no value');
}

function constantOfShape(c: ShapeContext): void {
  const attr = c.node.attr('value');
  const fill = attr?.type === AttrType.TENSOR ? attr.value : undefined;
  const dtype = fill?.dtype ?? DataType.FLOAT;
  const dims = c.value(0);
  if (!dims) return unknownElements(c, 0);
  c.out(0, dims, dtype);
  const count = productOf(dims);
  if (typeof count === 'number' && dims.length <= 1 && count <= MAX_VALUE_ELEMENTS)
    c.outValue(0, Array<Dim>(count).fill(fill?.toNumbers()[0] ?? 0));
}

/** Range: ⌈(limit − start) / delta⌉ elements (at least 0); Range(0, n, 1) has n even when n is a symbol. */
function rangeOp(c: ShapeContext): void {
  const [start, limit, delta] = [0, 1, 2].map((index) => c.value(index)?.[0] ?? null);
  const count = rangeCount(start!, limit!, delta!);
  c.out(0, [count]);
  if (typeof count !== 'number' || count > MAX_VALUE_ELEMENTS) return;
  c.outValue(
    0,
    range(count).map((k) => (start as number) + k * (delta as number)),
  );
}

function rangeCount(start: Dim, limit: Dim, delta: Dim): Dim {
  if (typeof start === 'number' && typeof limit === 'number' && typeof delta === 'number')
    return Math.max(Math.ceil((limit - start) / delta), 0);
  return start === 0 && delta === 1 ? limit : null;
}

// ---------------------------------------------------------------------------------------------
// Reductions

/** Ops whose `axes` moved to input 1 at opset 13 (ReduceSum) or 18 (the rest). */
function axesFromInput(c: ShapeContext): boolean {
  return c.opset >= 18 || (c.node.opType === 'ReduceSum' && c.opset >= 13);
}

/** Reduce*: listed axes (all when none, unless noop_with_empty_axes) become 1 or vanish. */
function reduce(c: ShapeContext): void {
  const x = c.shape(0);
  const axes = axesFromInput(c) ? c.optionalNumbers(1) : c.node.getInts('axes');
  const keep = c.node.getInt('keepdims', 1) === 1;
  if (!axes?.length && c.node.getInt('noop_with_empty_axes', 0) === 1) {
    c.out(0, x);
    return c.outValue(0, c.value(0));
  }
  const reduced = new Set(axes?.length ? normalizeAxes(axes, x.length) : range(x.length));
  c.out(0, keep ? x.map((d, axis) => (reduced.has(axis) ? 1 : d)) : x.filter((_, axis) => !reduced.has(axis)));
  const elements = c.value(0);
  if (elements && x.length === 1) c.outValue(0, reduceElements(c.node.opType, elements));
}

function reduceElements(opType: string, elements: ShapeValue): Dim[] | undefined {
  if (opType === 'ReduceProd') return [productOf(elements)];
  if (opType === 'ReduceSum') return [sumOf(elements)];
  return undefined;
}

/** ArgMax / ArgMin: the axis becomes 1 or vanishes; int64 indices. */
function argReduce(c: ShapeContext): void {
  const x = c.shape(0);
  const axis = normalizeAxis(c.node.getInt('axis', 0), x.length);
  const keep = c.node.getInt('keepdims', 1) === 1;
  c.out(0, keep ? x.map((d, at) => (at === axis ? 1 : d)) : x.filter((_, at) => at !== axis), DataType.INT64);
}

/** TopK: the axis shrinks to K (attribute before opset 10, input 1 after); values and int64 indices. */
function topK(c: ShapeContext): void {
  const x = c.shape(0);
  const axis = normalizeAxis(c.node.getInt('axis', -1), x.length);
  const k = c.opset < 10 ? (c.node.getInt('k') ?? null) : (c.value(1)?.[0] ?? null);
  const out = x.map((d, at) => (at === axis ? k : d));
  c.out(0, out);
  c.out(1, out, DataType.INT64);
}

// ---------------------------------------------------------------------------------------------
// Quantization

/** QuantizeLinear: y takes y_zero_point's type, else output_dtype (opset 21), else uint8. */
function quantize(c: ShapeContext): void {
  const dtype = c.has(2) ? c.dtype(2) : c.node.getInt('output_dtype', 0) || DataType.UINT8;
  c.out(0, c.shape(0), dtype);
}

function dynamicQuantize(c: ShapeContext): void {
  c.out(0, c.shape(0), DataType.UINT8);
  c.out(1, [], DataType.FLOAT);
  c.out(2, [], DataType.UINT8);
}

const unary = sameShape();

/** SoftmaxCrossEntropyLoss / NegativeLogLikelihoodLoss: scalar ('mean', 'sum') or the labels' shape ('none'); log_prob like the scores. */
function classificationLoss(c: ShapeContext): void {
  const none = c.node.getString('reduction', 'mean') === 'none';
  c.out(0, none ? c.shape(1) : []);
  c.out(1, c.shape(0));
}

/** The rule for each op of the default ONNX domain; an op not listed is left unknown with an issue. */
export const SHAPE_RULES: Readonly<Record<string, ShapeRule>> = {
  // activations and other one-to-one ops
  Relu: unary,
  LeakyRelu: unary,
  PRelu: unary,
  Sigmoid: unary,
  HardSigmoid: unary,
  HardSwish: unary,
  Tanh: unary,
  Mish: unary,
  Softplus: unary,
  Softsign: unary,
  Erf: unary,
  Elu: unary,
  Selu: unary,
  Celu: unary,
  Gelu: unary,
  ThresholdedRelu: unary,
  Exp: unary,
  Log: unary,
  Sqrt: unary,
  Reciprocal: unary,
  Round: unary,
  Sin: unary,
  Cos: unary,
  Clip: unary,
  Shrink: unary,
  Sign: unary,
  Softmax: unary,
  LogSoftmax: unary,
  Hardmax: unary,
  LRN: unary,
  InstanceNormalization: unary,
  MeanVarianceNormalization: unary,
  CumSum: unary,
  Trilu: unary,
  Identity: sameShapeMapped((x) => x),
  Neg: sameShapeMapped(numeric((x) => -x)),
  Abs: sameShapeMapped(numeric(Math.abs)),
  Floor: sameShapeMapped(numeric(Math.floor)),
  Ceil: sameShapeMapped(numeric(Math.ceil)),
  Not: sameShape(bool),
  IsNaN: sameShape(bool),
  IsInf: sameShape(bool),
  Cast: cast,
  CastLike: sameShape((c) => c.dtype(1)),
  BatchNormalization: batchNorm,
  LayerNormalization: layerNorm,
  Dropout: dropout,
  // broadcasting
  Add: broadcast(),
  Sub: broadcast(),
  Mul: broadcast(),
  Div: broadcast(),
  Pow: broadcast(),
  Mod: broadcast(),
  Max: broadcast(),
  Min: broadcast(),
  Sum: broadcast(),
  Mean: broadcast(),
  BitShift: broadcast(),
  Equal: broadcast(bool),
  Less: broadcast(bool),
  Greater: broadcast(bool),
  LessOrEqual: broadcast(bool),
  GreaterOrEqual: broadcast(bool),
  And: broadcast(bool),
  Or: broadcast(bool),
  Xor: broadcast(bool),
  Where: broadcast((c) => c.dtype(1)),
  // windows over spatial axes
  Conv: (c) => convShape(c, 0, 1),
  ConvTranspose: convTransposeShape,
  MaxPool: poolShape,
  AveragePool: poolShape,
  LpPool: poolShape,
  GlobalAveragePool: globalPoolShape,
  GlobalMaxPool: globalPoolShape,
  GlobalLpPool: globalPoolShape,
  Pad: padShape,
  Resize: resizeShape,
  Upsample: resizeShape,
  DepthToSpace: depthSpaceShape,
  SpaceToDepth: depthSpaceShape,
  // linear algebra
  Gemm: gemm,
  MatMul: matmul(0, 1),
  // reshaping and indexing
  Flatten: flatten,
  Reshape: reshape,
  Transpose: transpose,
  Squeeze: squeeze,
  Unsqueeze: unsqueeze,
  Concat: concat,
  Split: split,
  Slice: slice,
  Gather: gather,
  GatherElements: (c) => c.out(0, c.shape(1)),
  Expand: expand,
  Tile: tile,
  // shapes and constants
  Shape: shapeOf,
  Size: size,
  Constant: constant,
  ConstantOfShape: constantOfShape,
  Range: rangeOp,
  // reductions
  ReduceMean: reduce,
  ReduceSum: reduce,
  ReduceMax: reduce,
  ReduceMin: reduce,
  ReduceProd: reduce,
  ReduceL1: reduce,
  ReduceL2: reduce,
  ReduceLogSum: reduce,
  ReduceLogSumExp: reduce,
  ReduceSumSquare: reduce,
  ArgMax: argReduce,
  ArgMin: argReduce,
  TopK: topK,
  SoftmaxCrossEntropyLoss: classificationLoss,
  NegativeLogLikelihoodLoss: classificationLoss,
  // quantization
  QuantizeLinear: quantize,
  DequantizeLinear: sameShape((c) => c.dtype(1)),
  DynamicQuantizeLinear: dynamicQuantize,
  QLinearConv: (c) => convShape(c, 0, 3, c.has(7) ? c.dtype(7) : c.dtype(0)),
  ConvInteger: (c) => convShape(c, 0, 1, DataType.INT32),
  QLinearMatMul: matmul(0, 3, (c) => c.dtype(7)),
  MatMulInteger: matmul(0, 1, () => DataType.INT32),
};
