/**
 * Decoding: real CIFAR-10 JPEGs, exact PNG round trips through pngjs (gray, RGB, RGBA with
 * alpha dropped), format sniffing by magic bytes, and 'bad-data' errors naming the file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeImage, decodeImageFile, decodeImageFileSync, sniffFormat } from '../../runtime/data/decode.js';
import { CIFAR_TEST, expectRegroupError, haveData, jpegBytes, pattern, pngBytes, tempTree } from './helpers.js';

describe.skipIf(!haveData)('real CIFAR-10 JPEGs', () => {
  it('decode to 32×32×3 with a real spread of values, identical sync and async', async () => {
    for (const cls of ['airplane', 'cat', 'truck']) {
      const file = path.join(CIFAR_TEST, cls, '0000.jpg');
      const image = await decodeImageFile(file);
      expect([image.width, image.height, image.channels]).toEqual([32, 32, 3]);
      expect(image.data).toBeInstanceOf(Uint8Array);
      expect(image.data.length).toBe(32 * 32 * 3);
      const distinct = new Set(image.data).size;
      expect(distinct).toBeGreaterThan(30); // a photo, not a flat or empty buffer
      expect(Array.from(decodeImageFileSync(file).data)).toEqual(Array.from(image.data));
    }
  });

  it('cat/0000.jpg starts with the pixels jpeg-js gives for it', async () => {
    const image = await decodeImageFile(path.join(CIFAR_TEST, 'cat', '0000.jpg'));
    expect(Array.from(image.data.subarray(0, 6))).toEqual([167, 106, 47, 166, 105, 46]);
  });
});

describe('PNG', () => {
  it('RGB round-trips exactly through pngjs', () => {
    const image = pattern(7, 5);
    const decoded = decodeImage(pngBytes(image), 'rgb.png');
    expect(decoded).toEqual({ width: 7, height: 5, channels: 3, data: image.data });
  });

  it('gray stays one channel and round-trips exactly', () => {
    const data = Uint8Array.from({ length: 6 * 4 }, (_, i) => (i * 11) & 0xff);
    const decoded = decodeImage(pngBytes({ width: 6, height: 4, channels: 1, data }), 'gray.png');
    expect(decoded).toEqual({ width: 6, height: 4, channels: 1, data });
  });

  it('RGBA drops alpha without compositing', () => {
    const rgba = Uint8Array.from([10, 20, 30, 0, 40, 50, 60, 128, 70, 80, 90, 255]);
    const decoded = decodeImage(pngBytes({ width: 3, height: 1, channels: 4, data: rgba }), 'alpha.png');
    expect(decoded.channels).toBe(3);
    expect(Array.from(decoded.data)).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90]);
  });
});

describe('format and errors', () => {
  it('tells the format by magic bytes, not the name', () => {
    const image = pattern(4, 4);
    const dir = tempTree({ 'really-a-png.jpg': pngBytes(image), 'really-a-jpeg.png': jpegBytes(image) });
    expect(sniffFormat(fs.readFileSync(path.join(dir, 'really-a-png.jpg')))).toBe('png');
    expect(sniffFormat(fs.readFileSync(path.join(dir, 'really-a-jpeg.png')))).toBe('jpeg');
    expect(decodeImageFileSync(path.join(dir, 'really-a-png.jpg')).data).toEqual(image.data);
    expect(decodeImageFileSync(path.join(dir, 'really-a-jpeg.png')).width).toBe(4);
  });

  it('a JPEG from jpeg-js decodes close to its source (quality 100)', () => {
    const image = pattern(16, 16);
    const decoded = decodeImage(jpegBytes(image, 100), 'q100.jpg');
    let worst = 0;
    for (let i = 0; i < image.data.length; i++) worst = Math.max(worst, Math.abs(decoded.data[i]! - image.data[i]!));
    expect(decoded.channels).toBe(3);
    expect(worst).toBeLessThan(64); // lossy, but the same picture
  });

  it('truncated JPEG and PNG are bad-data naming the file', async () => {
    const jpg = jpegBytes(pattern(32, 32));
    const png = pngBytes(pattern(32, 32));
    const dir = tempTree({
      'cut.jpg': jpg.subarray(0, Math.floor(jpg.length * 0.6)),
      'cut.png': png.subarray(0, Math.floor(png.length * 0.6)),
    });
    await expectRegroupError(
      () => decodeImageFile(path.join(dir, 'cut.jpg')),
      'bad-data',
      path.join(dir, 'cut.jpg'),
      'truncated or corrupt',
    );
    await expectRegroupError(() => decodeImageFile(path.join(dir, 'cut.png')), 'bad-data', path.join(dir, 'cut.png'));
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
  });
});
