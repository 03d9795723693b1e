/**
 * Image decoding: JPEG (jpeg-js) and PNG (pngjs) bytes → RawImage, the format told by the
 * file's magic bytes (JPEG `FF D8 FF`, PNG `89 50 4E 47 0D 0A 1A 0A`), never its extension.
 *
 * Channels: a grayscale file decodes to 1 channel, anything in colour to 3 (RGB). Alpha is
 * dropped, not composited — what torchvision's default loader does (PIL `convert('RGB')`) —
 * so decode never returns 4 channels; preprocessing still accepts 4-channel RawImages built
 * by hand and drops their alpha the same way. 16-bit PNGs are scaled to 8 bits by pngjs,
 * palette PNGs are expanded; CMYK JPEGs are converted to RGB by jpeg-js.
 *
 * A truncated or corrupt file throws RegroupError('bad-data') naming the file.
 */
import fs from 'node:fs';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { RegroupError } from '../../compiler/errors.js';
import type { RawImage } from './types.js';

export type ImageFormat = 'jpeg' | 'png';

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Largest image decoded, in megapixels (jpeg-js' guard against decompression bombs). */
const MAX_MEGAPIXELS = 100;

/** The format told by the first bytes, or undefined when neither JPEG nor PNG. */
export function sniffFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.length >= 8 && PNG_MAGIC.every((b, i) => bytes[i] === b)) return 'png';
  return undefined;
}

/** Decode JPEG or PNG bytes; `source` (a file path) names the image in errors. */
export function decodeImage(bytes: Uint8Array, source: string): RawImage {
  const format = sniffFormat(bytes);
  if (!format) {
    const head = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new RegroupError(
      'bad-data',
      `${source}: not a JPEG or PNG file (starts with ${head || 'nothing: the file is empty'}); convert it or remove it from the data folder`,
    );
  }
  try {
    return format === 'jpeg' ? decodeJpeg(bytes) : decodePng(bytes);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new RegroupError(
      'bad-data',
      `${source}: cannot decode ${format.toUpperCase()} (${reason}); the file is truncated or corrupt — re-export it or remove it`,
      { cause: err },
    );
  }
}

/** Read and decode an image file; read failures are 'bad-data' too, so loaders may skip them. */
export async function decodeImageFile(file: string): Promise<RawImage> {
  return decodeImage(await readImageBytes(file), file);
}

/** Synchronous variant for worker threads, where blocking costs the main loop nothing. */
export function decodeImageFileSync(file: string): RawImage {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw unreadable(file, err);
  }
  return decodeImage(bytes, file);
}

async function readImageBytes(file: string): Promise<Uint8Array> {
  try {
    return await fs.promises.readFile(file);
  } catch (err) {
    throw unreadable(file, err);
  }
}

function unreadable(file: string, err: unknown): RegroupError {
  const code = (err as NodeJS.ErrnoException).code ?? String(err);
  return new RegroupError(
    'bad-data',
    `${file}: cannot read the image file (${code}); check that it exists and is readable`,
    { cause: err },
  );
}

function decodeJpeg(bytes: Uint8Array): RawImage {
  const components = jpegComponents(bytes);
  const decoded = jpeg.decode(bytes, {
    useTArray: true,
    formatAsRGBA: false,
    tolerantDecoding: false,
    maxResolutionInMP: MAX_MEGAPIXELS,
  });
  const { width, height, data } = decoded;
  if (width <= 0 || height <= 0 || data.length !== width * height * 3)
    throw new Error(`decoder returned ${width}×${height} with ${data.length} bytes`);
  // jpeg-js always returns RGB; a one-component (grayscale) JPEG has R = G = B.
  return components === 1
    ? { width, height, channels: 1, data: everyThird(data) }
    : { width, height, channels: 3, data };
}

/** Component count from the first start-of-frame marker (SOF0–SOF15 except DHT/JPG/DAC). */
function jpegComponents(bytes: Uint8Array): number | undefined {
  let offset = 2;
  while (offset + 4 <= bytes.length) {
    if (bytes[offset] !== 0xff) return undefined;
    const marker = bytes[offset + 1]!;
    if (marker === 0xff) {
      offset++;
      continue;
    }
    const length = (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) return bytes[offset + 9];
    if (marker === 0xda) return undefined;
    offset += 2 + length;
  }
  return undefined;
}

function everyThird(rgb: Uint8Array): Uint8Array {
  const gray = new Uint8Array(rgb.length / 3);
  for (let i = 0; i < gray.length; i++) gray[i] = rgb[i * 3]!;
  return gray;
}

function decodePng(bytes: Uint8Array): RawImage {
  const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  const { width, height, data } = png;
  if (data.length !== width * height * 4)
    throw new Error(`decoder returned ${width}×${height} with ${data.length} bytes`);
  // pngjs always returns RGBA; colour types 0 and 4 are gray (+ alpha).
  const gray = png.colorType === 0 || png.colorType === 4;
  const channels = gray ? 1 : 3;
  const out = new Uint8Array(width * height * channels);
  for (let pixel = 0, n = width * height; pixel < n; pixel++) {
    for (let c = 0; c < channels; c++) out[pixel * channels + c] = data[pixel * 4 + c]!;
  }
  return { width, height, channels, data: out };
}
