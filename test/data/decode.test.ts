/**
 * Decoding: which decoder takes which image (sharp from SMALL_IMAGE_PIXELS up, jpeg-js/pngjs
 * below), sharp's pixels against Pillow's on real CIFAR-10 JPEGs, sharp against the JS
 * decoder within stated per-pixel bounds, exact PNG round trips (gray, RGB, RGBA with alpha
 * dropped) through both, CMYK and 16-bit files, format sniffing by magic bytes, 'bad-data'
 * errors naming the file, and decode worker threads giving what the main thread gives.
 * (test/data/decode-fallback.test.ts covers a sharp that does not load.)
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import {
  decodeImage,
  decodeImageFile,
  decodeImageFileInWorker,
  decodeImageJs,
  imageDecoder,
  SMALL_IMAGE_PIXELS,
  sniffFormat,
} from '../../runtime/data/decode.js';
import { DecodePool } from '../../runtime/data/loader.js';
import { convertChannels } from '../../runtime/data/resize.js';
import type { RawImage } from '../../runtime/data/types.js';
import {
  CIFAR_CLASSES,
  CIFAR_TEST,
  expectRegroupError,
  haveData,
  jpegBytes,
  pattern,
  pngBytes,
  tempTree,
} from './helpers.js';

/** Largest and mean absolute difference between two equally long byte arrays. */
function difference(a: Uint8Array, b: Uint8Array): { worst: number; mean: number } {
  expect(a.length).toBe(b.length);
  let worst = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    worst = Math.max(worst, d);
    sum += d;
  }
  return { worst, mean: sum / a.length };
}

/** A smooth photo-like RGB image (gradients plus a few hard edges), big enough for sharp. */
function photo(width: number, height: number): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const edge = (x >> 4) % 3 === 0 ? 60 : 0;
      data.set([(x * 2 + edge) & 0xff, (y * 3) & 0xff, ((x + y) * 5 + edge) & 0xff], (y * width + x) * 3);
    }
  return { width, height, channels: 3, data };
}

/** JPEG bytes made by sharp (libjpeg-turbo) with the given chroma subsampling. */
async function sharpJpeg(image: RawImage, subsampling: '4:2:0' | '4:4:4', gray = false): Promise<Uint8Array> {
  const input = sharp(image.data, { raw: { width: image.width, height: image.height, channels: image.channels } });
  return (gray ? input.toColourspace('b-w') : input).jpeg({ quality: 90, chromaSubsampling: subsampling }).toBuffer();
}

/** The APP2 (ICC profile) segments of a JPEG, as bytes. */
function app2Segments(jpeg: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let at = 2; at + 4 <= jpeg.length && jpeg[at] === 0xff && jpeg[at + 1] !== 0xda; ) {
    const length = (jpeg[at + 2]! << 8) | jpeg[at + 3]!;
    if (jpeg[at + 1] === 0xe2) parts.push(jpeg.subarray(at, at + 2 + length));
    at += 2 + length;
  }
  return Buffer.concat(parts);
}

const LARGE = Math.ceil(Math.sqrt(SMALL_IMAGE_PIXELS)); // a square this wide goes to sharp

describe('which decoder', () => {
  it('sharp has loaded here and says which libvips it is', async () => {
    const decoder = await imageDecoder();
    expect(decoder.name).toBe('sharp');
    expect(decoder.detail).toMatch(/^sharp \d+\.\d+\.\d+, libvips \d+\.\d+\.\d+$/);
  });

  it('images under SMALL_IMAGE_PIXELS decode in JS, larger ones in sharp', async () => {
    const small = await sharpJpeg(photo(LARGE - 1, LARGE), '4:2:0');
    const large = await sharpJpeg(photo(LARGE, LARGE), '4:2:0');
    const { decode } = await imageDecoder();
    expect(await decodeImage(small, 'small.jpg')).toEqual(decodeImageJs(small, 'small.jpg'));
    expect(await decodeImage(large, 'large.jpg')).toEqual(await decode(large, 'jpeg'));
    // The two decoders differ on this 4:2:0 image, so the routing above is observable.
    expect(
      difference((await decode(small, 'jpeg')).data, decodeImageJs(small, 'small.jpg').data).worst,
    ).toBeGreaterThan(0);
  });
});

describe.skipIf(!haveData)('real CIFAR-10 JPEGs', () => {
  it('decode to 32×32×3 with a real spread of values, the same through the worker variant', async () => {
    for (const cls of ['airplane', 'cat', 'truck']) {
      const file = path.join(CIFAR_TEST, cls, '0000.jpg');
      const image = await decodeImageFile(file);
      expect([image.width, image.height, image.channels]).toEqual([32, 32, 3]);
      expect(image.data).toBeInstanceOf(Uint8Array);
      expect(image.data.length).toBe(32 * 32 * 3);
      expect(new Set(image.data).size).toBeGreaterThan(30); // a photo, not a flat or empty buffer
      expect(Array.from((await decodeImageFileInWorker(file)).data)).toEqual(Array.from(image.data));
    }
  });

  it('cat/0000.jpg (32×32, so jpeg-js) starts with the pixels jpeg-js gives for it', async () => {
    const image = await decodeImageFile(path.join(CIFAR_TEST, 'cat', '0000.jpg'));
    expect(Array.from(image.data.subarray(0, 6))).toEqual([167, 106, 47, 166, 105, 46]);
  });

  it("sharp gives Pillow's pixels byte for byte (torchvision's loader)", async () => {
    // sha256 of Image.open(f).convert('RGB').tobytes(), Pillow 12.3.0 with libjpeg-turbo 3.1.4.
    const pillow: Record<string, [string, number[]]> = {
      'cat/0000.jpg': [
        'eb709b6efef4ebb7aa7fe095d1470428543be6c2558c80042640d5af86fc42df',
        [167, 107, 47, 166, 106, 44],
      ],
      'airplane/0000.jpg': ['74b7a25666474a50de282dcaa02e75236f4e1c66d80b9a552f20c19ad700d4bc', [141, 159, 179]],
      'truck/0000.jpg': ['3b538690e7a058446e57bb03660e6e10d7c82bf4ce3555c877f2bd7b0efb0ddf', [242, 249, 241]],
      'ship/0007.jpg': ['02f687b310efba89a80d4190f6426dc602c53faf96bc9f8f57bb89ca1a7f5a68', [216, 217, 212]],
    };
    const { decode } = await imageDecoder();
    for (const [file, [sha256, head]] of Object.entries(pillow)) {
      const image = await decode(fs.readFileSync(path.join(CIFAR_TEST, file)), 'jpeg');
      expect(Array.from(image.data.subarray(0, head.length)), file).toEqual(head);
      expect(createHash('sha256').update(image.data).digest('hex'), file).toBe(sha256);
    }
  });

  it('sharp and jpeg-js agree within the bounds of chroma upsampling on 100 of them (4:2:0)', async () => {
    // jpeg-js repeats the half-resolution chroma, libjpeg interpolates it: colours differ at
    // edges, luma (PIL's L of the RGB) much less — only where a colour clips. Measured on 500
    // of these files: RGB worst 65, mean 1.48; luma worst 11, mean 0.47.
    const { decode } = await imageDecoder();
    let rgbWorst = 0;
    let lumaWorst = 0;
    let rgbSum = 0;
    let lumaSum = 0;
    for (const cls of CIFAR_CLASSES)
      for (let n = 0; n < 10; n++) {
        const file = path.join(CIFAR_TEST, cls, `${String(n).padStart(4, '0')}.jpg`);
        const bytes = fs.readFileSync(file);
        const native = await decode(bytes, 'jpeg');
        const js = decodeImageJs(bytes, file);
        const rgb = difference(native.data, js.data);
        const luma = difference(convertChannels(native, 1).data, convertChannels(js, 1).data);
        rgbWorst = Math.max(rgbWorst, rgb.worst);
        lumaWorst = Math.max(lumaWorst, luma.worst);
        rgbSum += rgb.mean;
        lumaSum += luma.mean;
      }
    expect(rgbSum / 100).toBeLessThan(2);
    expect(lumaSum / 100).toBeLessThan(0.75);
    expect(lumaWorst).toBeLessThanOrEqual(16);
    expect(rgbWorst).toBeLessThanOrEqual(96);
    expect(rgbWorst).toBeGreaterThan(0); // they are different decoders
  });
});

describe('sharp against the JS decoder on made files', () => {
  it('gray JPEG: within 1 per pixel (IDCT rounding only)', async () => {
    const bytes = await sharpJpeg(photo(120, 100), '4:4:4', true);
    const { decode } = await imageDecoder();
    const native = await decode(bytes, 'jpeg');
    const js = decodeImageJs(bytes, 'gray.jpg');
    expect([native.channels, js.channels]).toEqual([1, 1]);
    expect(difference(native.data, js.data).worst).toBeLessThanOrEqual(1);
  });

  it('4:4:4 colour JPEG: within 3 per pixel (IDCT and YCbCr → RGB rounding)', async () => {
    const bytes = await sharpJpeg(photo(120, 100), '4:4:4');
    const { decode } = await imageDecoder();
    const d = difference((await decode(bytes, 'jpeg')).data, decodeImageJs(bytes, 'c444.jpg').data);
    expect(d.worst).toBeLessThanOrEqual(3);
    expect(d.mean).toBeLessThan(1);
  });

  it("CMYK JPEG: PIL's naive CMYK → RGB, within 2 of jpeg-js's", async () => {
    const bytes = await sharp(photo(120, 100).data, { raw: { width: 120, height: 100, channels: 3 } })
      .toColourspace('cmyk')
      .jpeg({ quality: 95 })
      .toBuffer();
    const native = await decodeImage(bytes, 'cmyk.jpg');
    const js = decodeImageJs(bytes, 'cmyk.jpg');
    expect(native.channels).toBe(3);
    expect(difference(native.data, js.data).worst).toBeLessThanOrEqual(2);
  });

  it('an embedded ICC profile is ignored, as PIL ignores it', async () => {
    const image = photo(120, 100);
    const plain = await sharpJpeg(image, '4:2:0');
    const tagged = await sharp(image.data, { raw: { width: 120, height: 100, channels: 3 } })
      .withIccProfile('p3')
      .jpeg({ quality: 90 })
      .toBuffer();
    // The same entropy-coded image with tagged's APP2 ICC_PROFILE segment inserted after SOI.
    const withProfile = Buffer.concat([plain.subarray(0, 2), app2Segments(tagged), plain.subarray(2)]);
    expect(withProfile.length).toBeGreaterThan(plain.length + 100);
    expect(await decodeImage(withProfile, 'p3.jpg')).toEqual(await decodeImage(plain, 'plain.jpg'));
  });

  it('PNG through sharp: RGB and gray exact, RGBA drops alpha, 16-bit within 1 of pngjs', async () => {
    const rgb = photo(LARGE, LARGE);
    expect(await decodeImage(pngBytes(rgb), 'rgb.png')).toEqual(rgb);
    const gray = convertChannels(rgb, 1);
    expect(await decodeImage(pngBytes(gray), 'gray.png')).toEqual(gray);
    const rgba = new Uint8Array(LARGE * LARGE * 4);
    for (let p = 0; p < LARGE * LARGE; p++) rgba.set([...rgb.data.subarray(3 * p, 3 * p + 3), p & 0xff], 4 * p);
    expect(await decodeImage(pngBytes({ width: LARGE, height: LARGE, channels: 4, data: rgba }), 'a.png')).toEqual(rgb);
    const deep = await sharp(rgb.data, { raw: { width: LARGE, height: LARGE, channels: 3 } })
      .toColourspace('rgb16')
      .png()
      .toBuffer();
    const native = await decodeImage(deep, 'deep.png');
    expect(native.channels).toBe(3);
    expect(difference(native.data, decodeImageJs(deep, 'deep.png').data).worst).toBeLessThanOrEqual(1);
  });
});

describe('PNG through pngjs (small images)', () => {
  it('RGB round-trips exactly', async () => {
    const image = pattern(7, 5);
    const decoded = await decodeImage(pngBytes(image), 'rgb.png');
    expect(decoded).toEqual({ width: 7, height: 5, channels: 3, data: image.data });
  });

  it('gray stays one channel and round-trips exactly', async () => {
    const data = Uint8Array.from({ length: 6 * 4 }, (_, i) => (i * 11) & 0xff);
    const decoded = await decodeImage(pngBytes({ width: 6, height: 4, channels: 1, data }), 'gray.png');
    expect(decoded).toEqual({ width: 6, height: 4, channels: 1, data });
  });

  it('RGBA drops alpha without compositing', async () => {
    const rgba = Uint8Array.from([10, 20, 30, 0, 40, 50, 60, 128, 70, 80, 90, 255]);
    const decoded = await decodeImage(pngBytes({ width: 3, height: 1, channels: 4, data: rgba }), 'alpha.png');
    expect(decoded.channels).toBe(3);
    expect(Array.from(decoded.data)).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90]);
  });
});

describe('format and errors', () => {
  it('tells the format by magic bytes, not the name', async () => {
    const image = pattern(4, 4);
    const dir = tempTree({ 'really-a-png.jpg': pngBytes(image), 'really-a-jpeg.png': jpegBytes(image) });
    expect(sniffFormat(fs.readFileSync(path.join(dir, 'really-a-png.jpg')))).toBe('png');
    expect(sniffFormat(fs.readFileSync(path.join(dir, 'really-a-jpeg.png')))).toBe('jpeg');
    expect((await decodeImageFileInWorker(path.join(dir, 'really-a-png.jpg'))).data).toEqual(image.data);
    expect((await decodeImageFileInWorker(path.join(dir, 'really-a-jpeg.png'))).width).toBe(4);
  });

  it('a JPEG from jpeg-js decodes close to its source (quality 100)', async () => {
    const image = pattern(16, 16);
    const decoded = await decodeImage(jpegBytes(image, 100), 'q100.jpg');
    expect(decoded.channels).toBe(3);
    expect(difference(decoded.data, image.data).worst).toBeLessThan(64); // lossy, but the same picture
  });

  it('truncated JPEG and PNG are bad-data naming the file, small (JS) and large (sharp)', async () => {
    const files: Record<string, Uint8Array> = {};
    for (const [name, size] of [
      ['small', 32],
      ['large', 2 * LARGE],
    ] as const) {
      const jpg = await sharpJpeg(photo(size, size), '4:2:0');
      const png = pngBytes(photo(size, size));
      files[`${name}-cut.jpg`] = jpg.subarray(0, Math.floor(jpg.length * 0.6));
      files[`${name}-cut.png`] = png.subarray(0, Math.floor(png.length * 0.6));
    }
    const dir = tempTree(files);
    for (const name of Object.keys(files)) {
      const file = path.join(dir, name);
      await expectRegroupError(() => decodeImageFile(file), 'bad-data', file, 'truncated or corrupt');
      await expectRegroupError(() => decodeImageFileInWorker(file), 'bad-data', file, 'truncated or corrupt');
    }
  });

  it('non-images, empty and missing files are bad-data naming the file', async () => {
    const dir = tempTree({ 'notes.jpg': 'hello', 'empty.png': '' });
    await expectRegroupError(
      () => decodeImageFile(path.join(dir, 'notes.jpg')),
      'bad-data',
      'notes.jpg',
      'not a JPEG or PNG',
      '68 65 6c 6c',
    );
    await expectRegroupError(() => decodeImageFile(path.join(dir, 'empty.png')), 'bad-data', 'empty.png', 'empty');
    await expectRegroupError(() => decodeImageFile(path.join(dir, 'gone.jpg')), 'bad-data', 'gone.jpg', 'ENOENT');
    await expectRegroupError(() => decodeImageFileInWorker(path.join(dir, 'gone.jpg')), 'bad-data', 'gone.jpg');
  });
});

const WORKER_SCRIPT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../dist/runtime/data/decode-worker.js',
);

describe.skipIf(!fs.existsSync(WORKER_SCRIPT))('decode worker threads (dist/ build)', () => {
  it('give the main thread’s pixels for large and small images, and bad-data for a broken one', async () => {
    const large = await sharpJpeg(photo(3 * LARGE, 2 * LARGE), '4:2:0');
    const small = await sharpJpeg(photo(40, 30), '4:2:0');
    const dir = tempTree({ 'large.jpg': large, 'small.jpg': small, 'bad.jpg': large.subarray(0, 100) });
    const files = ['large.jpg', 'small.jpg', 'bad.jpg'].map((f) => path.join(dir, f));
    const pool = new DecodePool(2);
    try {
      const outcomes = await pool.decode(files);
      for (const [k, file] of files.slice(0, 2).entries()) {
        const outcome = outcomes[k]!;
        if (!outcome.ok) throw new Error(`${file}: ${outcome.message}`);
        const here = await decodeImageFile(file);
        expect({ ...outcome, ok: undefined }).toEqual({ ...here, ok: undefined });
      }
      expect(outcomes[2]).toMatchObject({ ok: false, code: 'bad-data' });
    } finally {
      await pool.close();
    }
  });
});
