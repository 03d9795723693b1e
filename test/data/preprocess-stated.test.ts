/**
 * Stated preprocessing: the value parsers the flags and JSON specs share, the JSON spec, ONNX's
 * Image.* metadata and regroup.preprocess, precedence (flags > --preprocess file > metadata >
 * preset by shape), what a stated normalisation does to a guessed preset, crops, the printed
 * and written-back forms — and, numerically, that models trained with a non-preset recipe get
 * the tensor they were trained on: a Fashion-MNIST ResNet that takes Normalize((0.2860,),
 * (0.3530,)) and a tf2onnx-style NHWC ResNet-20 that takes x/255 give the same logits as the
 * originals with their presets.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Dim } from '../../compiler/ir/node.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { idx, imageFolder, openDataset } from '../../runtime/data/datasets.js';
import { batches } from '../../runtime/data/loader.js';
import { fitImage, inputSpecFor, type ResolvedInputSpec, toTensor } from '../../runtime/data/preprocess.js';
import {
  describePreprocessing,
  METADATA_KEY,
  parseChannelOrder,
  parseCrop,
  parseLayout,
  parseNumbers,
  parsePreprocessing,
  parseResize,
  parseScale,
  PRESETS,
  preprocessingJson,
  readPreprocessFile,
  recordPreprocessing,
} from '../../runtime/data/preprocess-spec.js';
import type { Dataset, RawImage } from '../../runtime/data/types.js';
import { createSession, run } from '../../runtime/session.js';
import { haveShared, PROJECT_ROOT, sharedModel } from '../helpers/shared.js';
import { CIFAR_TEST, expectRegroupError, haveData, MNIST_TEST, tempDir } from './helpers.js';
import { writeRenormalised } from './normalised-models.js';

function modelWithInput(
  shape: readonly Dim[],
  extra: { props?: [string, string][]; denotation?: string; dimDenotations?: string[] } = {},
): Model {
  const b = new GraphBuilder();
  b.input('x', shape, DataType.FLOAT);
  const input = b.graph.inputs[0]!;
  input.type = { ...input.type!, denotation: extra.denotation, dimDenotations: extra.dimDenotations };
  b.model.metadataProps = extra.props ?? [];
  return b.model;
}

/** A --preprocess file holding `json`. */
function specFile(json: unknown): string {
  const file = path.join(tempDir(), 'spec.json');
  fs.writeFileSync(file, typeof json === 'string' ? json : JSON.stringify(json));
  return file;
}

const geometry = (s: ResolvedInputSpec) => ({
  layout: s.layout,
  channels: s.channels,
  height: s.height,
  width: s.width,
  resizeShorter: s.resizeShorter,
  scale: s.scale,
  mean: s.mean,
  std: s.std,
  channelOrder: s.channelOrder,
});

describe('values as text (flags and JSON strings)', () => {
  it('scale, mean/std, resize, crop, channel order, layout', () => {
    expect(parseScale('0-1')).toBe(1 / 255);
    expect(parseScale('0-255')).toBe(1);
    expect(parseScale('0.5')).toBe(0.5);
    expect(parseNumbers('0.2860', 'mean')).toEqual([0.286]);
    expect(parseNumbers('0.485, 0.456,0.406', 'mean')).toEqual([0.485, 0.456, 0.406]);
    expect(parseResize('none')).toBeNull();
    expect(parseResize('256')).toBe(256);
    expect(parseCrop('224')).toEqual({ height: 224, width: 224 });
    expect(parseCrop('224x192')).toEqual({ height: 224, width: 192 });
    expect(parseChannelOrder('BGR')).toBe('BGR');
    expect(parseChannelOrder('rgb')).toBe('RGB');
    expect(parseLayout('nhwc')).toBe('NHWC');
  });

  it('bad values are usage errors quoting the value and saying what fits', async () => {
    await expectRegroupError(() => parseScale('0-2'), 'usage', "'0-2'", '0-1', '0-255');
    await expectRegroupError(() => parseScale('-1'), 'usage', "'-1'");
    await expectRegroupError(() => parseNumbers('0.5,,0.4', 'mean'), 'usage', "'0.5,,0.4'", 'commas');
    await expectRegroupError(() => parseNumbers('a', 'std'), 'usage', "'a'", 'std');
    await expectRegroupError(() => parseNumbers('0.1,0.2', 'mean'), 'usage', '1 value or 3', 'not 2');
    await expectRegroupError(() => parseNumbers('0.5,0,0.5', 'std'), 'usage', 'positive');
    await expectRegroupError(() => parseResize('0'), 'usage', "'0'", 'none');
    await expectRegroupError(() => parseCrop('224x'), 'usage', "'224x'", '224x192');
    await expectRegroupError(() => parseChannelOrder('rgba'), 'usage', "'rgba'", 'rgb or bgr');
    await expectRegroupError(() => parseLayout('chw'), 'usage', "'chw'", 'nchw', 'nhwc');
  });
});

describe('the JSON spec', () => {
  it('reads every field in its JSON and its text forms', () => {
    expect(
      parsePreprocessing(
        {
          preset: 'imagenet',
          scale: '0-255',
          mean: 0.5,
          std: [0.1, 0.2, 0.3],
          resize: 'none',
          crop: [224, 192],
          channels: 'bgr',
          layout: 'NHWC',
        },
        'spec.json',
      ),
    ).toEqual({
      preset: 'imagenet',
      scale: 1,
      mean: [0.5],
      std: [0.1, 0.2, 0.3],
      resize: null,
      crop: { height: 224, width: 192 },
      channelOrder: 'BGR',
      layout: 'NHWC',
    });
    expect(parsePreprocessing({ scale: 1 / 255, mean: '0.2860', resize: 256, crop: '32' }, 'f')).toEqual({
      scale: 1 / 255,
      mean: [0.286],
      resize: 256,
      crop: { height: 32, width: 32 },
    });
  });

  it('errors name the file and the field', async () => {
    await expectRegroupError(() => parsePreprocessing([1], 'spec.json'), 'usage', 'spec.json', 'JSON object');
    await expectRegroupError(
      () => parsePreprocessing({ mean: [0.5], stdev: [0.5] }, 'spec.json'),
      'usage',
      "spec.json: unknown field 'stdev'",
      'std',
    );
    await expectRegroupError(
      () => parsePreprocessing({ mean: ['0.5'] }, 'spec.json'),
      'usage',
      "spec.json: field 'mean'",
      'list of numbers',
    );
    await expectRegroupError(
      () => parsePreprocessing({ preset: 'vgg' }, 'spec.json'),
      'usage',
      "field 'preset'",
      "'vgg' in spec.json",
      'imagenet',
    );
    await expectRegroupError(
      () => parsePreprocessing({ crop: [1, 2, 3] }, 'spec.json'),
      'usage',
      "field 'crop'",
      '[224, 192]',
    );
    const missing = path.join(tempDir(), 'missing.json');
    await expectRegroupError(() => readPreprocessFile(missing), 'usage', `--preprocess ${missing}`, 'ENOENT');
    await expectRegroupError(() => readPreprocessFile(specFile('{"mean": ')), 'usage', 'not valid JSON');
  });
});

describe('precedence: flags > --preprocess file > model metadata > preset by shape', () => {
  it('without anything stated, the preset picked by shape, as before', () => {
    const spec = inputSpecFor(modelWithInput(['N', 1, 28, 28]));
    expect(spec).toMatchObject({ preset: 'mnist', presetReason: 'picked by input shape 1×28×28', stated: false });
    expect(spec.sources).toEqual({});
    expect(describePreprocessing(spec)).toBe(
      '--scale 0-1 --mean 0.5 --std 0.5 --resize none --crop 28x28 --channels rgb --layout nchw (picked by input shape 1×28×28)',
    );
  });

  it('each field comes from the highest source stating it, and the source is recorded', () => {
    const model = modelWithInput(['N', 3, 32, 32], {
      props: [[METADATA_KEY, JSON.stringify({ mean: [0.1], std: [0.2], channels: 'bgr' })]],
    });
    const file = specFile({ mean: [0.3, 0.4, 0.5], scale: '0-255' });
    const spec = inputSpecFor(model, { file, fields: { std: [0.6] } });
    expect(spec).toMatchObject({
      scale: 1,
      mean: [0.3, 0.4, 0.5],
      std: [0.6, 0.6, 0.6],
      channelOrder: 'BGR',
      preset: undefined,
      stated: true,
    });
    expect(spec.sources).toEqual({
      mean: `--preprocess ${file}`,
      scale: `--preprocess ${file}`,
      std: 'flags',
      channelOrder: `model metadata '${METADATA_KEY}'`,
    });
    expect(describePreprocessing(spec)).toBe(
      `--scale 0-255 --mean 0.3,0.4,0.5 --std 0.6 --resize none --crop 32x32 --channels bgr --layout nchw (stated normalisation, size and resize of the cifar10 preset picked by input shape 3×32×32; std from flags; scale, mean from --preprocess ${file}; channels from model metadata '${METADATA_KEY}')`,
    );
  });

  it('a named preset replaces what lies below it; fields above it override its fields', () => {
    const model = modelWithInput([1, 3, 224, 224], {
      props: [[METADATA_KEY, JSON.stringify({ mean: [0.1], channels: 'bgr' })]],
    });
    const given = inputSpecFor(model, { preset: 'imagenet' });
    expect(given).toMatchObject({ preset: 'imagenet', presetReason: 'given', channelOrder: 'RGB' });
    expect(given.mean).toEqual(PRESETS.imagenet.mean);
    const file = specFile({ preset: 'imagenet', std: 1 });
    const overridden = inputSpecFor(model, { file, fields: { resize: null } });
    expect(overridden).toMatchObject({
      preset: 'imagenet',
      presetReason: `from --preprocess ${file}`,
      mean: PRESETS.imagenet.mean,
      std: [1, 1, 1],
      resizeShorter: undefined,
    });
  });

  it('stated normalisation replaces a guessed preset whole (unstated parts x/255, mean 0, std 1); the guess keeps size and resize', () => {
    const keras = inputSpecFor(modelWithInput(['N', 32, 32, 3]), { fields: { scale: 1 / 255 } });
    expect(geometry(keras)).toEqual({
      layout: 'NHWC',
      channels: 3,
      height: 32,
      width: 32,
      resizeShorter: undefined,
      scale: 1 / 255,
      mean: [0, 0, 0],
      std: [1, 1, 1],
      channelOrder: 'RGB',
    });
    const imagenetSized = inputSpecFor(modelWithInput(['N', 3, 224, 224]), { fields: { mean: [0.5], std: [0.5] } });
    expect(imagenetSized).toMatchObject({ preset: undefined, resizeShorter: 256, mean: [0.5, 0.5, 0.5] });
    const noGuess = inputSpecFor(modelWithInput(['N', 3, 64, 64]), { fields: { std: [0.25] } });
    expect(noGuess).toMatchObject({ presetReason: 'stated normalisation, no preset', std: [0.25, 0.25, 0.25] });
  });

  it('layout and channel order: stated, or the ONNX dimension denotation, or the shape', async () => {
    expect(inputSpecFor(modelWithInput(['N', 32, 32, 3]), { fields: { layout: 'NHWC' } }).layout).toBe('NHWC');
    const denoted = modelWithInput([1, 3, 32, 3], {
      dimDenotations: ['DATA_BATCH', 'DATA_FEATURE', 'DATA_FEATURE', 'DATA_CHANNEL'],
    });
    expect(inputSpecFor(denoted, { preset: 'half' })).toMatchObject({ layout: 'NHWC', height: 3, width: 32 });
    expect(inputSpecFor(modelWithInput([1, 3, 32, 3]), { preset: 'half' }).layout).toBe('NCHW');
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 3, 32, 32]), { fields: { layout: 'NHWC' } }),
      'unsupported',
      "input 'x'",
      'NHWC channel axis is 32',
      'layout from flags',
    );
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 1, 28, 28]), { fields: { channelOrder: 'BGR' } }),
      'usage',
      'channels bgr from flags',
      '1 channel',
    );
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 1, 28, 28]), { fields: { mean: [0.1, 0.2, 0.3] } }),
      'usage',
      'mean from flags has 3 values',
      "input 'x' [1,1,28,28]",
    );
  });

  it('crop: must fit a static size, gives a symbolic one, and without a resize center-crops larger images', async () => {
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 3, 32, 32]), { fields: { crop: { height: 28, width: 28 } } }),
      'usage',
      'crop 28×28 from flags',
      'takes 32×32',
      '--crop 32x32',
    );
    const spec = inputSpecFor(modelWithInput(['N', 1, 'h', 'w']), {
      fields: { crop: { height: 2, width: 3 }, mean: [0], std: [1] },
    });
    expect(spec).toMatchObject({ height: 2, width: 3, resizeShorter: undefined, centerCrop: true });
    // 4 wide, 3 high → the 3-wide, 2-high centre window: offsets 0.5 and 0.5 round half to even, to row 0, column 0.
    const image: RawImage = { width: 4, height: 3, channels: 1, data: Uint8Array.from({ length: 12 }, (_, i) => i) };
    expect([...fitImage(image, spec, 'a.png').data]).toEqual([0, 1, 2, 4, 5, 6]);
    const small: RawImage = { width: 2, height: 2, channels: 1, data: new Uint8Array(4) };
    await expectRegroupError(() => fitImage(small, spec, 'small.png'), 'bad-data', 'small.png', '--resize');
  });
});

describe('model metadata', () => {
  const image = (format: string, range: string, gamma = 'SRGB'): [string, string][] => [
    ['Image.BitmapPixelFormat', format],
    ['Image.NominalPixelRange', range],
    ['Image.ColorSpaceGamma', gamma],
  ];

  it("ONNX's Image.* keys: pixel format → channel order, pixel range → scale/mean/std, case-insensitively", () => {
    const bgr = inputSpecFor(modelWithInput([1, 3, 224, 224], { props: image('Bgr8', 'NominalRange_0_255') }));
    expect(bgr).toMatchObject({ channelOrder: 'BGR', scale: 1, mean: [0, 0, 0], std: [1, 1, 1], resizeShorter: 256 });
    expect(bgr.sources.scale).toBe("model metadata 'Image.*'");
    const lower = modelWithInput([1, 3, 32, 32], {
      props: [
        ['image.bitmappixelformat', 'RGB8'],
        ['IMAGE.NOMINALPIXELRANGE', 'normalized_1_1'],
      ],
    });
    expect(inputSpecFor(lower)).toMatchObject({ channelOrder: 'RGB', scale: 1 / 255, mean: [0.5, 0.5, 0.5] });
    const studio = inputSpecFor(modelWithInput([1, 1, 28, 28], { props: image('Gray8', 'NominalRange_16_235') }));
    // 16 + 219·x/255: x = 0 → 16, x = 255 → 235.
    const gray: RawImage = { width: 28, height: 28, channels: 1, data: new Uint8Array(784).fill(255) };
    gray.data[0] = 0;
    const values = toTensor([gray], studio).data as Float32Array;
    expect([values[0], values[1]]).toEqual([16, Math.fround(235)]);
  });

  it('what is not applied is printed; an input denoted otherwise is left alone; flags still win', () => {
    const odd = inputSpecFor(modelWithInput([1, 3, 32, 32], { props: image('Yuv8', 'Normalized_0_1', 'Linear') }));
    expect(odd.ignored).toEqual([
      'Image.ColorSpaceGamma=Linear (images are fed as decoded, sRGB)',
      'Image.BitmapPixelFormat=Yuv8 (not a value ONNX defines)',
    ]);
    expect(describePreprocessing(odd)).toContain('ignored Image.BitmapPixelFormat=Yuv8');
    const text = modelWithInput([1, 3, 32, 32], { props: image('Bgr8', 'NominalRange_0_255'), denotation: 'TEXT' });
    expect(inputSpecFor(text)).toMatchObject({ preset: 'cifar10', channelOrder: 'RGB' });
    const flagged = modelWithInput([1, 3, 32, 32], { props: image('Bgr8', 'NominalRange_0_255') });
    expect(inputSpecFor(flagged, { fields: { channelOrder: 'RGB', scale: 1 / 255 } })).toMatchObject({
      channelOrder: 'RGB',
      scale: 1 / 255,
      mean: [0, 0, 0],
    });
  });

  it('regroup.preprocess: bad JSON names the key; a resolved spec written back reads back the same', async () => {
    await expectRegroupError(
      () => inputSpecFor(modelWithInput([1, 1, 28, 28], { props: [[METADATA_KEY, '{mean']] })),
      'bad-model',
      `'${METADATA_KEY}'`,
      'not valid JSON',
    );
    const model = modelWithInput(['N', 3, 'h', 'w']);
    const stated = inputSpecFor(model, {
      preset: 'imagenet',
      fields: { mean: [0.5, 0.4, 0.3], crop: { height: 192, width: 160 }, layout: 'NCHW' },
    });
    recordPreprocessing(model, stated);
    expect(model.metadataProps.map(([k]) => k)).toEqual([METADATA_KEY]);
    const read = inputSpecFor(model);
    expect(geometry(read)).toEqual(geometry(stated));
    expect(read.stated).toBe(false);
    expect(read.sources.mean).toBe(`model metadata '${METADATA_KEY}'`);
    expect(preprocessingJson(read)).toEqual(preprocessingJson(stated));
    // Nothing stated for the run: nothing written.
    const plain = modelWithInput(['N', 1, 28, 28]);
    recordPreprocessing(plain, inputSpecFor(plain));
    expect(plain.metadataProps).toEqual([]);
  });
});

/** First-output logits of `file` on `dataset`'s images (seeded subset) preprocessed by `spec`. */
async function logits(file: string, dataset: Dataset, spec: ResolvedInputSpec, limit: number, batchSize: number) {
  const session = await createSession(file, { optimization: 'disabled' });
  const out: number[] = [];
  for await (const batch of batches(dataset, { batchSize, limit, shuffle: true, seed: 3, workers: 0 })) {
    const result = await run(session, { [spec.name]: toTensor(batch.images, spec) });
    out.push(...(Object.values(result)[0]!.data as Float32Array));
  }
  await session.release();
  return out;
}

function expectClose(actual: number[], expected: number[], rtol: number, atol: number): void {
  expect(actual.length).toBe(expected.length);
  const worst = actual.reduce((m, a, i) => Math.max(m, Math.abs(a - expected[i]!) - rtol * Math.abs(expected[i]!)), 0);
  expect(worst).toBeLessThanOrEqual(atol);
}

describe.skipIf(!haveShared || !haveData)('non-preset recipes reach the tensor the model was trained on', () => {
  it('Normalize((0.2860,), (0.3530,)): the renormalised Fashion-MNIST ResNet matches the original on 256 images', async () => {
    const original = path.join(PROJECT_ROOT, 'fixtures/models/fmnist-resnet.onnx');
    const wrapped = path.join(tempDir(), 'fmnist-normalize.onnx');
    const model = writeRenormalised(original, wrapped, {
      mean: [0.286],
      std: [0.353],
      fromMean: [0.5],
      fromStd: [0.5],
    });
    const spec = inputSpecFor(model, { fields: { mean: [0.286], std: [0.353] } });
    const dataset = await openDataset('fashion-mnist:test');
    const want = await logits(original, dataset, inputSpecFor(loadModel(original)), 256, 64);
    const got = await logits(wrapped, dataset, spec, 256, 64);
    // One float32 multiply-add more in front of the first conv moves the input by an ulp or two;
    // measured max |diff| 3.9e-6 on logits up to 14.
    expectClose(got, want, 1e-4, 1e-5);
  });

  it('tf2onnx-style NHWC ResNet-20 taking x/255 matches the original with the cifar10 preset on 32 JPEGs', async () => {
    const wrapped = path.join(tempDir(), 'resnet20-nhwc.onnx');
    const cifar = PRESETS.cifar10;
    const model = writeRenormalised(sharedModel('resnet20'), wrapped, {
      mean: [0],
      std: [1],
      fromMean: cifar.mean,
      fromStd: cifar.std,
      nhwc: true,
    });
    const spec = inputSpecFor(model, { fields: { layout: 'NHWC', scale: 1 / 255 } });
    expect(spec).toMatchObject({ layout: 'NHWC', mean: [0, 0, 0], std: [1, 1, 1] });
    const dataset = await imageFolder(CIFAR_TEST);
    const want = await logits(
      sharedModel('resnet20'),
      dataset,
      inputSpecFor(loadModel(sharedModel('resnet20'))),
      32,
      1,
    );
    const got = await logits(wrapped, dataset, spec, 32, 1);
    // As above through 20 layers: measured max |diff| 1.1e-5 on logits up to 16.
    expectClose(got, want, 1e-4, 5e-5);
  });

  it('mnist-8 (CNTK, ONNX Image.* metadata: Gray8, 0..255) evaluates from its metadata alone: ≥ 97% on 1000 digits (published 98.9%)', async () => {
    const model = loadModel(sharedModel('mnist8'));
    const spec = inputSpecFor(model);
    expect(spec).toMatchObject({ scale: 1, mean: [0], std: [1], preset: undefined });
    expect(spec.sources.scale).toBe("model metadata 'Image.*'");
    const digits = await idx(path.join(MNIST_TEST, 't10k-images-idx3-ubyte.gz'));
    const out = await logits(sharedModel('mnist8'), digits, spec, 1000, 1);
    const labels: number[] = [];
    for await (const batch of batches(digits, { batchSize: 1, limit: 1000, shuffle: true, seed: 3, workers: 0 }))
      labels.push(...batch.labels);
    const correct = labels.filter((label, i) => {
      const row = out.slice(i * 10, i * 10 + 10);
      return row.indexOf(Math.max(...row)) === label;
    }).length;
    expect(correct / 1000).toBeGreaterThanOrEqual(0.97);
  });
});
