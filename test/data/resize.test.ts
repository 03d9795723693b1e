/**
 * resizeBilinear against Pillow (torchvision's resize on PIL images): byte-exact digests of
 * Pillow 12.3's Image.resize(size, BILINEAR) on a test pattern and a real CIFAR-10 photo, and
 * the fast paths (four taps unrolled, groups of four rows, any channels) against a plain
 * transcription of Pillow's ImagingResample on seeded random images of many shapes.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Random } from '../../compiler/util/random.js';
import { imageDecoder } from '../../runtime/data/decode.js';
import { resizeBilinear } from '../../runtime/data/resize.js';
import type { RawImage } from '../../runtime/data/types.js';
import { CIFAR_TEST, haveData, pattern } from './helpers.js';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * Pillow's resample, one output byte at a time (libImaging/Resample.c): coefficients per
 * output index, normalised, scaled by 2^22 and rounded; horizontal pass, then vertical, each
 * rounding with +2^21 and >> 22 and clipping to 0..255.
 */
function pillowResize(image: RawImage, width: number, height: number): RawImage {
  let out = image;
  if (width !== image.width) out = pillowPass(out, width, true);
  if (height !== image.height) out = pillowPass(out, height, false);
  return out;
}

function pillowPass(image: RawImage, outSize: number, horizontal: boolean): RawImage {
  const inSize = horizontal ? image.width : image.height;
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const width = horizontal ? outSize : image.width;
  const height = horizontal ? image.height : outSize;
  const C = image.channels;
  const data = new Uint8Array(width * height * C);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5));
    const raw: number[] = [];
    for (let x = xmin; x < xmax; x++) {
      const t = Math.abs((x - center + 0.5) / filterScale);
      raw.push(t < 1 ? 1 - t : 0);
    }
    const total = raw.reduce((a, b) => a + b, 0);
    const k = raw.map((w) => Math.trunc(0.5 + (total === 0 ? 0 : w / total) * 2 ** 22));
    for (let across = 0; across < (horizontal ? height : width); across++)
      for (let c = 0; c < C; c++) {
        let ss = 2 ** 21;
        for (let tap = 0; tap < k.length; tap++) {
          const pixel = horizontal ? across * image.width + xmin + tap : (xmin + tap) * image.width + across;
          ss += image.data[pixel * C + c]! * k[tap]!;
        }
        const pixel = horizontal ? across * width + o : o * width + across;
        data[pixel * C + c] = Math.min(255, Math.max(0, Math.floor(ss / 2 ** 22)));
      }
  }
  return { width, height, channels: C, data };
}

function randomImage(random: Random, width: number, height: number, channels: 1 | 3 | 4): RawImage {
  return {
    width,
    height,
    channels,
    data: Uint8Array.from({ length: width * height * channels }, () => Math.floor(random.next() * 256)),
  };
}

describe('against Pillow 12.3', () => {
  // Image.frombytes('RGB', (13, 9), pattern).resize(size, Image.BILINEAR).tobytes(), and the
  // same on the gray pattern; the comments say which code path each size takes.
  const rgb: [number, number, string, number[]][] = [
    [5, 4, '2d8c947d1ba779cb8f9f2003afd7ebb88ec79b4f8db029b491c29a47b747bb8f', [117, 111, 145]], // > 4 taps both ways
    [9, 6, '1f02d7285ee9464ab3bf8ba9d34723421bfd56810c35698fffc0b2aecaaaef6b', [62, 99, 136]], // four taps both ways
    [20, 14, '08d3b941c1984fb709a869b70fbaad39fe91c8d8d622ede8689e457c7d61828d', [0, 37, 74]], // enlarging
    [13, 4, '83b8bb6f50a47e1756894deb5e9a931510ecf3a175bd1685385fc98078e53621', [41, 78, 115]], // vertical only
    [6, 9, '3a7d39414f2fe3788881c99083cc8958f62949af5280fe3f36c3cdbe183235c3', [97, 87, 124]], // horizontal only
  ];
  const gray: [number, number, string, number[]][] = [
    [5, 4, '87be39742a9198ad2b556c5005adc3dcd97628cac4a6c1c0a1ee6b761cc8d84b', [53, 147, 114]],
    [9, 6, 'a6c67c399488da00b2c8f8f083e0922fc33e0d58bf3bca97297570455f79dfea', [18, 69, 130]],
    [20, 14, '52e4fcf8cc73a214f0ae21664b8b3439d12bd7a0074e7b150b6b8524a8c9fa0a', [0, 18, 42]],
  ];

  it('RGB test pattern: every size byte-exact', () => {
    const source = pattern(13, 9);
    for (const [width, height, digest, head] of rgb) {
      const out = resizeBilinear(source, width, height);
      expect([out.width, out.height, out.channels]).toEqual([width, height, 3]);
      expect(Array.from(out.data.subarray(0, 3)), `${width}×${height}`).toEqual(head);
      expect(sha256(out.data), `${width}×${height}`).toBe(digest);
    }
  });

  it('gray test pattern: every size byte-exact', () => {
    const data = Uint8Array.from({ length: 13 * 9 }, (_, i) => (i * 37 + Math.floor(i / 3) * 11) & 0xff);
    for (const [width, height, digest, head] of gray) {
      const out = resizeBilinear({ width: 13, height: 9, channels: 1, data }, width, height);
      expect(Array.from(out.data.subarray(0, 3)), `${width}×${height}`).toEqual(head);
      expect(sha256(out.data), `${width}×${height}`).toBe(digest);
    }
  });

  it.skipIf(!haveData)('CIFAR-10 cat/0000.jpg decoded by sharp, enlarged and shrunk: byte-exact', async () => {
    // Image.open(f).convert('RGB').resize(size, Image.BILINEAR).tobytes()
    const expected: [number, number, string][] = [
      [45, 40, '76b96f7a02f21033107b8c84f600988012430b2610dc0097baebcdf2d3209810'],
      [20, 17, 'bea49f4ee34a8cc30c0cb927269943117b6ac40ad9f615c3467eb770a770d404'],
      [256, 256, '20a580a0003d083e412f7171ed12b79da3b570746116935217f9afd1c934d5f3'],
    ];
    const { decode } = await imageDecoder();
    const cat = await decode(fs.readFileSync(path.join(CIFAR_TEST, 'cat', '0000.jpg')), 'jpeg');
    for (const [width, height, digest] of expected)
      expect(sha256(resizeBilinear(cat, width, height).data), `${width}×${height}`).toBe(digest);
  });
});

describe('fast paths against the plain transcription', () => {
  it('equal byte for byte over shapes, scales and channel counts', () => {
    const random = new Random(18);
    const cases: [number, number, number, number][] = [
      [250, 188, 170, 128], // the imagenet preset's resize of a 500×375 photo, at half size
      [188, 250, 128, 170],
      [64, 48, 63, 47], // barely smaller
      [97, 61, 20, 13], // shrink by about 5: eleven taps
      [40, 30, 90, 70], // enlarge
      [3, 17, 2, 5], // narrower than four taps
      [1, 9, 4, 3],
      [33, 1, 7, 1],
    ];
    for (const channels of [1, 3, 4] as const)
      for (const [inW, inH, outW, outH] of cases) {
        const image = randomImage(random, inW, inH, channels);
        const label = `${inW}×${inH}×${channels} → ${outW}×${outH}`;
        expect(resizeBilinear(image, outW, outH).data, label).toEqual(pillowResize(image, outW, outH).data);
      }
  });

  it('a flat image stays flat at every scale (weights sum to 1 in fixed point)', () => {
    for (const value of [0, 1, 128, 254, 255]) {
      const flat: RawImage = { width: 37, height: 23, channels: 3, data: new Uint8Array(37 * 23 * 3).fill(value) };
      for (const [w, h] of [
        [11, 7],
        [36, 22],
        [80, 50],
      ])
        expect(new Set(resizeBilinear(flat, w!, h!).data)).toEqual(new Set([value]));
    }
  });
});
