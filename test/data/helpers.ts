/** Shared bits for the data-layer tests: fixture paths, temp folders, hand-made images. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { afterAll } from 'vitest';
import { RegroupError } from '../../compiler/errors.js';
import type { RawImage } from '../../runtime/data/types.js';
import { haveShared, SHARED_FIXTURES } from '../helpers/shared.js';

export const SHARED_DATA = path.join(SHARED_FIXTURES, 'data');
export const CIFAR_TEST = path.join(SHARED_DATA, 'cifar10-test-jpg');
export const MNIST_TEST = path.join(SHARED_DATA, 'mnist-test');
export const CIFAR_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

/** ../shared/fixtures/data is there (under CI its absence already failed in helpers/shared.ts). */
export const haveData = haveShared && fs.existsSync(SHARED_DATA);
if (haveShared && !haveData) {
  if (process.env.CI === 'true') throw new Error(`${SHARED_DATA} is missing; CI needs the shared data fixtures`);
  console.warn(`[regroup tests] skipping tests on real data: ${SHARED_DATA} not found`);
}

const tempRoots: string[] = [];
afterAll(() => {
  for (const dir of tempRoots) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp folder, removed after the test file. */
export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-data-'));
  tempRoots.push(dir);
  return dir;
}

/** Write `files` (relative path → bytes) under a fresh temp folder and return it. */
export function tempTree(files: Record<string, Uint8Array | string>): string {
  const dir = tempDir();
  for (const [name, bytes] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), bytes);
  }
  return dir;
}

/** A deterministic RGB test pattern. */
export function pattern(width: number, height: number, seed = 0): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + seed * 101 + ((i / 3) | 0) * 11) & 0xff;
  return { width, height, channels: 3, data };
}

export function jpegBytes(image: RawImage, quality = 90): Uint8Array {
  const rgba = new Uint8Array(image.width * image.height * 4);
  for (let p = 0; p < image.width * image.height; p++) {
    for (let c = 0; c < 3; c++) rgba[4 * p + c] = image.data[p * image.channels + (image.channels === 1 ? 0 : c)]!;
    rgba[4 * p + 3] = 255;
  }
  return jpeg.encode({ width: image.width, height: image.height, data: rgba }, quality).data;
}

/** PNG bytes of an 8-bit image: colorType 0 (gray), 2 (RGB) or 6 (RGBA), from 1/3/4 channels. */
export function pngBytes(image: RawImage): Uint8Array {
  const png = new PNG({ width: image.width, height: image.height });
  for (let p = 0; p < image.width * image.height; p++) {
    const px = (c: number) => image.data[p * image.channels + (image.channels === 1 ? 0 : c)]!;
    png.data[4 * p] = px(0);
    png.data[4 * p + 1] = px(1);
    png.data[4 * p + 2] = px(2);
    png.data[4 * p + 3] = image.channels === 4 ? image.data[p * 4 + 3]! : 255;
  }
  const colorType = image.channels === 1 ? 0 : image.channels === 3 ? 2 : 6;
  return PNG.sync.write(png, { colorType, inputHasAlpha: true });
}

/** Run `fn`, expecting a RegroupError with `code` whose message contains every `mentions`. */
export async function expectRegroupError(
  fn: () => unknown,
  code: RegroupError['code'],
  ...mentions: string[]
): Promise<RegroupError> {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  if (!(caught instanceof RegroupError))
    throw new Error(`expected RegroupError(${code}), got ${caught === undefined ? 'no error' : String(caught)}`);
  if (caught.code !== code) throw new Error(`expected code ${code}, got ${caught.code}: ${caught.message}`);
  for (const m of mentions)
    if (!caught.message.includes(m)) throw new Error(`error message does not mention '${m}': ${caught.message}`);
  return caught;
}
