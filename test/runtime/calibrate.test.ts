/**
 * Calibration statistics streamed batch by batch equal the same statistics computed
 * directly from one run over all samples; reservoir rows are real patches of the value.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../compiler/onnx/io.js';
import { Random } from '../../compiler/util/random.js';
import { calibrate } from '../../runtime/calibrate.js';
import { floats } from '../../runtime/compare.js';
import { memoryDataset } from '../../runtime/data/memory.js';
import { inputSpecFor, toTensor } from '../../runtime/data/preprocess.js';
import { runWithIntermediates } from '../../runtime/session.js';
import { PROJECT_ROOT } from '../helpers/shared.js';

const SAMPLES = 40;

function digits() {
  const random = new Random(5);
  const pixels = new Uint8Array(SAMPLES * 28 * 28);
  for (let i = 0; i < pixels.length; i++) pixels[i] = random.next() < 0.7 ? 0 : random.int(256);
  return memoryDataset(
    'noise digits',
    { width: 28, height: 28, channels: 1 },
    pixels,
    new Int32Array(SAMPLES),
    undefined,
    'noise',
  );
}

/** Per-channel mean, mean |x|, variance, zero fraction and max of a [N, C, …] tensor. */
function direct(values: Float64Array, dims: readonly number[]) {
  const [n, c] = [dims[0]!, dims[1]!];
  const spatial = values.length / (n * c);
  const stats = {
    mean: [] as number[],
    meanAbs: [] as number[],
    variance: [] as number[],
    zeroFraction: [] as number[],
    max: [] as number[],
  };
  for (let ch = 0; ch < c; ch++) {
    const xs: number[] = [];
    for (let b = 0; b < n; b++) for (let i = 0; i < spatial; i++) xs.push(values[(b * c + ch) * spatial + i]!);
    const mean = xs.reduce((a, x) => a + x, 0) / xs.length;
    stats.mean.push(mean);
    stats.meanAbs.push(xs.reduce((a, x) => a + Math.abs(x), 0) / xs.length);
    stats.variance.push(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / xs.length);
    stats.zeroFraction.push(xs.filter((x) => x === 0).length / xs.length);
    stats.max.push(Math.max(...xs));
  }
  return stats;
}

describe('calibration capture', () => {
  const model = loadModel(path.join(PROJECT_ROOT, 'fixtures/models/resnet-tiny.onnx'));
  const spec = inputSpecFor(model);
  // A convolution output (signed) and a ReLU output (many zeros).
  const conv = model.graph.nodeList().find((n) => n.opType === 'Conv')!.outputs[0]!;
  const relu = model.graph.nodeList().find((n) => n.opType === 'Relu')!.outputs[0]!;

  it('streams the same per-channel statistics as a direct computation over all samples', async () => {
    const dataset = digits();
    const stats = await calibrate(model, dataset, spec, [conv, relu], { samples: SAMPLES, batchSize: 7 });
    const images = await Promise.all(Array.from({ length: SAMPLES }, (_, i) => dataset.get(i)));
    const out = await runWithIntermediates(model, { [spec.name]: toTensor(images, spec) }, [conv, relu]);
    for (const value of [conv, relu]) {
      const want = direct(floats(out[value.name]!), out[value.name]!.dims);
      const got = stats.get(value)!;
      expect(got.count).toBe(SAMPLES * (out[value.name]!.dims[2]! * out[value.name]!.dims[3]!));
      for (const key of ['mean', 'meanAbs', 'variance', 'zeroFraction', 'max'] as const) {
        want[key].forEach((w, ch) => expect(got[key][ch]).toBeCloseTo(w, 5));
      }
    }
    expect(Math.max(...stats.get(relu)!.zeroFraction)).toBeGreaterThan(0);
    expect(Math.min(...stats.get(conv)!.mean.map((_m, ch) => stats.get(conv)!.variance[ch]!))).toBeGreaterThan(0);
  }, 30_000);

  it('keeps the requested number of sampled patches, each a real C·k² window of the value', async () => {
    const dataset = digits();
    const stats = await calibrate(model, dataset, spec, [relu], {
      samples: SAMPLES,
      batchSize: 8,
      rows: 50,
      patch: 3,
      seed: 2,
    });
    const rows = stats.get(relu)!.rows;
    const channels = stats.get(relu)!.mean.length;
    expect(rows).toHaveLength(50);
    for (const row of rows) expect(row.length).toBe(channels * 9);
    // Post-ReLU patches are never negative and are not all zero.
    expect(rows.every((r) => r.every((x) => x >= 0))).toBe(true);
    expect(rows.some((r) => r.some((x) => x > 0))).toBe(true);
    const again = await calibrate(model, dataset, spec, [relu], {
      samples: SAMPLES,
      batchSize: 8,
      rows: 50,
      patch: 3,
      seed: 2,
    });
    expect(again.get(relu)!.rows).toEqual(rows);
  }, 30_000);
});
