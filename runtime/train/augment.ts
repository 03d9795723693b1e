/**
 * Training-time augmentation of 8-bit images (before normalisation), seeded so that runs
 * repeat and a resumed run sees the same images as an uninterrupted one.
 *
 * Random crop with zero padding (torchvision RandomCrop(size, padding=p), fill 0): pad the
 * H×W image by p zero pixels on every side, draw dy, dx uniformly from {0 … 2p} and keep
 *   out[y, x, c] = padded[y + dy, x + dx, c] = in[y + dy − p, x + dx − p, c]  (0 outside the image).
 * Horizontal flip with probability ½: out[y, x, c] = in[y, W − 1 − x, c].
 * Per image the draws are, in order: dy, dx (only when p > 0), then the flip coin (only when
 * flipping is on). Zero is the raw pixel value 0, so after normalisation padding reads
 * (0 − mean) / std, as in torchvision where padding happens before ToTensor/Normalize.
 */
import { RegroupError } from '../../compiler/errors.js';
import { Random } from '../../compiler/util/random.js';
import type { InputSpec, LabeledImage, RawImage } from '../data/types.js';

/** Which augmentations a run applies. */
export interface AugmentSpec {
  /** Zero padding of the random crop in pixels (0: no crop). */
  readonly pad: number;
  /** Random horizontal flip with probability ½. */
  readonly flip: boolean;
}

/** The default policy and why, for a dataset spec given on the command line. */
export interface AugmentChoice {
  readonly augment: AugmentSpec | undefined;
  readonly reason: string;
}

/**
 * Default augmentation for a dataset spec (`mnist`, `fashion-mnist[:split]`, `idx:PATH`,
 * a folder) and the model input: MNIST digits get crops (pad 2) only, since a flipped 2 or 5
 * is another glyph; Fashion-MNIST crops (pad 2) and flips; folders of small images (≤ 64 px,
 * CIFAR-like) crops with pad ⌈size/8⌉ (4 at 32 px) and flips; larger images flips only; IDX
 * files (often digits, content unknown) crops (pad size/14) only.
 */
export function defaultAugmentation(dataSpec: string, spec: Pick<InputSpec, 'height' | 'width'>): AugmentChoice {
  const size = Math.min(spec.height, spec.width);
  if (/^mnist(:|$)/.test(dataSpec))
    return { augment: { pad: 2, flip: false }, reason: 'MNIST digits: random crop (pad 2), no flip' };
  if (/^fashion-mnist(:|$)/.test(dataSpec))
    return { augment: { pad: 2, flip: true }, reason: 'Fashion-MNIST: random crop (pad 2) and horizontal flip' };
  if (dataSpec.startsWith('idx:'))
    return {
      augment: { pad: Math.max(1, Math.round(size / 14)), flip: false },
      reason: 'IDX images (possibly digits): random crop, no flip',
    };
  if (size <= 64) {
    const pad = Math.ceil(size / 8);
    return {
      augment: { pad, flip: true },
      reason: `small images (${spec.width}×${spec.height}): random crop (pad ${pad}) and horizontal flip`,
    };
  }
  return {
    augment: { pad: 0, flip: true },
    reason: `large images (${spec.width}×${spec.height}): horizontal flip only`,
  };
}

/** Crop and/or flip one image with draws from `random` (see the header for their order). */
export function augmentImage(image: RawImage, augment: AugmentSpec, random: Random): RawImage {
  if (!Number.isInteger(augment.pad) || augment.pad < 0)
    throw new RegroupError('usage', `augmentation padding ${augment.pad} must be a whole number ≥ 0`);
  const dy = augment.pad > 0 ? random.int(2 * augment.pad + 1) - augment.pad : 0;
  const dx = augment.pad > 0 ? random.int(2 * augment.pad + 1) - augment.pad : 0;
  const flip = augment.flip && random.next() < 0.5;
  if (dy === 0 && dx === 0 && !flip) return image;
  return shiftAndFlip(image, dy, dx, flip);
}

/** out[y, x] = in[y + dy, (flip ? W−1−x : x) + dx], zero outside (the crop acts before the flip). */
function shiftAndFlip(image: RawImage, dy: number, dx: number, flip: boolean): RawImage {
  const { width: W, height: H, channels: C, data } = image;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < H; y++) {
    const sy = y + dy;
    if (sy < 0 || sy >= H) continue;
    for (let x = 0; x < W; x++) {
      const sx = (flip ? W - 1 - x : x) + dx;
      if (sx < 0 || sx >= W) continue;
      const to = (y * W + x) * C;
      const from = (sy * W + sx) * C;
      for (let c = 0; c < C; c++) out[to + c] = data[from + c]!;
    }
  }
  return { width: W, height: H, channels: C, data: out };
}

/** Augment a batch in order, one image after the other from the same generator. */
export function augmentBatch(images: readonly LabeledImage[], augment: AugmentSpec, random: Random): LabeledImage[] {
  return images.map((sample) => ({ ...sample, image: augmentImage(sample.image, augment, random) }));
}

/**
 * A 32-bit seed for one purpose in one epoch, from the run's seed: the shuffle and the
 * augmentation of epoch e depend only on (seed, e), so a resumed run repeats them exactly.
 */
export function epochSeed(seed: number, epoch: number, stream: 'shuffle' | 'augment'): number {
  let h = (seed >>> 0) ^ (stream === 'shuffle' ? 0x5bd1e995 : 0x1b873593);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = (h + Math.imul(epoch + 1, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** A generator for one epoch's augmentation. */
export function augmentRandom(seed: number, epoch: number): Random {
  return new Random(epochSeed(seed, epoch, 'augment'));
}
