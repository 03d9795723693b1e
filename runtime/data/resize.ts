/**
 * Image geometry and colour for preprocessing, following what torchvision does on PIL images
 * so published accuracies reproduce:
 *
 *  - resize: PIL's BILINEAR resampling (ImagingResample): separable, horizontal pass then
 *    vertical, each rounded to 8 bits. Output pixel x samples around the input coordinate
 *    center = (x + 0.5)·s, s = in/out, with the triangle filter w(t) = max(0, 1 − |t|) on
 *    t = (i + 0.5 − center)/max(s, 1) over the support ±max(s, 1): plain bilinear when
 *    enlarging, antialiased (area-aware) when shrinking; weights normalised to sum 1.
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
  if (width !== image.width) out = resamplePass(out, width, 'horizontal');
  if (height !== image.height) out = resamplePass(out, height, 'vertical');
  return out;
}

interface Coefficients {
  /** First input index read by each output index. */
  start: Int32Array;
  count: Int32Array;
  /** `maxCount` normalised weights per output index. */
  weights: Float64Array;
  maxCount: number;
}

function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // the triangle filter's support is 1
  const maxCount = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * maxCount);
  for (let x = 0; x < outSize; x++) {
    const center = (x + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    let total = 0;
    for (let i = lo; i < hi; i++) {
      const w = Math.max(0, 1 - Math.abs((i - center + 0.5) / filterScale));
      weights[x * maxCount + i - lo] = w;
      total += w;
    }
    for (let i = 0; i < hi - lo; i++) weights[x * maxCount + i] = total === 0 ? 0 : weights[x * maxCount + i]! / total;
    start[x] = lo;
    count[x] = hi - lo;
  }
  return { start, count, weights, maxCount };
}

function resamplePass(image: RawImage, outSize: number, direction: 'horizontal' | 'vertical'): RawImage {
  const { width, height, channels, data } = image;
  const horizontal = direction === 'horizontal';
  const k = coefficients(horizontal ? width : height, outSize);
  const outWidth = horizontal ? outSize : width;
  const outHeight = horizontal ? height : outSize;
  const out = new Uint8Array(outWidth * outHeight * channels);
  // Step between neighbouring input samples along the resampled axis, in bytes.
  const step = horizontal ? channels : width * channels;
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      const o = horizontal ? x : y;
      const base = horizontal ? (y * width + k.start[o]!) * channels : (k.start[o]! * width + x) * channels;
      const n = k.count[o]!;
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let i = 0; i < n; i++) sum += k.weights[o * k.maxCount + i]! * data[base + i * step + c]!;
        out[(y * outWidth + x) * channels + c] = sum <= 0 ? 0 : sum >= 255 ? 255 : Math.round(sum);
      }
    }
  }
  return { width: outWidth, height: outHeight, channels, data: out };
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
