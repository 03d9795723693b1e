/**
 * Shape rules for ops that slide a window over spatial axes, or resize them.
 *
 * With effective kernel k' = d·(k − 1) + 1 (dilation d), stride s, pads pb/pe:
 *
 *   Conv, pools (NOTSET)   out = ⌊(in + pb + pe − k') / s⌋ + 1
 *   pools, ceil_mode = 1   out = ⌈(in + pb + pe − k') / s⌉ + 1, minus 1 when the last window
 *                          would start inside the end padding: (out − 1)·s ≥ in + pb
 *   VALID                  the same with pb = pe = 0
 *   SAME_UPPER/SAME_LOWER  out = ⌈in / s⌉
 *   ConvTranspose          out = s·(in − 1) + output_padding + k' − pb − pe,
 *                          or in·s with SAME_*, or the `output_shape` attribute
 *   Resize / Upsample      out = ⌊in · scale⌋ (scale as float32), or the `sizes` input
 *   Pad                    out = in + pb + pe
 *
 * A symbolic spatial size survives only when the window leaves it unchanged (stride 1 and
 * pb + pe = k' − 1, an integral resize scale, zero padding); otherwise it becomes unknown.
 */
import { DataType } from '../ir/dtype.js';
import type { Node } from '../ir/node.js';
import { floatsAttr, normalizeAxes, range, Unresolved, type ShapeContext } from './shape-context.js';
import { addDim, mulDim, divDim, type Dim } from './shape-values.js';

interface Window {
  readonly kernel: readonly (number | null)[];
  readonly strides: readonly number[];
  readonly dilations: readonly number[];
  readonly pads: readonly number[];
  readonly autoPad: string;
}

function windowOf(node: Node, kernel: readonly (number | null)[]): Window {
  const n = kernel.length;
  return {
    kernel,
    strides: node.getInts('strides') ?? Array<number>(n).fill(1),
    dilations: node.getInts('dilations') ?? Array<number>(n).fill(1),
    pads: node.getInts('pads') ?? Array<number>(2 * n).fill(0),
    autoPad: node.getString('auto_pad', 'NOTSET'),
  };
}

const isSame = (autoPad: string) => autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER';

/** Output size of one spatial axis of a sliding window. */
function slidingDim(inDim: Dim, w: Window, axis: number, ceilMode: boolean): Dim {
  const stride = w.strides[axis] ?? 1;
  if (isSame(w.autoPad)) {
    if (typeof inDim === 'number') return Math.ceil(inDim / stride);
    return stride === 1 ? inDim : null;
  }
  const k = w.kernel[axis];
  if (k === null || k === undefined || inDim === null) return null;
  const span = (w.dilations[axis] ?? 1) * (k - 1) + 1;
  const valid = w.autoPad === 'VALID';
  const padBegin = valid ? 0 : (w.pads[axis] ?? 0);
  const padEnd = valid ? 0 : (w.pads[axis + w.kernel.length] ?? 0);
  if (typeof inDim !== 'number') return stride === 1 && padBegin + padEnd === span - 1 ? inDim : null;
  const room = inDim + padBegin + padEnd - span;
  if (room < 0) throw new RangeError(`window ${span} does not fit input ${inDim} with pads ${padBegin}+${padEnd}`);
  let out = (ceilMode ? Math.ceil(room / stride) : Math.floor(room / stride)) + 1;
  if (ceilMode && (out - 1) * stride >= inDim + padBegin) out--;
  return out;
}

/** Kernel sizes from the attribute, else from the weight's trailing dims. */
function kernelOf(node: Node, spatialRank: number, weight: readonly Dim[] | undefined): (number | null)[] {
  const attr = node.getInts('kernel_shape');
  if (attr) return [...attr];
  if (weight) return weight.slice(2).map((d) => (typeof d === 'number' ? d : null));
  return Array<null>(spatialRank).fill(null);
}

/** Conv and its quantized forms: X [N, C, …] * W [M, C/group, k…] → [N, M, …]. */
export function convShape(c: ShapeContext, xIndex: number, wIndex: number, dtype?: DataType): void {
  const x = c.shape(xIndex);
  const weight = c.tryShape(wIndex);
  const spatial = x.slice(2);
  const w = windowOf(c.node, kernelOf(c.node, spatial.length, weight));
  const out = spatial.map((d, axis) => slidingDim(d, w, axis, false));
  c.out(0, [x[0] ?? null, weight?.[0] ?? null, ...out], dtype ?? c.dtype(xIndex));
}

/** ConvTranspose: X [N, C, …] with W [C, M/group, k…] → [N, M, …]. */
export function convTransposeShape(c: ShapeContext): void {
  const x = c.shape(0);
  const weight = c.tryShape(1);
  const spatial = x.slice(2);
  const w = windowOf(c.node, kernelOf(c.node, spatial.length, weight));
  const outChannels = mulDim(weight?.[1] ?? null, c.node.getInt('group', 1));
  const given = c.node.getInts('output_shape');
  const out = given
    ? given.slice(given.length - spatial.length)
    : spatial.map((d, axis) => transposedDim(d, w, axis, c.node));
  c.out(0, [x[0] ?? null, outChannels, ...out]);
}

function transposedDim(inDim: Dim, w: Window, axis: number, node: Node): Dim {
  const stride = w.strides[axis] ?? 1;
  if (isSame(w.autoPad)) return mulDim(inDim, stride);
  const k = w.kernel[axis];
  if (k === null || k === undefined || inDim === null) return null;
  const valid = w.autoPad === 'VALID';
  const pads = valid ? 0 : (w.pads[axis] ?? 0) + (w.pads[axis + w.kernel.length] ?? 0);
  const extra = (node.getInts('output_padding')?.[axis] ?? 0) + (w.dilations[axis] ?? 1) * (k - 1) + 1 - pads;
  if (typeof inDim === 'number') return stride * (inDim - 1) + extra;
  return stride === 1 && extra === 1 ? inDim : null;
}

/** MaxPool / AveragePool / LpPool, with MaxPool's optional Indices output. */
export function poolShape(c: ShapeContext): void {
  const x = c.shape(0);
  const kernel = c.node.getInts('kernel_shape');
  if (!kernel) throw new RangeError('pool has no kernel_shape');
  const w = windowOf(c.node, kernel);
  const ceilMode = c.node.getInt('ceil_mode', 0) === 1;
  const out = [x[0] ?? null, x[1] ?? null, ...x.slice(2).map((d, axis) => slidingDim(d, w, axis, ceilMode))];
  c.out(0, out);
  c.out(1, out, DataType.INT64);
}

/** GlobalAveragePool / GlobalMaxPool / GlobalLpPool: [N, C, 1, …]. */
export function globalPoolShape(c: ShapeContext): void {
  const x = c.shape(0);
  c.out(
    0,
    x.map((d, axis) => (axis < 2 ? d : 1)),
  );
}

/** Pad: pads from the attribute (`paddings` before opset 2, `pads` before 11) or input 1, over input 3's axes (opset 18). */
export function padShape(c: ShapeContext): void {
  const x = c.shape(0);
  const pads = c.opset < 11 ? c.node.getInts(c.opset < 2 ? 'paddings' : 'pads') : c.numbers(1);
  if (!pads) throw new RangeError('Pad has no pads');
  const given = c.opset >= 18 ? c.optionalNumbers(3) : undefined;
  const axes = given ? normalizeAxes(given, x.length) : range(x.length);
  if (pads.length !== 2 * axes.length) throw new RangeError(`Pad has ${pads.length} pads for ${axes.length} axes`);
  const out = [...x];
  axes.forEach((axis, k) => (out[axis] = addDim(x[axis]!, pads[k]! + pads[k + axes.length]!)));
  c.out(0, out);
}

/** Resize (opset 10: scales; 11+: roi, scales, sizes; 18: axes, keep_aspect_ratio_policy) and Upsample. */
export function resizeShape(c: ShapeContext): void {
  const x = c.shape(0);
  const given = c.opset >= 18 ? c.node.getInts('axes') : undefined;
  const axes = given ? normalizeAxes(given, x.length) : range(x.length);
  const { scales, sizes } = resizeTargets(c);
  const out = [...x];
  if (sizes) sizedAxes(c.node, x, axes, sizes).forEach((d, k) => (out[axes[k]!] = d));
  else if (scales) axes.forEach((axis, k) => (out[axis] = scaledDim(x[axis]!, scales[k]!)));
  else throw new Unresolved('Resize has neither known scales nor known sizes');
  c.out(0, out);
}

/** Scales, or sizes (whose elements may be symbols when computed from a symbolic input shape). */
function resizeTargets(c: ShapeContext): { scales?: readonly number[]; sizes?: readonly Dim[] } {
  if (c.node.opType === 'Upsample') return { scales: c.opset < 9 ? floatsAttr(c.node, 'scales') : c.numbers(1) };
  if (c.opset < 11) return { scales: c.numbers(1) };
  if (!c.has(3)) return { scales: c.optionalNumbers(2) };
  const sizes = c.value(3);
  if (!sizes) throw new Unresolved(`Resize sizes ('${c.node.inputs[3]!.name}') are not known`);
  return sizes.length > 0 ? { sizes } : { scales: c.optionalNumbers(2) };
}

/** ⌊in · scale⌋ computed in float32 like onnxruntime; a symbol survives an integral scale. */
function scaledDim(inDim: Dim, scale: number): Dim {
  if (typeof inDim === 'number') return Math.floor(Math.fround(Math.fround(scale) * inDim));
  return Number.isInteger(scale) && scale > 0 ? mulDim(inDim, scale) : null;
}

/** Sizes as given ('stretch'), or one common scale (min for not_larger, max for not_smaller), rounded. */
function sizedAxes(node: Node, x: readonly Dim[], axes: readonly number[], sizes: readonly Dim[]): Dim[] {
  const policy = node.getString('keep_aspect_ratio_policy', 'stretch');
  if (policy === 'stretch') return [...sizes];
  const inDims = axes.map((axis) => x[axis]);
  const isNumber = (d: Dim | undefined): d is number => typeof d === 'number';
  if (!inDims.every(isNumber) || !sizes.every(isNumber)) return axes.map(() => null);
  const ratios = inDims.map((d, k) => (sizes[k] as number) / d);
  const scale = policy === 'not_larger' ? Math.min(...ratios) : Math.max(...ratios);
  return inDims.map((d) => Math.round(scale * d));
}

/** DepthToSpace [N, C, H, W] → [N, C/b², H·b, W·b]; SpaceToDepth the inverse. */
export function depthSpaceShape(c: ShapeContext): void {
  const [n, ch, h, w] = c.shape(0);
  const b = c.node.getInt('blocksize', 1);
  const toSpace = c.node.opType === 'DepthToSpace';
  const scale = (d: Dim | undefined) => (toSpace ? mulDim(d ?? null, b) : divDim(d ?? null, b));
  const channels = toSpace ? divDim(ch ?? null, b * b) : mulDim(ch ?? null, b * b);
  c.out(0, [n ?? null, channels, scale(h), scale(w)]);
}
