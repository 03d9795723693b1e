/**
 * IDX files (the MNIST distribution format), optionally gzip-compressed (told by the gzip
 * magic `1F 8B`, not the name). Layout, big-endian: two zero bytes, a type byte (0x08 =
 * unsigned byte, the only one image data uses), the number of dimensions, one uint32 per
 * dimension, then the values row-major. Images are IDX3 [count, rows, cols] (magic
 * 0x00000803), labels IDX1 [count] (magic 0x00000801).
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { RegroupError } from '../../compiler/errors.js';

const gunzip = promisify(zlib.gunzip);

export interface IdxArray {
  readonly dims: readonly number[];
  readonly data: Uint8Array;
}

/** Read an IDX file of unsigned bytes with `rank` dimensions, gunzipping when needed. */
export async function readIdx(file: string, rank: 1 | 3): Promise<IdxArray> {
  return parseIdx(await readMaybeGzip(file), rank, file);
}

/** Parse IDX bytes; `file` names the source in errors. */
export function parseIdx(bytes: Uint8Array, rank: 1 | 3, file: string): IdxArray {
  const what = rank === 3 ? 'IDX3 images' : 'IDX1 labels';
  const expected = `00 00 08 0${rank}`;
  if (bytes.length < 4)
    throw new RegroupError(
      'bad-data',
      `${file}: ${bytes.length} bytes is too short for ${what}; the file is truncated`,
    );
  const magic = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
  if (bytes[0] !== 0 || bytes[1] !== 0 || bytes[2] !== 0x08 || bytes[3] !== rank) {
    const hint =
      bytes[3] === (rank === 3 ? 1 : 3)
        ? ` (this looks like ${rank === 3 ? 'a labels' : 'an images'} file: are the two paths swapped?)`
        : '';
    throw new RegroupError('bad-data', `${file}: bad magic number ${magic}, expected ${expected} for ${what}${hint}`);
  }
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes)
    throw new RegroupError(
      'bad-data',
      `${file}: header cut short (${bytes.length} of ${headerBytes} bytes); the file is truncated`,
    );
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: rank }, (_, axis) => view.getUint32(4 + 4 * axis, false));
  const count = dims.reduce((a, b) => a * b, 1);
  const actual = bytes.length - headerBytes;
  if (actual !== count) {
    const problem = actual < count ? 'truncated' : 'longer than its header says';
    throw new RegroupError(
      'bad-data',
      `${file}: header declares [${dims.join(', ')}] = ${count} values but ${actual} bytes follow; the file is ${problem}`,
    );
  }
  return { dims, data: bytes.subarray(headerBytes) };
}

async function readMaybeGzip(file: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.promises.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new RegroupError('io', `cannot read IDX file '${file}' (${code ?? String(err)}); check the path`, {
      cause: err,
    });
  }
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    return await gunzip(bytes);
  } catch (err) {
    throw new RegroupError(
      'bad-data',
      `${file}: gzip data is corrupt or truncated (${(err as Error).message}); download it again`,
      { cause: err },
    );
  }
}

/** `…-images-idx3-ubyte[.gz]` → the matching `…-labels-idx1-ubyte[.gz]` that exists beside it. */
export function labelsBeside(imagesFile: string): string | undefined {
  const base = path.basename(imagesFile);
  if (!/images[-.]idx3/.test(base)) return undefined;
  const stem = base.replace(/images([-.])idx3/, 'labels$1idx1').replace(/\.gz$/, '');
  return [stem, `${stem}.gz`].map((name) => path.join(path.dirname(imagesFile), name)).find((f) => fs.existsSync(f));
}

/** The images and labels files in a folder: exactly one `*-images-idx3-ubyte[.gz]`. */
export function idxFilesIn(dir: string): { images: string; labels: string | undefined } {
  const names = fs
    .readdirSync(dir)
    .filter((n) => /images[-.]idx3-ubyte(\.gz)?$/.test(n))
    .sort();
  if (names.length === 0)
    throw new RegroupError(
      'bad-data',
      `${dir}: no *-images-idx3-ubyte[.gz] file in this folder; pass idx:PATH to the images file itself`,
    );
  if (names.length > 1)
    throw new RegroupError(
      'usage',
      `${dir}: several IDX image files (${names.join(', ')}); pass idx:PATH to the one you want`,
    );
  const images = path.join(dir, names[0]!);
  return { images, labels: labelsBeside(images) };
}
