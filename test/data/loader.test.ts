/**
 * Batching: order, seeded shuffle, limit, dropLast, prefetch depth, skipping unreadable
 * images (count + sources) versus strict, and worker decoding giving the same batches as
 * the main thread.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { RegroupError } from '../../compiler/errors.js';
import { imageFolder } from '../../runtime/data/datasets.js';
import { batches, type Batch, type LoaderOptions } from '../../runtime/data/loader.js';
import { memoryDataset } from '../../runtime/data/memory.js';
import type { Dataset, LabeledImage } from '../../runtime/data/types.js';
import { expectRegroupError, jpegBytes, pattern, pngBytes, tempTree } from './helpers.js';

const WORKER_SCRIPT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../dist/runtime/data/decode-worker.js',
);
const haveWorkerBuild = fs.existsSync(WORKER_SCRIPT);
if (!haveWorkerBuild) {
  if (process.env.CI === 'true') throw new Error(`${WORKER_SCRIPT} is missing; CI builds with tsc before the tests`);
  console.warn(
    `[regroup tests] skipping decode-worker tests: ${WORKER_SCRIPT} not built (run npx tsc -p tsconfig.json)`,
  );
}

/** n gray 1×1 images whose pixel and label are their index (label mod 10). */
function counting(n: number): Dataset {
  return memoryDataset(
    'counting',
    { width: 1, height: 1, channels: 1 },
    Uint8Array.from({ length: n }, (_, i) => i),
    Int32Array.from({ length: n }, (_, i) => i % 10),
    undefined,
    'counting',
  );
}

async function collect(dataset: Dataset, options: LoaderOptions): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const batch of batches(dataset, options)) out.push(batch);
  return out;
}

const pixelsOf = (bs: Batch[]) => bs.flatMap((b) => b.images.map((s) => s.image.data[0]!));

/** Three classes of small images, plus a truncated JPEG and a text file posing as one. */
function folderWithBadImages(): { dir: string; bad: string[] } {
  const files: Record<string, Uint8Array | string> = {};
  ['a', 'b', 'c'].forEach((cls, c) => {
    for (let i = 0; i < 7; i++)
      files[`${cls}/${i}.${i % 2 ? 'png' : 'jpg'}`] =
        i % 2 ? pngBytes(pattern(8, 6, c * 10 + i)) : jpegBytes(pattern(8, 6, c * 10 + i));
  });
  const jpg = jpegBytes(pattern(8, 6, 99));
  files['b/3x-truncated.jpg'] = jpg.subarray(0, jpg.length >> 1);
  files['c/9-not-an-image.jpg'] = 'plain text';
  const dir = tempTree(files);
  return { dir, bad: [path.join(dir, 'b', '3x-truncated.jpg'), path.join(dir, 'c', '9-not-an-image.jpg')] };
}

describe('order, shuffle, limit', () => {
  it('dataset order in batches of batchSize, labels as Int32Array', async () => {
    const bs = await collect(counting(23), { batchSize: 10 });
    expect(bs.map((b) => b.images.length)).toEqual([10, 10, 3]);
    expect(pixelsOf(bs)).toEqual(Array.from({ length: 23 }, (_, i) => i));
    expect(bs[2]!.labels).toEqual(Int32Array.from([0, 1, 2]));
    expect(bs[0]!.skipped).toBe(0);
  });

  it('seeded shuffle: a permutation, repeatable, different for another seed', async () => {
    const a = pixelsOf(await collect(counting(50), { batchSize: 8, shuffle: true, seed: 3 }));
    const b = pixelsOf(await collect(counting(50), { batchSize: 8, shuffle: true, seed: 3 }));
    const c = pixelsOf(await collect(counting(50), { batchSize: 8, shuffle: true, seed: 4 }));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(a).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('limit takes the first positions of the (shuffled) order; dropLast drops a short tail', async () => {
    const shuffled = pixelsOf(await collect(counting(50), { batchSize: 8, shuffle: true, seed: 3 }));
    const limited = await collect(counting(50), { batchSize: 8, shuffle: true, seed: 3, limit: 12 });
    expect(pixelsOf(limited)).toEqual(shuffled.slice(0, 12));
    expect(
      (await collect(counting(50), { batchSize: 8, limit: 12, dropLast: true })).map((b) => b.images.length),
    ).toEqual([8]);
    expect((await collect(counting(5), { batchSize: 8, limit: 100 })).map((b) => b.images.length)).toEqual([5]);
  });

  it('prefetch decodes the next batches while one is in use', async () => {
    for (const prefetch of [0, 2]) {
      const base = counting(40);
      let requested = 0;
      const watched: Dataset = { ...base, get: (i: number) => (requested++, base.get(i)) };
      const iterator = batches(watched, { batchSize: 5, prefetch })[Symbol.asyncIterator]();
      await iterator.next();
      expect(requested).toBe(5 * (1 + prefetch));
      await iterator.return?.(undefined);
    }
  });

  it('rejects a bad batch size; errors other than bad-data are never skipped', async () => {
    await expectRegroupError(() => batches(counting(3), { batchSize: 0 }), 'usage', 'batch size 0');
    const broken: Dataset = {
      name: 'broken',
      size: 3,
      get: async () => Promise.reject(new RegroupError('io', 'disk gone')),
    };
    await expectRegroupError(() => collect(broken, { batchSize: 2 }), 'io', 'disk gone');
  });
});

describe('unreadable images', () => {
  it('non-strict skips and counts them, naming the first sources', async () => {
    const { dir, bad } = folderWithBadImages();
    const dataset = await imageFolder(dir);
    expect(dataset.size).toBe(23);
    const stream = batches(dataset, { batchSize: 4, workers: 0 });
    const bs: Batch[] = [];
    for await (const batch of stream) bs.push(batch);
    expect(bs.reduce((n, b) => n + b.images.length, 0)).toBe(21);
    expect(stream.skipped).toBe(2);
    expect(stream.skippedSources).toEqual(bad);
    expect(bs.at(-1)!.skipped).toBe(2);
    expect(bs.at(-1)!.skippedSources).toEqual(bad);
    for (const b of bs)
      for (const [k, s] of b.images.entries())
        expect(b.labels[k]).toBe(['a', 'b', 'c'].indexOf(path.basename(path.dirname(s.source))));
  });

  it('strict (option or dataset default) throws the bad-data error naming the file', async () => {
    const { dir, bad } = folderWithBadImages();
    await expectRegroupError(
      async () => collect(await imageFolder(dir), { batchSize: 4, workers: 0, strict: true }),
      'bad-data',
      bad[0]!,
      'truncated or corrupt',
    );
    await expectRegroupError(
      async () => collect(await imageFolder(dir, { strict: true }), { batchSize: 4, workers: 0 }),
      'bad-data',
      bad[0]!,
    );
    const relaxed = await collect(await imageFolder(dir, { strict: true }), {
      batchSize: 4,
      workers: 0,
      strict: false,
    });
    expect(relaxed.reduce((n, b) => n + b.images.length, 0)).toBe(21);
  });
});

describe.skipIf(!haveWorkerBuild)('decode workers', () => {
  const summary = (bs: Batch[]) =>
    bs.map((b) => ({
      labels: Array.from(b.labels),
      sources: b.images.map((s: LabeledImage) => s.source),
      pixels: b.images.map((s) => Buffer.from(s.image.data).toString('base64')),
    }));

  it('give the same batches, labels, pixels and skips as the main thread', async () => {
    const { dir, bad } = folderWithBadImages();
    const dataset = await imageFolder(dir);
    const main = await collect(dataset, { batchSize: 5, shuffle: true, seed: 7, workers: 0 });
    for (const workers of [1, 2]) {
      const stream = batches(dataset, { batchSize: 5, shuffle: true, seed: 7, workers });
      expect(stream.workers).toBe(workers);
      const threaded: Batch[] = [];
      for await (const b of stream) threaded.push(b);
      expect(summary(threaded)).toEqual(summary(main));
      expect(stream.skipped).toBe(2);
      expect([...stream.skippedSources].sort()).toEqual([...bad].sort());
    }
    await expectRegroupError(() => collect(dataset, { batchSize: 5, workers: 2, strict: true }), 'bad-data', bad[0]!);
  });

  it('stop cleanly when the consumer breaks early', async () => {
    const { dir } = folderWithBadImages();
    let seen = 0;
    for await (const batch of batches(await imageFolder(dir), { batchSize: 3, workers: 2 })) {
      seen += batch.images.length;
      break;
    }
    expect(seen).toBe(3);
  });

  it("'auto' uses workers for image folders only", async () => {
    const { dir } = folderWithBadImages();
    expect(batches(counting(3), { batchSize: 2 }).workers).toBe(0);
    expect(batches(counting(3), { batchSize: 2, workers: 3 }).workers).toBe(0);
    expect(batches(await imageFolder(dir), { batchSize: 2, workers: 0 }).workers).toBe(0);
    // One thread per core beyond the main one, at most 4 (see loader.ts for the measurement).
    expect(batches(await imageFolder(dir), { batchSize: 2 }).workers).toBe(
      Math.max(0, Math.min(4, os.availableParallelism() - 1)),
    );
    await expectRegroupError(
      async () => batches(await imageFolder(dir), { batchSize: 2, workers: -1 }),
      'usage',
      'workers -1',
    );
  });
});
