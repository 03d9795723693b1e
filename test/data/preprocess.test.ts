/**
 * Preprocessing: exact floats for every preset on hand-made pixels (expected values written
 * out from the preset's published constants, not recomputed by the code under test), layouts,
 * BGR, float16 bit patterns, channel conversion, PIL-style resize and torchvision-style crop,
 * InputSpec resolution from synthetic and real models, and errors that say what to do.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Dim } from '../../compiler/ir/node.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { idx, imageFolder } from '../../runtime/data/datasets.js';
import { batches } from '../../runtime/data/loader.js';
import { inputSpecFor, presetSpec, toTensor, type PresetName } from '../../runtime/data/preprocess.js';
import { centerCrop, resizeBilinear, roundHalfEven } from '../../runtime/data/resize.js';
import type { InputSpec, RawImage } from '../../runtime/data/types.js';
import { createSession, run } from '../../runtime/session.js';
import { haveShared, sharedModel } from '../helpers/shared.js';
import { CIFAR_TEST, expectRegroupError, haveData, MNIST_TEST } from './helpers.js';

const f32 = Math.fround;

/** 2×2 RGB: p0 = (0,128,255), p1 = (255,0,128), p2 = (10,20,30), p3 = (200,100,50). */
const RGB: RawImage = {
  width: 2,
  height: 2,
  channels: 3,
  data: Uint8Array.from([0, 128, 255, 255, 0, 128, 10, 20, 30, 200, 100, 50]),
};
/** 2×2 gray: 0, 51, 128, 255. */
const GRAY: RawImage = { width: 2, height: 2, channels: 1, data: Uint8Array.from([0, 51, 128, 255]) };

function values(images: RawImage[], spec: InputSpec): number[] {
  return Array.from(toTensor(images, spec).data as Float32Array);
}

/** Channel c of pixel p in an NCHW single-image result with 4 pixels. */
const at = (v: number[], c: number, p: number) => v[c * 4 + p];

function modelWithInput(shape: readonly Dim[], dtype: DataType = DataType.FLOAT, name = 'x') {
  const b = new GraphBuilder();
  b.input(name, shape, dtype);
  return b.model;
}

describe('presets: exact floats on hand-made pixels', () => {
  it('imagenet: (x/255 − mean)/std with mean (0.485,0.456,0.406), std (0.229,0.224,0.225)', () => {
    const v = values([RGB], presetSpec('imagenet', { height: 2, width: 2 }));
    expect([at(v, 0, 0), at(v, 1, 0), at(v, 2, 0)]).toEqual([
      f32(-2.1179039301310043),
      f32(0.20518207282913153),
      f32(2.6399999999999997),
    ]);
    expect(at(v, 0, 1)).toBe(f32((1 - 0.485) / 0.229)); // 255 → 2.2489…
  });

  it('cifar10: mean (0.4914,0.4822,0.4465), std (0.2470,0.2435,0.2616)', () => {
    const v = values([RGB], presetSpec('cifar10', { height: 2, width: 2 }));
    expect([at(v, 0, 0), at(v, 1, 0), at(v, 2, 0)]).toEqual([
      f32(-1.9894736842105263),
      f32(0.08115311833152142),
      f32(2.1158256880733943),
    ]);
  });

  it('mnist: (x/255 − 0.5)/0.5; mnist-raw: x/255', () => {
    expect(values([GRAY], presetSpec('mnist', { height: 2, width: 2 }))).toEqual([
      -1,
      f32(-0.6),
      f32(0.0039215686274509665),
      1,
    ]);
    expect(values([GRAY], presetSpec('mnist-raw', { height: 2, width: 2 }))).toEqual([
      0,
      f32(0.2),
      f32(0.5019607843137255),
      1,
    ]);
  });

  it('half: (x/255 − 0.5)/0.5 on every channel, any size', () => {
    const v = values([RGB], presetSpec('half', { height: 2, width: 2 }));
    expect([at(v, 0, 0), at(v, 1, 0), at(v, 2, 0), at(v, 0, 1)]).toEqual([-1, f32(0.0039215686274509665), 1, 1]);
    expect(presetSpec('half', { height: 48, width: 192 }).resizeShorter).toBeUndefined();
  });

  it('caffe-imagenet: BGR, 0..255 minus (103.939,116.779,123.68), std 1', () => {
    const v = values([RGB], presetSpec('caffe-imagenet', { height: 2, width: 2 }));
    // Model channel 0 is blue (255), 1 green (128), 2 red (0).
    expect([at(v, 0, 0), at(v, 1, 0), at(v, 2, 0)]).toEqual([f32(151.061), f32(11.221000000000004), f32(-123.68)]);
    expect([at(v, 0, 3), at(v, 1, 3), at(v, 2, 3)]).toEqual([f32(50 - 103.939), f32(100 - 116.779), f32(200 - 123.68)]);
  });

  it('every preset has the documented geometry', () => {
    const geometry = (p: PresetName) => {
      const s = presetSpec(p, p === 'half' ? { height: 5, width: 6 } : {});
      return [s.channels, s.height, s.width, s.resizeShorter, s.channelOrder];
    };
    expect(geometry('imagenet')).toEqual([3, 224, 224, 256, 'RGB']);
    expect(geometry('cifar10')).toEqual([3, 32, 32, undefined, 'RGB']);
    expect(geometry('mnist')).toEqual([1, 28, 28, undefined, 'RGB']);
    expect(geometry('mnist-raw')).toEqual([1, 28, 28, undefined, 'RGB']);
    expect(geometry('half')).toEqual([3, 5, 6, undefined, 'RGB']);
    expect(geometry('caffe-imagenet')).toEqual([3, 224, 224, 256, 'BGR']);
  });
});

describe('layout, dtype, channels', () => {
  it('NHWC holds the same numbers as NCHW, transposed, with the right dims', () => {
    const spec = presetSpec('cifar10', { height: 2, width: 2 });
    const nchw = toTensor([RGB, GRAY], spec);
    const nhwc = toTensor([RGB, GRAY], { ...spec, layout: 'NHWC' });
    expect(nchw.dims).toEqual([2, 3, 2, 2]);
    expect(nhwc.dims).toEqual([2, 2, 2, 3]);
    const a = nchw.data as Float32Array;
    const b = nhwc.data as Float32Array;
    for (let n = 0; n < 2; n++)
      for (let c = 0; c < 3; c++) for (let p = 0; p < 4; p++) expect(b[n * 12 + p * 3 + c]).toBe(a[n * 12 + c * 4 + p]);
  });

  it('BGR swaps channels 0 and 2 only', () => {
    const spec = presetSpec('half', { height: 2, width: 2 });
    const rgb = values([RGB], spec);
    const bgr = values([RGB], { ...spec, channelOrder: 'BGR' });
    expect(bgr.slice(0, 4)).toEqual(rgb.slice(8, 12));
    expect(bgr.slice(4, 8)).toEqual(rgb.slice(4, 8));
    expect(bgr.slice(8, 12)).toEqual(rgb.slice(0, 4));
  });

  it('float16 writes IEEE half bit patterns', () => {
    const t = toTensor([GRAY], presetSpec('mnist', { height: 2, width: 2, dtype: 'float16' }));
    expect(t.type).toBe('float16');
    // −1, −0.6, 1/255 ≈ 1.00392·2⁻⁸, 1
    expect(Array.from(t.data as Uint16Array)).toEqual([0xbc00, 0xb8cd, 0x1c04, 0x3c00]);
  });

  it('RGB into a gray model uses PIL luma; gray into an RGB model replicates; alpha is dropped', () => {
    expect(values([RGB], presetSpec('mnist-raw', { height: 2, width: 2 }))).toEqual(
      [104, 91, 18, 124].map((x) => f32(x / 255)),
    );
    const replicated = values([GRAY], presetSpec('half', { height: 2, width: 2 }));
    expect(replicated.slice(0, 4)).toEqual(replicated.slice(4, 8));
    expect(replicated.slice(0, 4)).toEqual(replicated.slice(8, 12));
    const rgba: RawImage = {
      width: 2,
      height: 2,
      channels: 4,
      data: Uint8Array.from([0, 128, 255, 9, 255, 0, 128, 9, 10, 20, 30, 9, 200, 100, 50, 9]),
    };
    expect(values([rgba], presetSpec('cifar10', { height: 2, width: 2 }))).toEqual(
      values([RGB], presetSpec('cifar10', { height: 2, width: 2 })),
    );
  });
});

describe('resize and crop', () => {
  const row = (values: number[]): RawImage => ({
    width: values.length,
    height: 1,
    channels: 1,
    data: Uint8Array.from(values),
  });

  it('downscaling is antialiased like PIL (triangle filter widened by the scale)', () => {
    // 4 → 2: output 0 weighs inputs 0,1,2 by 0.75, 0.75, 0.25 (÷1.75); output 1 weighs 1,2,3 by 0.25, 0.75, 0.75.
    expect(Array.from(resizeBilinear(row([0, 100, 200, 255]), 2, 1).data)).toEqual([71, 209]);
  });

  it('upscaling is plain half-pixel bilinear', () => {
    expect(Array.from(resizeBilinear(row([0, 100]), 4, 1).data)).toEqual([0, 25, 75, 100]);
    const column: RawImage = { width: 1, height: 2, channels: 1, data: Uint8Array.from([0, 100]) };
    expect(Array.from(resizeBilinear(column, 1, 4).data)).toEqual([0, 25, 75, 100]);
  });

  it('a flat colour stays exactly flat through resize 256 + crop 224', () => {
    const flat: RawImage = {
      width: 400,
      height: 300,
      channels: 3,
      data: new Uint8Array(400 * 300 * 3).map((_, i) => [12, 34, 56][i % 3]!),
    };
    const spec = presetSpec('imagenet');
    const v = toTensor([flat], spec).data as Float32Array;
    expect(v.length).toBe(3 * 224 * 224);
    const expected = [12, 34, 56].map((x, c) => f32((x / 255 - spec.mean[c]!) / spec.std[c]!));
    for (let c = 0; c < 3; c++)
      for (const p of [0, 1000, 224 * 224 - 1]) expect(v[c * 224 * 224 + p]).toBe(expected[c]);
  });

  it('center crop offsets round half to even (torchvision CenterCrop)', () => {
    expect([roundHalfEven(0.5), roundHalfEven(1.5), roundHalfEven(2.5), roundHalfEven(3)]).toEqual([0, 2, 2, 3]);
    // 320×256 with short side already 256: no resize, crop left = 48, top = 16.
    const width = 320,
      height = 256;
    const data = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) data.set([x & 0xff, y, (x >> 8) * 100], (y * width + x) * 3);
    const spec: InputSpec = { ...presetSpec('imagenet'), scale: 1, mean: [0, 0, 0], std: [1, 1, 1] };
    const v = toTensor([{ width, height, channels: 3, data }], spec).data as Float32Array;
    const plane = 224 * 224;
    expect([v[0], v[plane], v[2 * plane]]).toEqual([48, 16, 0]);
    expect([v[223 * 224 + 223], v[plane + 223 * 224 + 223]]).toEqual([(48 + 223) & 0xff, 16 + 223]);
    const cropped = centerCrop({ width: 3, height: 1, channels: 1, data: Uint8Array.from([1, 2, 3]) }, 2, 1);
    expect(Array.from(cropped.data)).toEqual([1, 2]); // (3 − 2)/2 = 0.5 → 0
  });

  it('shorter side → 256, longer ⌊256·long/short⌋, then crop; grows further when still smaller than the crop', () => {
    const wide: RawImage = { width: 4, height: 4, channels: 1, data: new Uint8Array(16).fill(7) };
    const spec: InputSpec = { ...presetSpec('mnist-raw'), height: 2, width: 8, resizeShorter: 2, scale: 1 };
    const t = toTensor([wide], spec);
    expect(t.dims).toEqual([1, 1, 2, 8]);
    expect(Array.from(t.data as Float32Array)).toEqual(new Array(16).fill(7));
  });

  it('an image of the wrong size for a non-resizing spec is an error naming the file', async () => {
    const odd: RawImage = { width: 40, height: 30, channels: 3, data: new Uint8Array(40 * 30 * 3) };
    const spec = presetSpec('cifar10');
    await expectRegroupError(
      () => toTensor([{ image: odd, label: 0, source: 'photos/odd.jpg' }], spec),
      'bad-data',
      'photos/odd.jpg',
      '40×30',
      '32×32',
      'resize',
    );
    await expectRegroupError(() => toTensor([odd], spec, ['from-sources.png']), 'bad-data', 'from-sources.png');
    await expectRegroupError(() => toTensor([], spec), 'usage', 'empty');
  });
});

describe('inputSpecFor', () => {
  it('picks a preset by shape and says so', () => {
    const spec = inputSpecFor(modelWithInput([1, 3, 32, 32]));
    expect(spec).toMatchObject({
      name: 'x',
      layout: 'NCHW',
      channels: 3,
      height: 32,
      width: 32,
      dtype: 'float32',
      preset: 'cifar10',
      presetReason: 'picked by input shape 3×32×32',
    });
    expect(spec.mean).toEqual([0.4914, 0.4822, 0.4465]);
    expect(inputSpecFor(modelWithInput(['N', 28, 28, 1]))).toMatchObject({
      layout: 'NHWC',
      channels: 1,
      preset: 'mnist',
    });
    const half = inputSpecFor(modelWithInput([1, 224, 224, 3], DataType.FLOAT16));
    expect(half).toMatchObject({ layout: 'NHWC', dtype: 'float16', preset: 'imagenet', resizeShorter: 256 });
  });

  it('a preset for the wrong channel count is an error saying which presets fit', async () => {
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 3, 224, 224]), { preset: 'mnist' }),
      'usage',
      "preset 'mnist'",
      '1-channel',
      "input 'x'",
      '3 channels',
      'imagenet, cifar10, half, caffe-imagenet',
    );
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 1, 28, 28]), { preset: 'imagenet' }),
      'usage',
      "preset 'imagenet'",
      'mnist, mnist-raw, half',
    );
  });

  it('sizes: the model wins, resizing presets scale, symbolic sizes come from the preset or overrides', async () => {
    expect(inputSpecFor(modelWithInput([1, 3, 299, 299]), { preset: 'imagenet' })).toMatchObject({
      height: 299,
      width: 299,
      resizeShorter: 342,
    });
    expect(inputSpecFor(modelWithInput(['batch', 3, 'h', 'w']), { preset: 'imagenet' })).toMatchObject({
      height: 224,
      width: 224,
      resizeShorter: 256,
    });
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 3, 48, 'W']), { preset: 'half' }),
      'usage',
      "input 'x'",
      'symbolic',
      'overrides.height',
    );
    expect(inputSpecFor(modelWithInput([1, 3, 48, 'W']), { preset: 'half', overrides: { width: 192 } })).toMatchObject({
      height: 48,
      width: 192,
      mean: [0.5, 0.5, 0.5],
    });
  });

  it('errors: unknown shape, unknown preset, layout, element type, missing input', async () => {
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 3, 48, 48])),
      'usage',
      "input 'x'",
      'no preset',
      'half',
    );
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 3, 32, 32]), { preset: 'vgg' }),
      'usage',
      "'vgg'",
      'imagenet',
    );
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 5, 7, 9])),
      'unsupported',
      "input 'x'",
      'overrides.layout',
    );
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 3, 32, 32], DataType.INT64)),
      'unsupported',
      "input 'x'",
      'INT64',
    );
    await expectRegroupError(() => inputSpecFor(modelWithInput([1, 784])), 'unsupported', 'rank 2');
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 3, 32, 32]), { overrides: { name: 'y' } }),
      'usage',
      "no input 'y'",
      "'x'",
    );
  });

  it.skipIf(!haveShared)(
    'real models: ResNet-20, MNIST CNNs, SqueezeNet fp16 (initializers listed as inputs), PaddleOCR',
    () => {
      expect(inputSpecFor(loadModel(sharedModel('resnet20')))).toMatchObject({
        name: 'input.1',
        preset: 'cifar10',
        layout: 'NCHW',
      });
      expect(inputSpecFor(loadModel(sharedModel('mnistCnn')))).toMatchObject({ preset: 'mnist', channels: 1 });
      expect(inputSpecFor(loadModel(sharedModel('mnist8')), { preset: 'mnist-raw' })).toMatchObject({
        name: 'Input3',
        preset: 'mnist-raw',
      });
      const squeeze = inputSpecFor(loadModel(sharedModel('squeezenetFp16')), { preset: 'caffe-imagenet' });
      expect(squeeze).toMatchObject({
        name: 'data_0',
        dtype: 'float16',
        channelOrder: 'BGR',
        height: 224,
        resizeShorter: 256,
      });
      expect(
        inputSpecFor(loadModel(sharedModel('ppocr')), { preset: 'half', overrides: { height: 48, width: 192 } }),
      ).toMatchObject({ name: 'x', channels: 3, height: 48, width: 192 });
    },
  );
});

describe.skipIf(!haveShared || !haveData)('presets reproduce published accuracy', () => {
  async function accuracy(
    modelKey: string,
    datasetPromise: ReturnType<typeof idx>,
    options: { preset?: string; limit: number; fixedBatch?: boolean },
  ) {
    const model = loadModel(sharedModel(modelKey));
    const spec = inputSpecFor(model, { preset: options.preset });
    const session = await createSession(sharedModel(modelKey));
    let correct = 0,
      total = 0;
    for await (const batch of batches(await datasetPromise, {
      batchSize: options.fixedBatch ? 1 : 100,
      limit: options.limit,
      shuffle: true,
      seed: 1,
      workers: 0,
    })) {
      const out = Object.values(await run(session, { [spec.name]: toTensor(batch.images, spec) }))[0]!
        .data as Float32Array;
      const classes = out.length / batch.images.length;
      batch.images.forEach((_, i) => {
        const row = out.subarray(i * classes, (i + 1) * classes);
        if (row.indexOf(Math.max(...row)) === batch.labels[i]) correct++;
        total++;
      });
    }
    await session.release();
    return correct / total;
  }

  it('MNIST CNN (mnist preset) ≥ 98% and mnist-8 (mnist-raw) ≥ 97% on 1000 MNIST test digits (published 99.2% / 98.9%)', async () => {
    const digits = idx(path.join(MNIST_TEST, 't10k-images-idx3-ubyte.gz'));
    expect(await accuracy('mnistCnn', digits, { limit: 1000 })).toBeGreaterThanOrEqual(0.98);
    expect(
      await accuracy('mnist8', digits, { preset: 'mnist-raw', limit: 1000, fixedBatch: true }),
    ).toBeGreaterThanOrEqual(0.97);
  });

  it('ResNet-20 (cifar10 preset) ≥ 76% on 1000 shuffled CIFAR-10 test JPEGs (published 81.4%)', async () => {
    expect(
      await accuracy('resnet20', imageFolder(CIFAR_TEST), { limit: 1000, fixedBatch: true }),
    ).toBeGreaterThanOrEqual(0.76);
  });
});
