/**
 * Image geometry and colour for preprocessing, following what torchvision does on PIL images
 * so published accuracies reproduce:
 *
 *  - resize: PIL's BILINEAR resampling (ImagingResample): separable, horizontal pass then
 *    vertical, each rounded to 8 bits. Output pixel x samples around the input coordinate
 *    center = (x + 0.5)·s, s = in/out, with the triangle filter w(t) = max(0, 1 − |t|) on
 *    t = (i + 0.5 − center)/max(s, 1) over the support ±max(s, 1): plain bilinear when
 *    enlarging, antialiased (area-aware) when shrinking; weights normalised to sum 1. In
 *    Pillow's fixed point, so that the bytes are Pillow's: each weight is scaled by 2^22 and
 *    rounded, a sum starts at 2^21 and is shifted right by 22 (ImagingResample's
 *    normalize_coeffs_8bpc and clip8). Against Pillow 12.3 on 500×375 photos (shorter side
 *    to 256, to 100×75, to 700×530, RGB and gray) no byte differs; rounding in floating point
 *    instead moved 1 byte in 50,000 by 1.
 *  - shorter-side resize: short side → S, long side → ⌊S·long/short⌋ (torchvision Resize(int)).
 *  - center crop: top = round((h − th)/2), left = round((w − tw)/2), Python's round
 *    (half to even) as in torchvision CenterCrop.
 *  - RGB → gray: PIL's ITU-R 601-2 luma, L = (19595 R + 38470 G + 7471 B + 32768) >> 16.
 *    Gray → RGB replicates; RGBA drops alpha (no compositing, like PIL convert('RGB')).
 */
import type { RawImage } from './types.js';

/** Convert to 1 or 3 channels (see the header for the formulas). */
export function convertChannels(image: RawImage, channels: 1 | 3): RawImage {
  if (image.channels === channels) return image;
  const { width, height, data } = image;
  const pixels = width * height;
  const out = new Uint8Array(pixels * channels);
  const from = image.channels;
  if (from === 1) {
    for (let p = 0; p < pixels; p++) out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = data[p]!;
  } else if (channels === 3) {
    for (let p = 0; p < pixels; p++) for (let c = 0; c < 3; c++) out[3 * p + c] = data[from * p + c]!;
  } else {
    for (let p = 0; p < pixels; p++)
      out[p] = (19595 * data[from * p]! + 38470 * data[from * p + 1]! + 7471 * data[from * p + 2]! + 32768) >>> 16;
  }
  return { width, height, channels, data: out };
}

/** Output size for torchvision Resize(size) with an int: shorter side → `shorter`. */
export function shorterSideSize(width: number, height: number, shorter: number): { width: number; height: number } {
  return width <= height
    ? { width: shorter, height: Math.floor((shorter * height) / width) }
    : { width: Math.floor((shorter * width) / height), height: shorter };
}

/** PIL-style bilinear resize to width × height (see the header). */
export function resizeBilinear(image: RawImage, width: number, height: number): RawImage {
  let out = image;
  if (width !== image.width) out = resampleRows(out, width);
  if (height !== image.height) out = resampleColumns(out, height);
  return out;
}

/** Pillow's fixed-point precision for 8-bit images: 32 − 8 bits of value − 2 bits of headroom. */
const PRECISION_BITS = 22;
/** Added before the final shift so that it rounds to nearest. */
const HALF = 1 << (PRECISION_BITS - 1);

interface Coefficients {
  /** First input index read by each output index. */
  start: Int32Array;
  count: Int32Array;
  /** `maxCount` weights per output index, normalised to sum 1 and scaled by 2^PRECISION_BITS. */
  weights: Int32Array;
  maxCount: number;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the triangle filter. */
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // the triangle filter's support is 1
  const maxCount = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * maxCount);
  const exact = new Float64Array(maxCount);
  for (let outIndex = 0; outIndex < outSize; outIndex++) {
    const center = (outIndex + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    let total = 0;
    for (let i = lo; i < hi; i++) {
      const w = Math.max(0, 1 - Math.abs((i - center + 0.5) / filterScale));
      exact[i - lo] = w;
      total += w;
    }
    for (let tap = 0; tap < hi - lo; tap++) {
      const w = total === 0 ? 0 : exact[tap]! / total;
      weights[outIndex * maxCount + tap] = Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    start[outIndex] = lo;
    count[outIndex] = hi - lo;
  }
  return { start, count, weights, maxCount };
}

/*
 * The passes write into Uint8ClampedArray, whose stores clamp to 0..255: storing `sum >> 22`
 * is Pillow's clip8. The common case, a downscale by at most 2 (the imagenet preset on a photo
 * whose shorter side is at most 512, as most of ImageNet's are), reads at most four inputs per
 * output; those go through kernels with a fixed 3 or 4 taps, unused taps weighted 0, which V8
 * runs 2–4× faster than a loop over a varying tap count.
 */

/** Coefficients with exactly `taps` per output index; `first` moved left where taps would run past the end. */
interface FixedTaps {
  taps: 3 | 4;
  first: Int32Array;
  weights: Int32Array;
}

function fixedTaps(k: Coefficients, inSize: number): FixedTaps | undefined {
  const most = Math.max(...k.count);
  const taps = most <= 3 ? 3 : 4;
  if (most > 4 || inSize < taps) return undefined;
  const outSize = k.start.length;
  const first = new Int32Array(outSize);
  const weights = new Int32Array(outSize * taps);
  for (let o = 0; o < outSize; o++) {
    const from = Math.min(k.start[o]!, inSize - taps);
    first[o] = from;
    for (let tap = 0; tap < k.count[o]!; tap++)
      weights[o * taps + k.start[o]! - from + tap] = k.weights[o * k.maxCount + tap]!;
  }
  return { taps, first, weights };
}

/** Horizontal pass: every row resampled to `outWidth` pixels. */
function resampleRows(image: RawImage, outWidth: number): RawImage {
  const { width, height, channels, data } = image;
  const k = coefficients(width, outWidth);
  const fixed = channels === 3 ? fixedTaps(k, width) : undefined;
  const out = new Uint8ClampedArray(outWidth * height * channels);
  for (let y = 0; y < height; y++) {
    const rowIn = y * width * channels;
    const rowOut = y * outWidth * channels;
    if (fixed?.taps === 3) rgbRowThreeTaps(data, rowIn, out, rowOut, fixed);
    else if (fixed) rgbRowFourTaps(data, rowIn, out, rowOut, fixed);
    else if (channels === 3) rgbRow(data, rowIn, out, rowOut, k);
    else resampleRow(data, rowIn, out, rowOut, k, channels);
  }
  return { width: outWidth, height, channels, data: new Uint8Array(out.buffer) };
}

function rgbRowThreeTaps(
  data: Uint8Array,
  rowIn: number,
  out: Uint8ClampedArray,
  rowOut: number,
  { first, weights }: FixedTaps,
): void {
  for (let x = 0, o = rowOut; x < first.length; x++, o += 3) {
    const p = rowIn + first[x]! * 3;
    const w0 = weights[3 * x]!;
    const w1 = weights[3 * x + 1]!;
    const w2 = weights[3 * x + 2]!;
    out[o] = (HALF + w0 * data[p]! + w1 * data[p + 3]! + w2 * data[p + 6]!) >> PRECISION_BITS;
    out[o + 1] = (HALF + w0 * data[p + 1]! + w1 * data[p + 4]! + w2 * data[p + 7]!) >> PRECISION_BITS;
    out[o + 2] = (HALF + w0 * data[p + 2]! + w1 * data[p + 5]! + w2 * data[p + 8]!) >> PRECISION_BITS;
  }
}

function rgbRowFourTaps(
  data: Uint8Array,
  rowIn: number,
  out: Uint8ClampedArray,
  rowOut: number,
  { first, weights }: FixedTaps,
): void {
  for (let x = 0, o = rowOut; x < first.length; x++, o += 3) {
    const p = rowIn + first[x]! * 3;
    const w0 = weights[4 * x]!;
    const w1 = weights[4 * x + 1]!;
    const w2 = weights[4 * x + 2]!;
    const w3 = weights[4 * x + 3]!;
    out[o] = (HALF + w0 * data[p]! + w1 * data[p + 3]! + w2 * data[p + 6]! + w3 * data[p + 9]!) >> PRECISION_BITS;
    out[o + 1] =
      (HALF + w0 * data[p + 1]! + w1 * data[p + 4]! + w2 * data[p + 7]! + w3 * data[p + 10]!) >> PRECISION_BITS;
    out[o + 2] =
      (HALF + w0 * data[p + 2]! + w1 * data[p + 5]! + w2 * data[p + 8]! + w3 * data[p + 11]!) >> PRECISION_BITS;
  }
}

/** One RGB row, any number of taps per output pixel. */
function rgbRow(data: Uint8Array, rowIn: number, out: Uint8ClampedArray, rowOut: number, k: Coefficients): void {
  const { start, count, weights, maxCount } = k;
  for (let x = 0, o = rowOut; x < start.length; x++, o += 3) {
    let red = HALF;
    let green = HALF;
    let blue = HALF;
    let p = rowIn + start[x]! * 3;
    for (let w = x * maxCount, end = w + count[x]!; w < end; w++, p += 3) {
      const weight = weights[w]!;
      red += weight * data[p]!;
      green += weight * data[p + 1]!;
      blue += weight * data[p + 2]!;
    }
    out[o] = red >> PRECISION_BITS;
    out[o + 1] = green >> PRECISION_BITS;
    out[o + 2] = blue >> PRECISION_BITS;
  }
}

/** One row, any channel count, any number of taps per output pixel. */
function resampleRow(
  data: Uint8Array,
  rowIn: number,
  out: Uint8ClampedArray,
  rowOut: number,
  k: Coefficients,
  channels: number,
): void {
  const { start, count, weights, maxCount } = k;
  for (let x = 0; x < start.length; x++) {
    for (let c = 0; c < channels; c++) {
      let sum = HALF;
      let at = rowIn + start[x]! * channels + c;
      for (let w = x * maxCount, end = w + count[x]!; w < end; w++, at += channels) sum += weights[w]! * data[at]!;
      out[rowOut + x * channels + c] = sum >> PRECISION_BITS;
    }
  }
}

/** Vertical pass: output row y is a weighted sum of a few consecutive whole input rows. */
function resampleColumns(image: RawImage, outHeight: number): RawImage {
  const { width, height, channels, data } = image;
  const k = coefficients(height, outHeight);
  const fixed = fixedTaps(k, height);
  const rowBytes = width * channels;
  const out = new Uint8ClampedArray(rowBytes * outHeight);
  if (fixed) {
    const { taps, first, weights } = fixed;
    for (let y = 0; y < outHeight; y++) {
      const w = weights.subarray(y * taps, (y + 1) * taps);
      if (taps === 3) blendThreeRows(data, first[y]! * rowBytes, rowBytes, w, out, y * rowBytes);
      else blendFourRows(data, first[y]! * rowBytes, rowBytes, w, out, y * rowBytes);
    }
  } else {
    // Four rows at a time into 32-bit sums; a last group short of four repeats its first row at weight 0.
    const sums = new Int32Array(rowBytes).fill(HALF);
    const group = new Int32Array(4);
    for (let y = 0; y < outHeight; y++) {
      const taps = k.count[y]!;
      for (let from = 0; from < taps; from += 4) {
        for (let g = 0; g < 4; g++) group[g] = from + g < taps ? k.weights[y * k.maxCount + from + g]! : 0;
        const rows = Math.min(4, taps - from);
        addFourRows(data, (k.start[y]! + from) * rowBytes, rowBytes, rows, group, sums);
      }
      for (let i = 0, o = y * rowBytes; i < rowBytes; i++) {
        out[o + i] = sums[i]! >> PRECISION_BITS;
        sums[i] = HALF;
      }
    }
  }
  return { width, height: outHeight, channels, data: new Uint8Array(out.buffer) };
}

function blendThreeRows(
  data: Uint8Array,
  row: number,
  length: number,
  weights: Int32Array,
  out: Uint8ClampedArray,
  at: number,
): void {
  const [w0, w1, w2] = weights as unknown as [number, number, number];
  const r1 = row + length;
  const r2 = r1 + length;
  for (let i = 0; i < length; i++)
    out[at + i] = (HALF + w0 * data[row + i]! + w1 * data[r1 + i]! + w2 * data[r2 + i]!) >> PRECISION_BITS;
}

function blendFourRows(
  data: Uint8Array,
  row: number,
  length: number,
  weights: Int32Array,
  out: Uint8ClampedArray,
  at: number,
): void {
  const [w0, w1, w2, w3] = weights as unknown as [number, number, number, number];
  const r1 = row + length;
  const r2 = r1 + length;
  const r3 = r2 + length;
  for (let i = 0; i < length; i++)
    out[at + i] =
      (HALF + w0 * data[row + i]! + w1 * data[r1 + i]! + w2 * data[r2 + i]! + w3 * data[r3 + i]!) >> PRECISION_BITS;
}

/** sums += Σ weights[g]·row g, for `rows` (1–4) consecutive rows from `row`; weights beyond them are 0. */
function addFourRows(
  data: Uint8Array,
  row: number,
  length: number,
  rows: number,
  weights: Int32Array,
  sums: Int32Array,
): void {
  const [w0, w1, w2, w3] = weights as unknown as [number, number, number, number];
  const r1 = rows > 1 ? row + length : row;
  const r2 = rows > 2 ? r1 + length : row;
  const r3 = rows > 3 ? r2 + length : row;
  for (let i = 0; i < length; i++)
    sums[i] = sums[i]! + w0 * data[row + i]! + w1 * data[r1 + i]! + w2 * data[r2 + i]! + w3 * data[r3 + i]!;
}

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision CenterCrop for an image at least width × height. */
export function centerCrop(image: RawImage, width: number, height: number): RawImage {
  if (image.width === width && image.height === height) return image;
  const top = roundHalfEven((image.height - height) / 2);
  const left = roundHalfEven((image.width - width) / 2);
  const { channels, data } = image;
  const out = new Uint8Array(width * height * channels);
  const rowBytes = width * channels;
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * image.width + left) * channels;
    out.set(data.subarray(from, from + rowBytes), y * rowBytes);
  }
  return { width, height, channels, data: out };
}
