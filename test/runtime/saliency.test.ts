/**
 * Channel saliency (runtime/saliency.ts) against a hand computation in float64 on a tiny MLP:
 *   h = relu(W1·x + b1),  z = W2·h + b2,  ∂ℓ_n/∂h = W2ᵀ (softmax(z) − onehot(y_n))
 * with one unit planted dead (bias −1000: h = 0 always, activation sparsity 1) and one unit
 * whose outgoing column is zero (its gradient is exactly 0, gradient sparsity 1). Sparsity
 * counts must be exact; means match to fp32 precision (rtol 1e-4, atol 1e-7). Batches of 4
 * over 6 images also check that batches (and the short tail) are accumulated and that the
 * batch-mean loss's gradient is scaled back to each sample's own.
 */
import { describe, expect, it } from 'vitest';
import { RegroupError } from '../../compiler/errors.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { memoryDataset } from '../../runtime/data/memory.js';
import type { InputSpec } from '../../runtime/data/types.js';
import { channelSaliency } from '../../runtime/saliency.js';

const W1 = [
  [0.9, -0.4, 0.3, 0.2],
  [0.5, 0.5, -0.2, 0.1],
  [-0.7, 0.6, 0.8, -0.3],
];
const B1 = [-0.35, -1000, 0.1];
// Unit 1 is dead (its bias), unit 2's outgoing column is zero (no gradient reaches it).
const W2 = [
  [1.5, 0.7, 0],
  [-0.8, 0.4, 0],
];
const B2 = [0.05, -0.1];
const PIXELS = [
  [255, 0, 30, 200],
  [0, 0, 0, 0],
  [10, 250, 240, 5],
  [128, 64, 32, 16],
  [255, 255, 255, 255],
  [90, 10, 180, 40],
];
const LABELS = [0, 1, 1, 0, 1, 0];
const SPEC: InputSpec = {
  name: 'x',
  layout: 'NCHW',
  channels: 1,
  height: 2,
  width: 2,
  dtype: 'float32',
  scale: 1 / 255,
  mean: [0],
  std: [1],
  channelOrder: 'RGB',
};

function mlp() {
  const b = new GraphBuilder();
  const x = b.input('x', ['N', 1, 2, 2]);
  const flat = b.op('Flatten', [x], { axis: 1 });
  const z1 = b.op(
    'Gemm',
    [flat, b.initializer('w1', Tensor.float32([3, 4], W1.flat())), b.initializer('b1', Tensor.float32([3], B1))],
    { transB: 1 },
  );
  const h = b.op('Relu', [z1], {}, 'relu');
  b.output(
    b.op(
      'Gemm',
      [h, b.initializer('w2', Tensor.float32([2, 3], W2.flat())), b.initializer('b2', Tensor.float32([2], B2))],
      { transB: 1 },
    ),
  );
  return { model: b.model, h };
}

function dataset() {
  return memoryDataset(
    'hand',
    { width: 2, height: 2, channels: 1 },
    Uint8Array.from(PIXELS.flat()),
    LABELS,
    undefined,
    'hand',
  );
}

/** h and ∂ℓ_n/∂h for every sample, in float64. */
function byHand(): { h: number[][]; g: number[][] } {
  const out = { h: [] as number[][], g: [] as number[][] };
  PIXELS.forEach((pixels, n) => {
    const x = pixels.map((p) => p / 255);
    const h = W1.map((row, j) =>
      Math.max(
        0,
        row.reduce((s, w, i) => s + w * x[i]!, B1[j]!),
      ),
    );
    const z = W2.map((row, k) => row.reduce((s, w, j) => s + w * h[j]!, B2[k]!));
    const exp = z.map((v) => Math.exp(v - Math.max(...z)));
    const p = exp.map((v) => v / exp.reduce((a, b) => a + b, 0));
    const delta = p.map((v, k) => v - (k === LABELS[n] ? 1 : 0));
    out.h.push(h);
    out.g.push(h.map((_, j) => W2.reduce((s, row, k) => s + row[j]! * delta[k]!, 0)));
  });
  return out;
}

describe('channel saliency', () => {
  it('matches activation and gradient statistics computed by hand, with exact sparsity counts', async () => {
    const { model, h } = mlp();
    const result = await channelSaliency(model, dataset(), SPEC, [h], { samples: 6, batchSize: 4 });
    const got = result.get(h)!;
    const want = byHand();
    expect(got.samples).toBe(6);
    const column = (rows: number[][], j: number) => rows.map((r) => r[j]!);
    for (let j = 0; j < 3; j++) {
      const [a, g] = [column(want.h, j), column(want.g, j)];
      expect(got.activationSparsity[j]).toBe(a.filter((v) => v === 0).length / 6);
      expect(got.gradientSparsity[j]).toBe(g.filter((v) => v === 0).length / 6);
      expectClose(got.activationMeanAbs[j]!, a.reduce((s, v) => s + Math.abs(v), 0) / 6);
      expectClose(got.gradientMeanAbs[j]!, g.reduce((s, v) => s + Math.abs(v), 0) / 6);
    }
    // The planted cases, stated directly.
    expect(got.activationSparsity[1]).toBe(1);
    expect(got.activationMeanAbs[1]).toBe(0);
    expect(got.gradientSparsity[2]).toBe(1);
    expect(got.gradientMeanAbs[2]).toBe(0);
    expect(got.activationSparsity[0]).toBeGreaterThan(0);
    expect(got.activationSparsity[0]).toBeLessThan(1);
  });

  it('does not depend on the batch size (the mean loss is scaled back per sample)', async () => {
    const { model, h } = mlp();
    const one = (await channelSaliency(model, dataset(), SPEC, [h], { samples: 6, batchSize: 1 })).get(h)!;
    const six = (await channelSaliency(model, dataset(), SPEC, [h], { samples: 6, batchSize: 6 })).get(h)!;
    for (let j = 0; j < 3; j++) expectClose(one.gradientMeanAbs[j]!, six.gradientMeanAbs[j]!);
    expect([...one.gradientSparsity]).toEqual([...six.gradientSparsity]);
  });

  it('refuses a value that is not in the model', async () => {
    const { model } = mlp();
    const other = mlp().h;
    other.name = 'elsewhere';
    await expect(channelSaliency(model, dataset(), SPEC, [other])).rejects.toThrow(RegroupError);
    await expect(channelSaliency(model, dataset(), SPEC, [other])).rejects.toThrow(/'elsewhere' is not in the model/);
  });
});

/** fp32 against float64: rtol 1e-4, atol 1e-7. */
function expectClose(got: number, want: number): void {
  expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-7 + 1e-4 * Math.abs(want));
}
