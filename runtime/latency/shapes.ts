/**
 * Layer shapes and their candidate structures, the rows and columns of the latency table.
 *
 * A layer shape is what a single-layer model needs to reproduce a layer's cost: for a Conv
 * its channels, group, kernel, strides, explicit pads (auto_pad resolved for the input
 * size), dilations and input spatial size; for a Gemm or a MatMul with a constant weight its
 * in/out features and the rows per sample (MatMul over [N, T, K] has T). The batch is not
 * part of a shape: it is part of the table's key.
 *
 * Candidates keep a layer's geometry and change its channels:
 *   widths  w ∈ grid(C) = { max(b, round(f·C / b)·b) capped at C : f ∈ FRACTIONS } ∪ {C}
 *           (b = the SIMD block; a side of C ≤ b channels stays C), for input and output
 *           independently — the dense family, group 1;
 *   groups  g ∈ {2, 4, 8} at full width where g divides both sides and C/g ≥ b on both;
 *   a layer that is already grouped (g₀ > 1, depthwise included) scales its group count
 *           instead: g ∈ grid(g₀) with step s = b / gcd(b, cin/g₀), widths g·cin/g₀, g·cout/g₀.
 */
import { inferShapes, type Dim } from '../../compiler/analysis/shape-inference.js';
import { constantOf } from '../../compiler/ir/constants.js';
import { DataType, dtypeName } from '../../compiler/ir/dtype.js';
import { RegroupError } from '../../compiler/errors.js';
import { nodeLabels } from '../../compiler/ir/label.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node } from '../../compiler/ir/node.js';
import { inputChannels, outputChannels } from '../../compiler/ir/op-roles.js';
import type { TableKey } from './table.js';

/** Fractions of a side's channels that the dense family measures. */
export const WIDTH_FRACTIONS: readonly number[] = [1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 7 / 8, 1];
/** Uniform group counts measured at full width. */
export const GROUP_COUNTS: readonly number[] = [2, 4, 8];

export type LayerKind = 'conv' | 'gemm' | 'matmul';

/** One layer of a model, by node. */
export interface LayerRef {
  node: Node;
  /** compiler/ir/label.ts nodeLabels: the name when unique, else `Conv#k (→ output)`. */
  label: string;
}

/** A distinct layer shape and the layers of the model that have it. */
export interface LayerShape {
  kind: LayerKind;
  /** The dense (as-is) candidate string: the shape's identity. */
  key: string;
  layers: LayerRef[];
  cin: number;
  cout: number;
  /** The layer's own group count (1 for Gemm/MatMul). */
  group: number;
  /** Conv only (empty for Gemm/MatMul). */
  kernel: number[];
  strides: number[];
  /** Explicit begin…, end… pads (auto_pad resolved). */
  pads: number[];
  dilations: number[];
  /** Input spatial size (Conv), empty for Gemm/MatMul. */
  inputSize: number[];
  /** Gemm/MatMul: rows per sample (product of the input's dims between batch and features); 1 for Conv. */
  rows: number;
  /** Element type of the weight, and of the single-layer models that time the shape. */
  dtype: 'float32' | 'float16';
}

/** A structure of a layer shape to time: channel counts and group count. */
export interface Structure {
  cin: number;
  cout: number;
  group: number;
}

/**
 * Every Conv and every Gemm/MatMul with a constant weight of the model's main graph, grouped
 * into distinct shapes (in first-seen order). Shapes come from compiler shape inference; a
 * symbolic batch is fine, a symbolic spatial size is not (RegroupError naming the layer).
 */
export function layerShapes(model: Model): LayerShape[] {
  const shapes = inferShapes(model);
  const labels = nodeLabels(model.graph);
  const byKey = new Map<string, LayerShape>();
  for (const node of model.graph.nodes()) {
    const label = labels.get(node)!;
    const dims = shapes.typeOf(node.inputs[0]!)?.shape;
    const shape = describeLayer(node, label, dims);
    if (!shape) continue;
    const known = byKey.get(shape.key);
    if (known) known.layers.push({ node, label });
    else byKey.set(shape.key, shape);
  }
  return [...byKey.values()];
}

function describeLayer(node: Node, label: string, dims: readonly Dim[] | null | undefined): LayerShape | undefined {
  if (node.domain !== '' && node.domain !== 'ai.onnx') return undefined;
  if (node.opType === 'Conv') return describeConv(node, label, dims);
  if (node.opType === 'Gemm' || node.opType === 'MatMul') return describeLinear(node, label, dims);
  return undefined;
}

function describeConv(node: Node, label: string, dims: readonly Dim[] | null | undefined): LayerShape | undefined {
  const weight = constantOf(node.inputs[1]);
  if (!weight || weight.dims.length < 3) return undefined;
  const inputSize = (dims ?? []).slice(2);
  if (!dims || inputSize.length !== weight.dims.length - 2 || !inputSize.every(isCount))
    throw new RegroupError(
      'unsupported',
      `Conv '${label}' has input shape [${(dims ?? []).map(String).join(', ')}]: its spatial size must be known to time it; give the model a fixed input size`,
    );
  const group = node.getInt('group', 1)!;
  const spatial = inputSize as number[];
  const kernel = node.getInts('kernel_shape')?.slice() ?? weight.dims.slice(2);
  const strides = node.getInts('strides')?.slice() ?? spatial.map(() => 1);
  const dilations = node.getInts('dilations')?.slice() ?? spatial.map(() => 1);
  const pads = explicitPads(node, spatial, kernel, strides, dilations);
  const shape: LayerShape = {
    kind: 'conv',
    key: '',
    layers: [{ node, label }],
    cin: inputChannels(node, weight.dims)!,
    cout: outputChannels(node, weight.dims)!,
    group,
    kernel,
    strides,
    pads,
    dilations,
    inputSize: spatial,
    rows: 1,
    dtype: floatType(weight.dtype, label),
  };
  shape.key = candidateKey(shape, shape);
  return shape;
}

function describeLinear(node: Node, label: string, dims: readonly Dim[] | null | undefined): LayerShape | undefined {
  const weight = constantOf(node.inputs[1]);
  if (weight?.dims.length !== 2) return undefined;
  if (node.opType === 'Gemm' && node.getInt('transA', 0) !== 0) return undefined;
  if (!dims || dims.length < 2 || !dims.slice(1).every(isCount))
    throw new RegroupError(
      'unsupported',
      `${node.opType} '${label}' has input shape [${(dims ?? []).map(String).join(', ')}]: only its leading (batch) dimension may be symbolic to time it`,
    );
  const rows = (dims.slice(1, -1) as number[]).reduce((a, b) => a * b, 1);
  const shape: LayerShape = {
    kind: node.opType === 'Gemm' ? 'gemm' : 'matmul',
    key: '',
    layers: [{ node, label }],
    cin: inputChannels(node, weight.dims)!,
    cout: outputChannels(node, weight.dims)!,
    group: 1,
    kernel: [],
    strides: [],
    pads: [],
    dilations: [],
    inputSize: [],
    rows,
    dtype: floatType(weight.dtype, label),
  };
  shape.key = candidateKey(shape, shape);
  return shape;
}

const isCount = (d: Dim | undefined): d is number => typeof d === 'number' && d > 0;

function floatType(dtype: DataType, label: string): LayerShape['dtype'] {
  if (dtype === DataType.FLOAT) return 'float32';
  if (dtype === DataType.FLOAT16) return 'float16';
  throw new RegroupError(
    'unsupported',
    `layer '${label}' has ${dtypeName(dtype)} weights: latency profiles are measured for float32 and float16 layers only`,
  );
}

/** Begin and end pads, with SAME_UPPER/SAME_LOWER/VALID resolved for the input size. */
function explicitPads(
  node: Node,
  inputSize: readonly number[],
  kernel: readonly number[],
  strides: readonly number[],
  dilations: readonly number[],
): number[] {
  const autoPad = node.getString('auto_pad', 'NOTSET');
  const rank = inputSize.length;
  if (autoPad === 'NOTSET') return node.getInts('pads')?.slice() ?? Array<number>(2 * rank).fill(0);
  if (autoPad === 'VALID') return Array<number>(2 * rank).fill(0);
  const begin: number[] = [];
  const end: number[] = [];
  inputSize.forEach((size, axis) => {
    const stride = strides[axis]!;
    const span = dilations[axis]! * (kernel[axis]! - 1) + 1;
    const total = Math.max(0, (Math.ceil(size / stride) - 1) * stride + span - size);
    const small = Math.floor(total / 2);
    begin.push(autoPad === 'SAME_LOWER' ? total - small : small);
    end.push(autoPad === 'SAME_LOWER' ? small : total - small);
  });
  return [...begin, ...end];
}

/**
 * The table entry name of a structure of a shape, e.g.
 * `conv cin=64 cout=64 g=1 k=3x3 s=1x1 p=1,1,1,1 d=1x1 in=56x56` or `gemm in=9216 out=128`
 * (`m=T` follows when a sample has T rows; ` f16` ends the name of a float16 layer).
 */
export function candidateKey(shape: LayerShape, s: Structure): string {
  const half = shape.dtype === 'float16' ? ' f16' : '';
  if (shape.kind !== 'conv')
    return `${shape.kind} in=${s.cin} out=${s.cout}${shape.rows > 1 ? ` m=${shape.rows}` : ''}${half}`;
  const x = (v: readonly number[]) => v.join('x');
  return `conv cin=${s.cin} cout=${s.cout} g=${s.group} k=${x(shape.kernel)} s=${x(shape.strides)} p=${shape.pads.join(',')} d=${x(shape.dilations)} in=${x(shape.inputSize)}${half}`;
}

/** The table key name of a whole model's latency: `model <first 16 hex of sha256 of its bytes>`. */
export function modelKey(sha256Hex: string): string {
  return `model ${sha256Hex.slice(0, 16)}`;
}

/** Channels per SIMD block for the machine a table was measured on (as runtime/providers.ts cpuSimdBlock). */
export function simdBlockOf(key: Pick<TableKey, 'cpuFlags' | 'arch'>): number {
  if (key.cpuFlags.includes('avx512f')) return 16;
  if (key.cpuFlags.includes('avx2') || key.cpuFlags.includes('avx')) return 8;
  return key.arch === 'x64' ? 8 : 4;
}

/** `f·channels` on the grid of `step` (at least one step, at most `channels`); channels ≤ step stay. */
export function gridWidth(channels: number, fraction: number, step: number): number {
  if (channels <= step || fraction >= 1) return channels;
  return Math.min(channels, Math.max(step, Math.round((fraction * channels) / step) * step));
}

/** The measured widths of a side of `channels`: sorted, distinct, always including `channels`. */
export function widthGrid(channels: number, step: number): number[] {
  const widths = new Set(WIDTH_FRACTIONS.map((f) => gridWidth(channels, f, step)));
  widths.add(channels);
  return [...widths].sort((a, b) => a - b);
}

/** Step of group counts for an already grouped layer: the fewest groups whose width is a whole block. */
export function groupStep(shape: LayerShape, block: number): number {
  const perGroup = shape.cin / shape.group;
  return block / gcd(block, perGroup);
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** The group counts a dense layer is measured at (full width). */
export function groupCounts(shape: LayerShape, block: number): number[] {
  if (shape.kind !== 'conv' || shape.group !== 1) return [];
  return GROUP_COUNTS.filter(
    (g) => shape.cin % g === 0 && shape.cout % g === 0 && shape.cin / g >= block && shape.cout / g >= block,
  );
}

/** Every structure of a shape the table measures (see the file header). */
export function candidates(shape: LayerShape, block: number): Structure[] {
  if (shape.group > 1) {
    const inPerGroup = shape.cin / shape.group;
    const outPerGroup = shape.cout / shape.group;
    return widthGrid(shape.group, groupStep(shape, block)).map((g) => ({
      cin: g * inPerGroup,
      cout: g * outPerGroup,
      group: g,
    }));
  }
  const dense: Structure[] = [];
  for (const cin of widthGrid(shape.cin, block))
    for (const cout of widthGrid(shape.cout, block)) dense.push({ cin, cout, group: 1 });
  const grouped = groupCounts(shape, block).map((group) => ({ cin: shape.cin, cout: shape.cout, group }));
  return [...dense, ...grouped];
}
