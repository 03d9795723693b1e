/**
 * Evaluation on real models and data: the shared fixtures' published accuracies with the
 * preset chosen from the input (or named), self-reference agreement, and bad data.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RegroupError } from '../../compiler/errors.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { fixedBatchOf } from '../../runtime/calibrate.js';
import { imageFolder, openDataset } from '../../runtime/data/datasets.js';
import { inputSpecFor } from '../../runtime/data/preprocess.js';
import { evaluate } from '../../runtime/evaluate.js';
import { CIFAR_TEST, haveData, jpegBytes, MNIST_TEST, pattern, tempTree } from '../data/helpers.js';
import { sharedModel } from '../helpers/shared.js';

/** Known accuracies (../shared/fixtures/README.md); a drift of more than half a point fails. */
const KNOWN = { resnet20: 0.8138, mnistCnn: 0.9918, mnist8: 0.989 };
const DRIFT = 0.005;

async function accuracyOf(key: string, data: string, preset?: string, limit?: number) {
  const file = sharedModel(key);
  const model = loadModel(file);
  const spec = inputSpecFor(model, { preset });
  const dataset = await openDataset(data);
  try {
    return { spec, result: await evaluate(file, fixedBatchOf(model), dataset, spec, { batchSize: 100, limit }) };
  } finally {
    await dataset.close?.();
  }
}

describe.skipIf(!haveData)('evaluation reaches the published accuracy', () => {
  it('PyTorch ResNet-20 on the 10,000 CIFAR-10 test JPEGs (preset chosen from the 3×32×32 input)', async () => {
    const { spec, result } = await accuracyOf('resnet20', CIFAR_TEST);
    expect([...spec.mean].map((m) => m.toFixed(4))).toEqual(['0.4914', '0.4822', '0.4465']);
    expect(result.samples).toBe(10000);
    expect(result.skipped).toBe(0);
    expect(Math.abs(result.top1 - KNOWN.resnet20)).toBeLessThanOrEqual(DRIFT);
    expect(result.top5).toBeGreaterThan(result.top1);
  }, 120_000);

  it('PyTorch MNIST CNN on the 10,000 MNIST test IDX digits', async () => {
    const { result } = await accuracyOf('mnistCnn', `idx:${MNIST_TEST}`);
    expect(result.samples).toBe(10000);
    expect(Math.abs(result.top1 - KNOWN.mnistCnn)).toBeLessThanOrEqual(DRIFT);
  }, 120_000);

  it('CNTK mnist-8 (fixed batch 1, raw 0..255 input) on the MNIST test IDX digits', async () => {
    const { result } = await accuracyOf('mnist8', `idx:${MNIST_TEST}`, 'mnist-raw');
    expect(result.samples).toBe(10000);
    expect(Math.abs(result.top1 - KNOWN.mnist8)).toBeLessThanOrEqual(DRIFT);
  }, 180_000);

  it('a model against itself agrees 100% with cosine 1 and zero difference', async () => {
    const file = sharedModel('resnet20');
    const model = loadModel(file);
    const spec = inputSpecFor(model);
    const dataset = await imageFolder(CIFAR_TEST);
    const result = await evaluate(file, fixedBatchOf(model), dataset, spec, { limit: 64, reference: file });
    expect(result.samples).toBe(64);
    expect(result.agreement!.top1Agreement).toBe(1);
    expect(result.agreement!.cosine).toBeCloseTo(1, 6);
    expect(result.agreement!.maxAbsDiff).toBe(0);
  }, 60_000);

  it('a different model as reference lowers agreement below 1 (the check can fail)', async () => {
    const dataset = await openDataset(`idx:${MNIST_TEST}`);
    const model = loadModel(sharedModel('mnistCnn'));
    const spec = inputSpecFor(model);
    // mnist-8 wants raw pixels, so its logits differ in scale and sometimes in class.
    const result = await evaluate(sharedModel('mnistCnn'), fixedBatchOf(model), dataset, spec, {
      limit: 500,
      reference: sharedModel('mnist8'),
      batchSize: 1,
    });
    expect(result.agreement!.cosine).toBeLessThan(0.99);
    expect(result.agreement!.maxAbsDiff).toBeGreaterThan(0.1);
  }, 60_000);
});

describe('evaluation rejects bad data clearly', () => {
  const model = () => loadModel(path.join(process.cwd(), 'fixtures/models/resnet-tiny.onnx'));

  it('a truncated JPEG is skipped and counted, or fatal under strict, naming the file', async () => {
    const good = jpegBytes(pattern(28, 28, 1));
    const dir = tempTree({
      'a/1.jpg': good,
      'a/2.jpg': good.subarray(0, 40),
      'b/3.jpg': jpegBytes(pattern(28, 28, 2)),
    });
    const m = model();
    const spec = inputSpecFor(m);
    const lenient = await evaluate(m, fixedBatchOf(m), await imageFolder(dir), spec, {
      batchSize: fixedBatchOf(m) ?? 2,
    });
    expect(lenient.samples).toBe(2);
    expect(lenient.skipped).toBe(1);
    expect(lenient.skippedSources[0]).toMatch(/2\.jpg/);
    const strict = evaluate(m, fixedBatchOf(m), await imageFolder(dir), spec, { strict: true });
    await expect(strict).rejects.toThrow(/2\.jpg/);
  }, 30_000);

  it('images of the wrong size for a model without resizing name the sample and the sizes', async () => {
    const file = sharedModel('mnistCnn');
    if (!haveData) return;
    const m = loadModel(file);
    const dataset = await imageFolder(CIFAR_TEST);
    const run = evaluate(file, fixedBatchOf(m), dataset, inputSpecFor(m), { limit: 4 });
    await expect(run).rejects.toBeInstanceOf(RegroupError);
    await expect(evaluate(file, fixedBatchOf(m), dataset, inputSpecFor(m), { limit: 4 })).rejects.toThrow(
      /32.32.*28.28|28.28.*32.32/,
    );
  }, 30_000);

  it('a folder without a single readable image is an error, not 0% accuracy', async () => {
    const dir = tempTree({ 'a/broken.jpg': new Uint8Array([0xff, 0xd8, 0xff, 0x00]) });
    const m = model();
    const run = evaluate(m, fixedBatchOf(m), await imageFolder(dir), inputSpecFor(m), {});
    await expect(run).rejects.toThrow(/no readable samples/);
  });
});
