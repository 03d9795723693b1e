/**
 * Side-by-side latency on a shared machine: every round visits every model once, starting
 * one further along each time, so load that drifts over minutes falls on all models alike;
 * a model's figure is the median of its per-round medians.
 */
import type { Model } from '../compiler/ir/model.js';
import { encodeModel } from '../compiler/onnx/encode.js';
import { PREPARE, runPasses } from '../passes/index.js';
import { benchmark } from '../runtime/benchmark.js';
import { fixedBatchOf } from '../runtime/calibrate.js';
import { relaxBatch } from '../runtime/train/checkpoint.js';

export interface Timed {
  key: string;
  bytes: Uint8Array;
  model: Model;
}

/**
 * A model ready to time at any batch: a fixed export batch (PyTorch's 1) made symbolic, as
 * compress does before measuring (the models it writes get their fixed batch back); with
 * `prepare`, also the passes compress runs on the dense model before timing it.
 */
export function timedModel(key: string, model: Model, options: { prepare?: boolean } = {}): Timed {
  const fixed = fixedBatchOf(model);
  const relaxed = fixed ? relaxBatch(model, fixed) : model;
  if (options.prepare) runPasses(relaxed, PREPARE, {}, { fixpoint: true });
  return { key, bytes: encodeModel(relaxed).bytes, model: relaxed };
}

/** Median latency (ms) per key at one batch size; `runs` timed runs per model in all. */
export async function interleavedMedians(
  models: readonly Timed[],
  options: { batch: number; runs: number; rounds: number; threads?: number },
): Promise<Map<string, number>> {
  const samples = new Map<string, number[]>();
  for (let round = 0; round < options.rounds; round++) {
    const order = models.map((_, i) => models[(i + round) % models.length]!);
    for (const { key, bytes, model } of order) {
      const stats = await benchmark(bytes, model, {
        batch: options.batch,
        runs: Math.ceil(options.runs / options.rounds),
        warmup: 2,
        threads: options.threads ?? 0,
      });
      (samples.get(key) ?? samples.set(key, []).get(key)!).push(stats.medianMs);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return new Map([...samples].map(([k, xs]) => [k, median(xs)]));
}
