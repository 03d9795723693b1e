/**
 * Data-loading benchmark: images read, decoded and preprocessed to a float32 NCHW batch of 64
 * per second, decoding on the main thread and in 1…N worker threads. Each configuration makes
 * `runs` full passes after one warm-up pass (which also fills the OS file cache); the table
 * shows the median pass, and the CPU time of the process (every thread) per image in it, which
 * other load on the machine disturbs less than the wall clock. Two image sets:
 *  - cifar10: the CIFAR-10 test JPEGs (32×32, from ../shared/fixtures), cifar10 preset;
 *  - imagenet-size: synthetic photos the size of ImageNet's (500×375, 500×333, 375×500,
 *    500×400 in turn), each a mosaic of CIFAR-10 test images at their own 32×32 resolution so
 *    that it has a photo's detail, saved as 4:2:0 JPEG at quality 95 (77 KB on average;
 *    ImageNet's validation JPEGs average about 130 KB, so real photos cost both decoders more)
 *    into a folder under the system temp directory, made once and reused; imagenet preset
 *    (shorter side 256, centre crop 224).
 * Run: node dist/bench/data.js [--set both|cifar10|imagenet-size] [--cifar DIR] [--images N (set
 *      size, default 1000)] [--limit N (images per pass from each set)] [--runs R] [--workers 0,1,2]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { imageFolder } from '../runtime/data/datasets.js';
import { decodeImageJs, imageDecoder, SMALL_IMAGE_PIXELS } from '../runtime/data/decode.js';
import { batches } from '../runtime/data/loader.js';
import { presetSpec, toTensor } from '../runtime/data/preprocess.js';
import type { Dataset } from '../runtime/data/types.js';
import { BenchArgs, ROOT } from './args.js';

const args = new BenchArgs();
const set = args.string('--set', 'both');
const cifarDir = args.string('--cifar', path.resolve(ROOT, '../shared/fixtures/data/cifar10-test-jpg'));
const limit = args.number('--limit', 10_000);
const imageCount = args.number('--images', 1000);
const runs = args.number('--runs', 5);
const cores = os.availableParallelism();
const workerCounts = args.numbers('--workers', Array.from({ length: Math.min(4, cores) + 1 }, (_, k) => k).join(','));
const batchSize = 64;
/** Sizes ImageNet's photos commonly have, used in turn. */
const PHOTO_SIZES: readonly [number, number][] = [
  [500, 375],
  [500, 333],
  [375, 500],
  [500, 400],
];
const TILE = 32;

if (!['both', 'cifar10', 'imagenet-size'].includes(set)) {
  console.error(`bench/data: --set ${set} is not one of both, cifar10, imagenet-size`);
  process.exit(1);
}
if (!fs.existsSync(cifarDir)) {
  console.error(`bench/data: ${cifarDir} not found (needs ../shared/fixtures, or pass --cifar DIR)`);
  process.exit(1);
}

const decoder = await imageDecoder();
const side = Math.sqrt(SMALL_IMAGE_PIXELS);
console.log(
  `decoder: ${decoder.name} (${decoder.detail}) for images of ${side}×${side} pixels or more, jpeg-js/pngjs below; ` +
    `${cores} cores; batch ${batchSize}, float32 NCHW; median of ${runs} passes`,
);
if (set !== 'imagenet-size') await benchmark('CIFAR-10 test JPEGs', await imageFolder(cifarDir), 'cifar10', limit);
if (set !== 'cifar10') {
  const dir = await imagenetSizeSet(imageCount);
  await benchmark(`ImageNet-size JPEGs (${dir})`, await imageFolder(dir), 'imagenet', Math.min(limit, imageCount));
}

async function benchmark(
  title: string,
  dataset: Dataset,
  preset: Parameters<typeof presetSpec>[0],
  images: number,
): Promise<void> {
  const spec = presetSpec(preset);
  console.log(`\n${title}: ${Math.min(images, dataset.size)} images, ${preset} preset`);
  console.log(
    `${'decode on'.padEnd(20)} ${'pass s'.padStart(8)} ${'images/s'.padStart(10)} ${'vs first'.padStart(9)} ${'CPU ms/image'.padStart(13)}`,
  );
  let baseline = 0;
  for (const workers of workerCounts) {
    const pass = async () => {
      const started = performance.now();
      const cpu = process.cpuUsage();
      let count = 0;
      for await (const batch of batches(dataset, { batchSize, limit: images, workers })) {
        const tensor = toTensor(batch.images, spec);
        if (tensor.dims[0] !== batch.images.length) throw new Error('tensor batch size does not match the batch');
        count += batch.images.length;
      }
      const used = process.cpuUsage(cpu);
      return { seconds: (performance.now() - started) / 1000, count, cpuMs: (used.user + used.system) / 1000 / count };
    };
    await pass();
    const results = [];
    for (let r = 0; r < runs; r++) results.push(await pass());
    const median = [...results].sort((a, b) => a.seconds - b.seconds)[Math.floor(runs / 2)]!;
    const { seconds, count, cpuMs } = median;
    const rate = count / seconds;
    if (workers === workerCounts[0]) baseline = rate;
    const label = workers === 0 ? 'main thread' : `${workers} worker${workers > 1 ? 's' : ''}`;
    console.log(
      `${label.padEnd(20)} ${seconds.toFixed(2).padStart(8)} ${rate.toFixed(0).padStart(10)} ${`${(rate / baseline).toFixed(2)}×`.padStart(9)} ${cpuMs.toFixed(3).padStart(13)}`,
    );
  }
}

/** The synthetic ImageNet-size set (see the header), made on first use: 10 class folders of consecutive images. */
async function imagenetSizeSet(count: number): Promise<string> {
  const dir = path.join(os.tmpdir(), `regroup-bench-imagenet-size-v2-${count}`);
  const done = path.join(dir, 'complete');
  if (fs.existsSync(done)) return dir;
  const { default: sharp } = await import('sharp').catch((err: unknown) => {
    console.error(`bench/data: making the ImageNet-size set needs sharp, which did not load: ${String(err)}`);
    process.exit(1);
  });
  const tiles = cifarTiles(2000);
  let bytes = 0;
  for (let n = 0; n < count; n++) {
    const [width, height] = PHOTO_SIZES[n % PHOTO_SIZES.length]!;
    const canvas = mosaic(tiles, width, height, n);
    const file = path.join(dir, `class${Math.floor((n * 10) / count)}`, `${String(n).padStart(5, '0')}.jpg`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const jpeg = await sharp(canvas, { raw: { width, height, channels: 3 } })
      .jpeg({ quality: 95 })
      .toBuffer();
    fs.writeFileSync(file, jpeg);
    bytes += jpeg.length;
  }
  fs.writeFileSync(done, '');
  console.log(`made ${count} ImageNet-size JPEGs in ${dir}, ${(bytes / count / 1024).toFixed(0)} KB each on average`);
  return dir;
}

/** The first `count` CIFAR-10 test images, in sorted class and file order, as RGB tiles. */
function cifarTiles(count: number): Uint8Array[] {
  const files = fs
    .readdirSync(cifarDir)
    .sort()
    .flatMap((cls) =>
      fs
        .readdirSync(path.join(cifarDir, cls))
        .sort()
        .map((f) => path.join(cifarDir, cls, f)),
    );
  const step = Math.max(1, Math.floor(files.length / count));
  return files
    .filter((_, i) => i % step === 0)
    .slice(0, count)
    .map((file) => {
      const image = decodeImageJs(fs.readFileSync(file), file);
      if (image.width !== TILE || image.height !== TILE || image.channels !== 3)
        throw new Error(`${file}: expected a ${TILE}×${TILE} RGB image`);
      return image.data;
    });
}

/** A width × height RGB canvas tiled with CIFAR images, picked deterministically from `seed`. */
function mosaic(tiles: readonly Uint8Array[], width: number, height: number, seed: number): Uint8Array {
  const canvas = new Uint8Array(width * height * 3);
  const columns = Math.ceil(width / TILE);
  for (let y = 0; y < height; y++) {
    for (let column = 0; column < columns; column++) {
      const tile = tiles[(seed * 97 + Math.floor(y / TILE) * columns + column) % tiles.length]!;
      const x0 = column * TILE;
      const span = Math.min(TILE, width - x0);
      const from = (y % TILE) * TILE * 3;
      canvas.set(tile.subarray(from, from + span * 3), (y * width + x0) * 3);
    }
  }
  return canvas;
}
