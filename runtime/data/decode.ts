/**
 * Image decoding: JPEG and PNG bytes → RawImage, the format told by the file's magic bytes
 * (JPEG `FF D8 FF`, PNG `89 50 4E 47 0D 0A 1A 0A`), never its extension.
 *
 * Decoders, chosen per image from the size in its header:
 *  - sharp (libvips: libjpeg-turbo for JPEG, libspng for PNG), native, working on libuv's
 *    thread pool. Its pixels are those of torchvision's default loader (PIL
 *    `Image.open(f).convert('RGB')`, also libjpeg-turbo): equal, every one, on the CIFAR-10
 *    fixtures and on 500×375 photos. On a 500×375 JPEG it decodes in 2.8 ms where jpeg-js takes 12.
 *  - jpeg-js and pngjs, pure JavaScript, for images under SMALL_IMAGE_PIXELS: sharp spends
 *    about 0.5 ms of CPU setting up libvips for every image whatever its size, jpeg-js 0.12 ms
 *    on a whole 32×32 JPEG, and the two cross near 96×96 (the constant's comment has the
 *    figures). They are also what decodes everything when sharp cannot load (no prebuilt
 *    binary for the platform); a warning says so, once per thread. jpeg-js repeats subsampled
 *    chroma where libjpeg interpolates it, so on 4:2:0 JPEGs its colours differ from PIL's at
 *    edges (mean 1.5 levels, worst 65 on CIFAR-10) while gray differs by at most 1;
 *    test/data/decode.test.ts holds the bounds. ResNet-20's CIFAR-10 accuracy is 81.38% with
 *    jpeg-js and 81.39% with sharp.
 *
 * Channels: a grayscale file decodes to 1 channel, anything in colour to 3 (RGB). Alpha is
 * dropped, not composited, as PIL `convert('RGB')` does, so decode never returns 4 channels;
 * preprocessing still accepts 4-channel RawImages built by hand and drops their alpha the
 * same way. Embedded ICC profiles are ignored (PIL ignores them too). 16-bit PNGs come down to
 * 8 bits, palette PNGs are expanded; CMYK JPEGs become RGB by PIL's formula
 * (R = (255 − K) − C·(255 − K)/255, likewise G from M and B from Y), not by a colour profile.
 *
 * A truncated or corrupt file throws RegroupError('bad-data') naming the file.
 */
import fs from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import type Sharp from 'sharp';
import type { SharpOptions } from 'sharp';
import { RegroupError } from '../../compiler/errors.js';
import type { RawImage } from './types.js';

export type ImageFormat = 'jpeg' | 'png';

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Largest image decoded, in megapixels (a guard against decompression bombs). */
const MAX_MEGAPIXELS = 100;

/**
 * Images with fewer pixels than this decode in JavaScript even when sharp is loaded. CPU per
 * image on the 2-core development machine (4:2:0 JPEGs, quality 90, sharp with 64 in flight):
 * 32×32 jpeg-js 0.12 ms, sharp 0.61; 64×64 0.38 / 0.71; 96×96 0.86 / 0.82; 128×128 1.51 / 1.25.
 */
export const SMALL_IMAGE_PIXELS = 96 * 96;

/** The format told by the first bytes, or undefined when neither JPEG nor PNG. */
export function sniffFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.length >= 8 && PNG_MAGIC.every((b, i) => bytes[i] === b)) return 'png';
  return undefined;
}

/** Which decoder this thread uses, and why when it is the fallback. */
export interface ImageDecoder {
  readonly name: 'sharp' | 'jpeg-js+pngjs';
  /** `sharp 0.35.6, libvips 8.18.8`, or why sharp could not load. */
  readonly detail: string;
  decode(bytes: Uint8Array, format: ImageFormat): Promise<RawImage>;
}

let decoder: Promise<ImageDecoder> | undefined;

/** The decoder, loading sharp on first use (and warning once if it cannot). */
export function imageDecoder(): Promise<ImageDecoder> {
  decoder ??= import('sharp').then(
    (module) => sharpDecoder(module.default),
    (err: unknown) => {
      const reason = err instanceof Error ? err.message.split('\n')[0]! : String(err);
      console.warn(
        `warning: sharp (native JPEG/PNG decoding) did not load${isMainThread ? '' : ' in a decode worker'}: ${reason}. ` +
          'Decoding with the pure-JavaScript fallback (jpeg-js, pngjs), several times slower and with JPEG colours ' +
          'a little off torchvision; reinstall dependencies on this platform (npm ci) to get sharp back.',
      );
      return jsDecoder(reason);
    },
  );
  return decoder;
}

/** Decode JPEG or PNG bytes; `source` (a file path) names the image in errors. */
export async function decodeImage(bytes: Uint8Array, source: string): Promise<RawImage> {
  const format = formatOf(bytes, source);
  const header = readHeader(bytes, format);
  if (header && header.width * header.height < SMALL_IMAGE_PIXELS) return decodeImageJs(bytes, source);
  const { decode } = await imageDecoder();
  try {
    return await decode(bytes, format);
  } catch (err) {
    throw corrupt(source, format, err);
  }
}

/** Read and decode an image file; read failures are 'bad-data' too, so loaders may skip them. */
export async function decodeImageFile(file: string): Promise<RawImage> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.promises.readFile(file);
  } catch (err) {
    throw unreadable(file, err);
  }
  return decodeImage(bytes, file);
}

/**
 * decodeImageFile with a blocking read, for worker threads: there it stalls no event loop, and
 * a small file costs one call instead of the four round trips of fs.promises.readFile.
 */
export function decodeImageFileInWorker(file: string): Promise<RawImage> {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    return Promise.reject(unreadable(file, err));
  }
  return decodeImage(bytes, file);
}

/**
 * The pure-JavaScript decoder on its own, whatever imageDecoder() picked: the fallback, and
 * the reference that tests hold sharp against.
 */
export function decodeImageJs(bytes: Uint8Array, source: string): RawImage {
  const format = formatOf(bytes, source);
  try {
    return format === 'jpeg' ? decodeJpeg(bytes) : decodePng(bytes);
  } catch (err) {
    throw corrupt(source, format, err);
  }
}

function formatOf(bytes: Uint8Array, source: string): ImageFormat {
  const format = sniffFormat(bytes);
  if (format) return format;
  const head = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new RegroupError(
    'bad-data',
    `${source}: not a JPEG or PNG file (starts with ${head || 'nothing: the file is empty'}); convert it or remove it from the data folder`,
  );
}

function corrupt(source: string, format: ImageFormat, err: unknown): RegroupError {
  const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
  return new RegroupError(
    'bad-data',
    `${source}: cannot decode ${format.toUpperCase()} (${reason}); the file is truncated or corrupt — re-export it or remove it`,
    { cause: err },
  );
}

function unreadable(file: string, err: unknown): RegroupError {
  const code = (err as NodeJS.ErrnoException).code ?? String(err);
  return new RegroupError(
    'bad-data',
    `${file}: cannot read the image file (${code}); check that it exists and is readable`,
    { cause: err },
  );
}

// ---- sharp ----

/** Colour layouts that need more than "decode to RGB". */
type Colour = 'gray' | 'rgb' | 'cmyk';

function sharpDecoder(sharp: typeof Sharp): ImageDecoder {
  // One libvips thread per image: the loader keeps many images in flight on libuv's pool,
  // and every file is new, so libvips' operation cache would only hold memory.
  sharp.concurrency(1);
  sharp.cache(false);
  const options: SharpOptions = {
    failOn: 'error', // truncated or broken data fails, as in PIL; libjpeg warnings do not
    limitInputPixels: MAX_MEGAPIXELS * 1e6,
    ignoreIcc: true,
    sequentialRead: true,
  };
  return {
    name: 'sharp',
    detail: `sharp ${sharp.versions.sharp ?? '?'}, libvips ${sharp.versions.vips}`,
    decode: (bytes, format) => decodeWithSharp(sharp, options, bytes, colourOf(bytes, format)),
  };
}

async function decodeWithSharp(
  sharp: typeof Sharp,
  options: SharpOptions,
  bytes: Uint8Array,
  colour: Colour,
): Promise<RawImage> {
  const space = colour === 'gray' ? 'b-w' : colour === 'cmyk' ? 'cmyk' : 'srgb';
  // CMYK stays CMYK all the way (else libvips round-trips it through sRGB with a profile).
  const pipeline = sharp(bytes, options).pipelineColourspace(space).toColourspace(space);
  const { data, info } = await (colour === 'cmyk' ? pipeline : pipeline.removeAlpha())
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  const want = colour === 'gray' ? 1 : colour === 'cmyk' ? 4 : 3;
  if (info.channels !== want || data.length !== info.width * info.height * want)
    throw new Error(`sharp returned ${info.width}×${info.height}×${info.channels} in ${data.length} bytes`);
  const pixels = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const image: RawImage = { width: info.width, height: info.height, channels: want === 1 ? 1 : 3, data: pixels };
  return colour === 'cmyk' ? { ...image, data: cmykToRgb(pixels) } : image;
}

/** Size and colour layout from the JPEG frame header or the PNG IHDR chunk, when they can be read. */
interface Header {
  width: number;
  height: number;
  colour: Colour;
}

function readHeader(bytes: Uint8Array, format: ImageFormat): Header | undefined {
  return format === 'jpeg' ? jpegHeader(bytes) : pngHeader(bytes);
}

function colourOf(bytes: Uint8Array, format: ImageFormat): Colour {
  return readHeader(bytes, format)?.colour ?? 'rgb';
}

/** IHDR: 8 signature + 4 length + 'IHDR', then width, height (32-bit), bit depth, colour type. */
function pngHeader(bytes: Uint8Array): Header | undefined {
  if (bytes.length < 26) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const colourType = bytes[25];
  return {
    width: view.getUint32(16),
    height: view.getUint32(20),
    colour: colourType === 0 || colourType === 4 ? 'gray' : 'rgb',
  };
}

/** PIL's cmyk2rgb: nk = 255 − K; R = nk − C·nk/255 with its rounded division by 255. */
function cmykToRgb(cmyk: Uint8Array): Uint8Array {
  const pixels = cmyk.length / 4;
  const rgb = new Uint8Array(pixels * 3);
  const mulDiv255 = (a: number, b: number) => {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (let p = 0; p < pixels; p++) {
    const nk = 255 - cmyk[4 * p + 3]!;
    for (let c = 0; c < 3; c++) rgb[3 * p + c] = Math.max(0, nk - mulDiv255(cmyk[4 * p + c]!, nk));
  }
  return rgb;
}

// ---- pure JavaScript ----

function jsDecoder(reason: string): ImageDecoder {
  return {
    name: 'jpeg-js+pngjs',
    detail: `fallback: ${reason}`,
    decode: async (bytes, format) => (format === 'jpeg' ? decodeJpeg(bytes) : decodePng(bytes)),
  };
}

function decodeJpeg(bytes: Uint8Array): RawImage {
  const gray = jpegHeader(bytes)?.colour === 'gray';
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
  return gray ? { width, height, channels: 1, data: everyThird(data) } : { width, height, channels: 3, data };
}

/**
 * The first start-of-frame marker (SOF0–SOF15 except DHT/JPG/DAC): after marker and length come
 * precision (1 byte), height, width (16-bit) and the component count.
 */
function jpegHeader(bytes: Uint8Array): Header | undefined {
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
    if (isSof) {
      if (offset + 10 > bytes.length) return undefined;
      const components = bytes[offset + 9];
      return {
        height: (bytes[offset + 5]! << 8) | bytes[offset + 6]!,
        width: (bytes[offset + 7]! << 8) | bytes[offset + 8]!,
        colour: components === 1 ? 'gray' : components === 4 ? 'cmyk' : 'rgb',
      };
    }
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
