/** Augmentation: crop/flip against explicit index formulas, determinism, default policies. */
import { describe, expect, it } from 'vitest';
import { Random } from '../../compiler/util/random.js';
import type { RawImage } from '../../runtime/data/types.js';
import { augmentBatch, augmentImage, defaultAugmentation, epochSeed } from '../../runtime/train/augment.js';

/** A W×H×C image whose pixel (y, x, c) is distinct: 1 + (y·W + x)·C + c (mod 256). */
function ramp(width: number, height: number, channels: 1 | 3): RawImage {
  const data = Uint8Array.from({ length: width * height * channels }, (_, i) => (1 + i) % 256);
  return { width, height, channels, data };
}

/** Reference: the padded image cropped at (oy, ox), then optionally flipped. */
function reference(img: RawImage, pad: number, oy: number, ox: number, flip: boolean): Uint8Array {
  const { width: W, height: H, channels: C } = img;
  const out = new Uint8Array(W * H * C);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const cx = flip ? W - 1 - x : x; // flip acts on the cropped image
      const py = y + oy - pad;
      const px = cx + ox - pad;
      for (let c = 0; c < C; c++)
        out[(y * W + x) * C + c] = py >= 0 && py < H && px >= 0 && px < W ? img.data[(py * W + px) * C + c]! : 0;
    }
  return out;
}

describe('augmentation', () => {
  it('random crop with zero padding equals cropping the padded image at the drawn offset', () => {
    const img = ramp(7, 5, 3);
    for (let seed = 0; seed < 20; seed++) {
      const draws = new Random(seed);
      const oy = draws.int(5);
      const ox = draws.int(5);
      const out = augmentImage(img, { pad: 2, flip: false }, new Random(seed));
      expect(out.data).toEqual(reference(img, 2, oy, ox, false));
    }
  });

  it('flip mirrors columns and composes with the crop', () => {
    const img = ramp(6, 4, 1);
    let flips = 0;
    for (let seed = 0; seed < 40; seed++) {
      const draws = new Random(seed);
      const oy = draws.int(3);
      const ox = draws.int(3);
      const flip = draws.next() < 0.5;
      flips += flip ? 1 : 0;
      expect(augmentImage(img, { pad: 1, flip: true }, new Random(seed)).data).toEqual(reference(img, 1, oy, ox, flip));
    }
    expect(flips).toBeGreaterThan(5);
    expect(flips).toBeLessThan(35);
  });

  it('a pure flip reverses each row exactly', () => {
    const img = ramp(5, 2, 1);
    // Find a seed whose first coin flips.
    const seed = [...Array(50).keys()].find((s) => new Random(s).next() < 0.5)!;
    const out = augmentImage(img, { pad: 0, flip: true }, new Random(seed));
    expect(Array.from(out.data)).toEqual([5, 4, 3, 2, 1, 10, 9, 8, 7, 6]);
  });

  it('is deterministic for a seed and differs across seeds; the input is not changed', () => {
    const batch = Array.from({ length: 16 }, (_, i) => ({ image: ramp(8, 8, 1), label: i % 10, source: `#${i}` }));
    const before = batch[0]!.image.data.slice();
    const a = augmentBatch(batch, { pad: 2, flip: true }, new Random(7));
    const b = augmentBatch(batch, { pad: 2, flip: true }, new Random(7));
    const c = augmentBatch(batch, { pad: 2, flip: true }, new Random(8));
    expect(a.map((s) => Array.from(s.image.data))).toEqual(b.map((s) => Array.from(s.image.data)));
    expect(a.map((s) => Array.from(s.image.data))).not.toEqual(c.map((s) => Array.from(s.image.data)));
    expect(a.map((s) => s.label)).toEqual(batch.map((s) => s.label));
    expect(batch[0]!.image.data).toEqual(before);
  });

  it('epoch seeds differ by epoch and by purpose, and repeat', () => {
    const seeds = new Set<number>();
    for (let e = 0; e < 50; e++) for (const s of ['shuffle', 'augment'] as const) seeds.add(epochSeed(3, e, s));
    expect(seeds.size).toBe(100);
    expect(epochSeed(3, 4, 'augment')).toBe(epochSeed(3, 4, 'augment'));
    expect(epochSeed(3, 4, 'augment')).not.toBe(epochSeed(4, 4, 'augment'));
  });

  it('default policy: no flip for digits, crop and flip for Fashion-MNIST and CIFAR-like folders', () => {
    const s28 = { height: 28, width: 28 };
    expect(defaultAugmentation('mnist', s28).augment).toEqual({ pad: 2, flip: false });
    expect(defaultAugmentation('mnist:train', s28).augment).toEqual({ pad: 2, flip: false });
    expect(defaultAugmentation('fashion-mnist', s28).augment).toEqual({ pad: 2, flip: true });
    expect(defaultAugmentation('idx:/data/t10k', s28).augment).toEqual({ pad: 2, flip: false });
    expect(defaultAugmentation('/data/cifar10', { height: 32, width: 32 }).augment).toEqual({ pad: 4, flip: true });
    expect(defaultAugmentation('/data/imagenet', { height: 224, width: 224 }).augment).toEqual({ pad: 0, flip: true });
  });
});
