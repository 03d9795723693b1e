/**
 * OutputProbe: the divergence of a model from itself is 0; a changed layer moves it by the
 * KL divergence of the softmax outputs, which is recomputed here directly from two sessions.
 */
import { describe, expect, it } from 'vitest';
import { uniformConnectivity } from '../../compiler/analysis/connectivity.js';
import type { Model } from '../../compiler/ir/model.js';
import { decodeModel } from '../../compiler/onnx/decode.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { Random } from '../../compiler/util/random.js';
import { resnetTiny } from '../../fixtures/models.js';
import { maskLayer, PREPARE, runPasses } from '../../passes/index.js';
import { floats } from '../../runtime/compare.js';
import { memoryDataset } from '../../runtime/data/memory.js';
import { inputSpecFor, toTensor } from '../../runtime/data/preprocess.js';
import { OutputProbe } from '../../runtime/sensitivity.js';
import { createSession, run } from '../../runtime/session.js';

const SAMPLES = 48;

function noise() {
  const random = new Random(11);
  const pixels = new Uint8Array(SAMPLES * 28 * 28);
  for (let i = 0; i < pixels.length; i++) pixels[i] = random.int(256);
  return memoryDataset(
    'noise',
    { width: 28, height: 28, channels: 1 },
    pixels,
    new Int32Array(SAMPLES),
    undefined,
    'noise',
  );
}

async function logits(
  model: Model,
  images: Awaited<ReturnType<ReturnType<typeof noise>['get']>>[],
): Promise<Float64Array> {
  const session = await createSession(model, { optimization: 'disabled' });
  const spec = inputSpecFor(model);
  const out = await run(session, { [spec.name]: toTensor(images, spec) });
  await session.release();
  return floats(out[session.outputNames[0]!]!);
}

describe('OutputProbe', () => {
  it('is 0 for the reference itself and the mean softmax KL for a changed model', async () => {
    const dense = resnetTiny();
    runPasses(dense, PREPARE, {}, { fixpoint: true });
    const changed = decodeModel(encodeModel(dense).bytes);
    const node = changed.graph.nodeList().find((n) => n.name === 'layer2.1.conv')!;
    maskLayer(node, uniformConnectivity(32, 32, 4));
    const data = noise();
    const probe = await OutputProbe.open(dense, data, inputSpecFor(dense), { samples: SAMPLES, batchSize: 16 });
    expect(await probe.divergence(dense)).toBe(0);
    const measured = await probe.divergence(changed);
    // Directly: the same images (all of them, any order — the mean does not depend on it).
    const images = await Promise.all(Array.from({ length: SAMPLES }, (_, i) => data.get(i)));
    const [p, q] = [await logits(dense, images), await logits(changed, images)];
    let sum = 0;
    for (let r = 0; r < SAMPLES; r++) {
      const row = (x: Float64Array) => Array.from(x.subarray(r * 10, r * 10 + 10));
      const soft = (x: number[]) => {
        const m = Math.max(...x);
        const e = x.map((v) => Math.exp(v - m));
        const z = e.reduce((a, b) => a + b, 0);
        return e.map((v) => v / z);
      };
      const [a, b] = [soft(row(p)), soft(row(q))];
      sum += a.reduce((s, v, i) => s + v * Math.log(v / b[i]!), 0);
    }
    expect(measured).toBeGreaterThan(1e-6);
    expect(measured).toBeCloseTo(sum / SAMPLES, 6);
  });
});
