/**
 * Gradient of Conv (any group, stride, dilation, pads or auto_pad):
 * y[n, o, q] = Σ_{c ∈ group(o), j} W[o, c, j] · x[n, c, q·s − p + j·d] + b[o].
 *
 *   ∂x = ConvTranspose(∂y, W) with the same stride, dilation, group and begin pads, end pads
 *        and output_padding from window.ts so the result has x's spatial size. With unit
 *        strides it is a plain correlation of ∂y with the flipped kernel,
 *          ∂x[n, c, i] = Σ_{o ∈ group(c), j} W[o, c, K−1−j] · ∂y[n, o, i − (K−1−j)·d + p],
 *        i.e. Conv(∂y, W̃) with W̃[c, o, j] = W[o, c, K−1−j] (per group), begin pads
 *        (K−1)·d − p_begin and end pads that give x's size; onnxruntime's CPU provider runs a
 *        Conv in its blocked layout and a ConvTranspose through im2col-style buffers.
 *   ∂W = patch extraction + MatMul (DESIGN.md: about 2× a forward conv on the CPU provider,
 *        against 5–9× for a Conv with batch and channels swapped):
 *          P = Conv(x, E, group = C) with E[c·K + j, 0] = one-hot(j), K = ∏ kernel —
 *              P[n, c·K + j, q] = x[n, c, q·s − p + j·d] (zero in the padding);
 *          per group g: ∂W_g = Σ_n ∂y_g[n] · P_g[n]ᵀ, computed as
 *              ReduceSum_n(MatMul(P_g [N, C_g·K, L], ∂y_gᵀ [N, L, M_g])) then transposed.
 *        A 1×1 kernel with stride 1 and no padding reads x itself: P = x.
 *     or, for 2-D kernels with unit height stride, by shifted copies (shiftedWeightGradient):
 *        with kernel row i, column j, rows r of x and begin pads p_h, p_w,
 *          ∂W[o, c, i, j] = Σ_{n, r, q} ∂y[n, o, r + p_h − i·d_h, q] · x[n, c, r, q·s_w − p_w + j·d_w]
 *        (∂y zero outside its rows) — X_j = x shifted along the width per column j (a one-hot
 *        1×k_w grouped Conv, k_w × x) and D_i = ∂y shifted along the height per row i (k_h ×
 *        ∂y); one batched MatMul of [D_0 … D_{k_h−1}] against [X_0 … X_{k_w−1}] gives every
 *        (i, j) at once: the same multiply-adds as the patches, k_h·O + k_w·C channels of
 *        intermediates instead of k_h·k_w·C. The default picks it where those are fewer.
 *     or, for a 2-D depthwise Conv (group = C = O) with a static batch N (batchGroupedWeightGradient):
 *          ∂W[c, 0, i, j] = Σ_n Σ_q ∂y[n, c, q] · x[n, c, q·s − p + (i, j)·d]
 *        is one depthwise Conv over the N·C (sample, channel) pairs — input x as [1, N·C, H, W],
 *        kernel ∂y as [N·C, 1, H_out, W_out], stride d, dilation s, the forward's begin pads —
 *        whose [1, N·C, k_h, k_w] output is summed over the samples. In onnxruntime's blocked
 *        layout x and ∂y are already in the bytes that Conv needs (blocked-conv.ts); measured
 *        at batch 128, 64 channels at 28×28: 27.4 ms by shifted copies, 5.3 ms this way.
 *   ∂b = Σ_{n, q} ∂y.
 */
import { attr } from '../../ir/attribute.js';
import type { DataType } from '../../ir/dtype.js';
import type { Value } from '../../ir/node.js';
import { floatTensor } from '../emitter.js';
import type { GradientRule, RuleContext } from './context.js';
import { staticShape } from './helpers.js';
import { explicitPads, transposeGeometry, windowOf, type Window } from './window.js';

const product = (dims: readonly number[]) => dims.reduce((p, d) => p * d, 1);

const conv: GradientRule = (c) => {
  const [x, w] = [c.node.input(0), c.node.input(1)];
  const dy = c.grad(0)!;
  const wShape = staticShape(c, w);
  const kernel = c.node.getInts('kernel_shape') ?? wShape.slice(2);
  const window = windowOf(c, x, c.node.output(0), kernel);
  const group = c.node.getInt('group', 1);
  const spatialAxes = kernel.map((_, a) => a + 2);
  return [
    c.needs(0) ? inputGradient(c, dy, w, wShape, window, group) : undefined,
    c.needs(1) ? weightGradient(c, dy, x, wShape, window, group) : undefined,
    c.needs(2) ? c.e.reduceSum(dy, [0, ...spatialAxes], false) : undefined,
  ];
};

/** ∂x: the flipped-kernel Conv where it applies (unless the options ask for ConvTranspose), else ConvTranspose(∂y, W). */
function inputGradient(
  c: RuleContext,
  dy: Value,
  w: Value,
  wShape: readonly number[],
  window: Window,
  group: number,
): Value {
  const flipped =
    c.options.convInputGradient === 'transpose' ? undefined : flippedConvGradient(c, dy, w, wShape, window, group);
  if (flipped) return flipped;
  const { pads, outputPadding } = transposeGeometry(window);
  return c.e.op(
    'ConvTranspose',
    [dy, w],
    [
      attr.ints('kernel_shape', window.kernel),
      attr.ints('strides', window.strides),
      attr.ints('dilations', window.dilations),
      attr.ints('pads', pads),
      attr.ints('output_padding', outputPadding),
      attr.int('group', group),
    ],
  );
}

/**
 * ∂x as Conv(∂y, W̃) for unit strides (see the header); undefined where that form does not
 * apply (a stride, or padding wider than the dilated kernel, which would need negative pads).
 */
function flippedConvGradient(
  c: RuleContext,
  dy: Value,
  w: Value,
  wShape: readonly number[],
  window: Window,
  group: number,
): Value | undefined {
  if (window.strides.some((s) => s !== 1)) return undefined;
  const reach = window.kernel.map((k, a) => (k - 1) * window.dilations[a]!);
  const begin = reach.map((r, a) => r - window.padsBegin[a]!);
  const end = reach.map((r, a) => window.inSize[a]! - window.outSize[a]! - begin[a]! + r);
  if ([...begin, ...end].some((p) => p < 0)) return undefined;
  const [outChannels, groupChannels] = [wShape[0]!, wShape[1]!];
  const kernel = window.kernel;
  // [O, C/g, K…] → [g, O/g, C/g, K…] → [g, C/g, O/g, K…] → [C, O/g, K…], then flip every spatial axis.
  const spatial = kernel.map((_, a) => a + 3);
  const grouped = c.e.reshape(w, c.e.int64([group, outChannels / group, groupChannels, ...kernel]));
  const swapped = c.e.transpose(grouped, [0, 2, 1, ...spatial]);
  const flipped = reverseAxes(
    c,
    c.e.reshape(swapped, c.e.int64([group * groupChannels, outChannels / group, ...kernel])),
    kernel.map((_, a) => a + 2),
    kernel,
  );
  return c.e.op(
    'Conv',
    [dy, flipped],
    [
      attr.ints('kernel_shape', kernel),
      attr.ints('dilations', window.dilations),
      attr.ints('pads', [...begin, ...end]),
      attr.int('group', group),
    ],
  );
}

/** What every ∂W form reads: ∂y, x, the window, and the weight's layout [O, C/g, k…] in g groups. */
interface WeightGradientInputs {
  readonly dy: Value;
  readonly x: Value;
  readonly window: Window;
  readonly wShape: readonly number[];
  readonly group: number;
  /** O and C/g. */
  readonly outChannels: number;
  readonly groupChannels: number;
}

/** ∂W in the form the options ask for (see GradientOptions.convWeightGradient). */
function weightGradient(
  c: RuleContext,
  dy: Value,
  x: Value,
  wShape: readonly number[],
  window: Window,
  group: number,
): Value {
  const g: WeightGradientInputs = { dy, x, window, wShape, group, outChannels: wShape[0]!, groupChannels: wShape[1]! };
  const form = c.options.convWeightGradient ?? 'auto';
  if (form === 'batch-grouped' || (form === 'auto' && c.options.blockedLayout)) {
    const batched = batchGroupedWeightGradient(c, g, form === 'auto');
    if (batched) return batched;
  }
  if (form === 'swapped' && group === 1) return swappedWeightGradient(c, g);
  const shifts = form === 'auto' || form === 'shifted' ? rowShifts(window) : undefined;
  if (shifts && (form === 'shifted' || shiftedIsSmaller(g))) return shiftedWeightGradient(c, g, shifts);
  return patchWeightGradient(c, g);
}

/**
 * Pads of the height shifts of ∂y (rows (k_h − 1)·d_h − p above and below), or undefined
 * where the shifted form does not apply: not a 2-D kernel, a height stride, or a height pad
 * wider than the dilated kernel.
 */
function rowShifts(window: Window): { top: number; bottom: number } | undefined {
  if (window.kernel.length !== 2 || window.strides[0] !== 1) return undefined;
  const reach = (window.kernel[0]! - 1) * window.dilations[0]!;
  const [top, bottom] = [reach - window.padsBegin[0]!, reach - window.padsEnd[0]!];
  return top >= 0 && bottom >= 0 ? { top, bottom } : undefined;
}

/** Elements per sample: shifted copies (k_w·C + k_h·O over H × W_out) against patches (k_h·k_w·C × H_out × W_out). */
function shiftedIsSmaller({ window, group, outChannels, groupChannels }: WeightGradientInputs): boolean {
  const [kh, kw] = window.kernel as [number, number];
  const channels = groupChannels * group;
  const shifted = (kw * channels + kh * outChannels) * window.inSize[0]!;
  return shifted < kh * kw * channels * window.outSize[0]!;
}

/** ∂W by shifted copies of x (per kernel column) and ∂y (per kernel row), one batched MatMul per group (see the header). */
function shiftedWeightGradient(
  c: RuleContext,
  { dy, x, window, group, outChannels, groupChannels }: WeightGradientInputs,
  shifts: { top: number; bottom: number },
): Value {
  const [kh, kw] = window.kernel as [number, number];
  const positions = window.inSize[0]! * window.outSize[1]!;
  // X[n, c·k_w + j, r, q] = x[n, c, r, q·s_w − p_w + j·d_w]
  const dtype = c.dtype(x);
  const columns = tapCopies(c, x, dtype, groupChannels * group, {
    kernel: [1, kw],
    strides: [1, window.strides[1]!],
    dilations: [1, window.dilations[1]!],
    pads: [0, window.padsBegin[1]!, 0, window.padsEnd[1]!],
  });
  // D[n, o·k_h + t, r, q] = ∂y[n, o, r + t·d_h − top, q]: kernel row i = k_h − 1 − t
  const rows = tapCopies(c, dy, dtype, outChannels, {
    kernel: [kh, 1],
    strides: [1, 1],
    dilations: [window.dilations[0]!, 1],
    pads: [shifts.top, 0, shifts.bottom, 0],
  });
  const d = c.e.reshape(rows, c.e.int64([0, group, (outChannels / group) * kh, positions]));
  const xs = c.e.reshape(columns, c.e.int64([0, group, groupChannels * kw, positions]));
  const perSample = c.e.op('MatMul', [d, c.e.transpose(xs, [0, 1, 3, 2])]);
  // [g, O/g·k_h, C/g·k_w] → [O, t, C/g, j] → [O, C/g, t, j], t reversed into i
  const summed = c.e.reshape(c.e.reduceSum(perSample, [0], false), c.e.int64([outChannels, kh, groupChannels, kw]));
  return reverseAxes(c, c.e.transpose(summed, [0, 2, 1, 3]), [2], [kh]);
}

/**
 * ∂W of a 2-D depthwise Conv as one depthwise Conv over batch × channels (see the header), or
 * undefined where it does not apply: not 2-D, not depthwise, or a batch the graph does not fix;
 * with `blocks`, also where N·C is not a multiple of 16 (the blocked kernel would not take it
 * with 16-float blocks, and the plain one runs it slower than the other forms).
 */
function batchGroupedWeightGradient(
  c: RuleContext,
  { dy, x, window, wShape, group, outChannels, groupChannels }: WeightGradientInputs,
  blocks: boolean,
): Value | undefined {
  const batch = c.shape(x)[0];
  if (window.kernel.length !== 2 || groupChannels !== 1 || outChannels !== group || typeof batch !== 'number')
    return undefined;
  const pairs = batch * group;
  if (blocks && pairs % 16 !== 0) return undefined;
  const [inputs, outputs] = [window.inSize as number[], window.outSize as number[]];
  const full = c.e.op(
    'Conv',
    [c.e.reshape(x, c.e.int64([1, pairs, ...inputs])), c.e.reshape(dy, c.e.int64([pairs, 1, ...outputs]))],
    [
      attr.ints('kernel_shape', outputs),
      attr.ints('strides', window.dilations),
      attr.ints('dilations', window.strides),
      attr.ints('pads', [...window.padsBegin, ...coveringEndPads(window)]),
      attr.int('group', pairs),
    ],
  );
  const perSample = c.e.reshape(cropToKernel(c, full, window), c.e.int64([batch, group, ...window.kernel]));
  return c.e.reshape(c.e.reduceSum(perSample, [0], false), c.e.int64(wShape));
}

/**
 * End pads of a Conv with ∂y as its kernel (stride d, dilation s) that give at least k outputs
 * per axis: d·(k − 1) + s·(H_out − 1) + 1 − H − p_begin, or none.
 */
function coveringEndPads(window: Window): number[] {
  return window.kernel.map((k, a) =>
    Math.max(
      0,
      window.dilations[a]! * (k - 1) +
        window.strides[a]! * (window.outSize[a]! - 1) +
        1 -
        window.inSize[a]! -
        window.padsBegin[a]!,
    ),
  );
}

/** The first k positions of every spatial axis (a stride that skips x's last rows leaves more). */
function cropToKernel(c: RuleContext, full: Value, window: Window): Value {
  const axes = window.kernel.map((_, a) => a + 2);
  return c.e.op('Slice', [full, c.e.int64(axes.map(() => 0)), c.e.int64([...window.kernel]), c.e.int64(axes)]);
}

/** ∂W by patch extraction and a batched MatMul per group. */
function patchWeightGradient(
  c: RuleContext,
  { dy, x, window, wShape, group, outChannels, groupChannels }: WeightGradientInputs,
): Value {
  const taps = product(window.kernel);
  const positions = product(window.outSize);
  const patches = extractPatches(c, x, groupChannels * group, window);
  const p = c.e.reshape(patches, c.e.int64([0, group, groupChannels * taps, positions]));
  const g = c.e.reshape(dy, c.e.int64([0, group, outChannels / group, positions]));
  const perSample = c.e.op('MatMul', [p, c.e.transpose(g, [0, 1, 3, 2])]);
  const summed = c.e.reduceSum(perSample, [0], false);
  return c.e.reshape(c.e.transpose(summed, [0, 2, 1]), c.e.int64(wShape));
}

/**
 * ∂W[o, c, j] = Σ_{n,q} ∂y[n, o, q]·x[n, c, q·s − p + j·d] as one Conv with batch and
 * channels swapped: input xᵀ [C, N, H…], kernel ∂yᵀ [M, N, O…], stride d, dilation s, the
 * forward's begin pads and enough end padding for k outputs; sliced to k, transposed.
 */
function swappedWeightGradient(c: RuleContext, { dy, x, window, wShape }: WeightGradientInputs): Value {
  const swap = [1, 0, ...window.kernel.map((_, a) => a + 2)];
  const ends = coveringEndPads(window);
  const full = c.e.op(
    'Conv',
    [c.e.transpose(x, swap), c.e.transpose(dy, swap)],
    [
      attr.ints('strides', window.dilations),
      attr.ints('dilations', window.strides),
      attr.ints('pads', [...window.padsBegin, ...ends]),
    ],
  );
  return c.e.reshape(c.e.transpose(cropToKernel(c, full, window), swap), c.e.int64(wShape));
}

/** P[n, c·K + j, q] = x[n, c, window tap j of output q], or x itself for a plain 1×1 kernel. */
function extractPatches(c: RuleContext, x: Value, channels: number, window: Window): Value {
  const plain =
    window.kernel.every((k) => k === 1) &&
    window.strides.every((s) => s === 1) &&
    explicitPads(window).every((p) => p === 0);
  if (plain) return x;
  return tapCopies(c, x, c.dtype(x), channels, { ...window, pads: explicitPads(window) });
}

/**
 * One copy of `input` (a forward or a gradient value, hence the element type given) per tap of
 * `kernel`, as a grouped Conv with one-hot filters:
 * output channel c·K + j is tap j of input channel c.
 */
function tapCopies(
  c: RuleContext,
  input: Value,
  dtype: DataType,
  channels: number,
  geometry: {
    kernel: readonly number[];
    strides: readonly number[];
    dilations: readonly number[];
    pads: readonly number[];
  },
): Value {
  return c.e.op(
    'Conv',
    [input, oneHotKernel(c, channels, geometry.kernel, dtype)],
    [
      attr.ints('kernel_shape', geometry.kernel),
      attr.ints('strides', geometry.strides),
      attr.ints('dilations', geometry.dilations),
      attr.ints('pads', geometry.pads),
      attr.int('group', channels),
    ],
  );
}

/** `value` with the given axes (of the given sizes) reversed; size-1 axes are left alone. */
function reverseAxes(c: RuleContext, value: Value, axes: readonly number[], sizes: readonly number[]): Value {
  const flipped = axes.filter((_, k) => sizes[k]! > 1);
  if (flipped.length === 0) return value;
  return c.e.op('Slice', [
    value,
    c.e.int64(flipped.map(() => -1)),
    c.e.int64(flipped.map((a) => -(sizes[axes.indexOf(a)]! + 1))),
    c.e.int64(flipped),
    c.e.int64(flipped.map(() => -1)),
  ]);
}

/** E [C·K, 1, k…]: output channel c·K + j copies tap j of input channel c. */
function oneHotKernel(c: RuleContext, channels: number, kernel: readonly number[], dtype: DataType): Value {
  const taps = product(kernel);
  return c.e.constant(`patches:${dtype}:${channels}:${kernel.join('x')}`, () => {
    const data = new Float64Array(channels * taps * taps);
    for (let row = 0; row < channels * taps; row++) data[row * taps + (row % taps)] = 1;
    return floatTensor(dtype, [channels * taps, 1, ...kernel], data);
  });
}

export const CONV_RULES: Record<string, GradientRule> = { Conv: conv };
