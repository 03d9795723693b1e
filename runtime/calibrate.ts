/**
 * Calibration capture: run a model over N samples and keep, for chosen intermediate values,
 * streaming per-channel statistics — never all activations at once:
 *   mean, mean |x|, variance (E[x²] − mean², accumulated in float64), fraction of exact
 *   zeros (activation sparsity after ReLU), max
 * and a reservoir of sampled rows (the channel vector at one spatial position, or the
 * C·k·k patch around it) for layer-wise reconstruction later.
 */
import { RegroupError } from '../compiler/errors.js';
import type { Model } from '../compiler/ir/model.js';
import type { Value } from '../compiler/ir/node.js';
import { Random } from '../compiler/util/random.js';
import { floats } from './compare.js';
import { batches } from './data/loader.js';
import { toTensor } from './data/preprocess.js';
import type { Dataset, InputSpec } from './data/types.js';
import { createSessionWithOutputs, run, type SessionOptions } from './session.js';

export interface CalibrationOptions extends SessionOptions {
  samples?: number;
  batchSize?: number;
  /** Rows (or patches) kept per value by reservoir sampling (0: none). */
  rows?: number;
  /** Patch size k: rows are C·k·k patches around sampled positions (1: channel vectors). */
  patch?: number;
  seed?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface ChannelStatistics {
  /** Elements seen per channel. */
  readonly count: number;
  readonly mean: Float64Array;
  readonly meanAbs: Float64Array;
  readonly variance: Float64Array;
  readonly zeroFraction: Float64Array;
  readonly max: Float64Array;
  /** Sampled rows (length C·patch²), when requested. */
  readonly rows: Float32Array[];
}

/** Running sums for one value; channels on axis 1. */
class Accumulator {
  count = 0;
  readonly sum: Float64Array;
  readonly sumAbs: Float64Array;
  readonly sumSq: Float64Array;
  readonly zeros: Float64Array;
  readonly max: Float64Array;
  readonly rows: Float32Array[] = [];
  seen = 0;

  constructor(readonly channels: number) {
    this.sum = new Float64Array(channels);
    this.sumAbs = new Float64Array(channels);
    this.sumSq = new Float64Array(channels);
    this.zeros = new Float64Array(channels);
    this.max = new Float64Array(channels).fill(-Infinity);
  }

  /** Add a [N, C, …spatial] batch. */
  add(values: Float64Array, dims: readonly number[]): void {
    const [n, c] = [dims[0]!, dims[1]!];
    const spatial = dims.slice(2).reduce((a, b) => a * b, 1);
    for (let b = 0; b < n; b++) {
      for (let ch = 0; ch < c; ch++) {
        const base = (b * c + ch) * spatial;
        let s = 0,
          sa = 0,
          sq = 0,
          z = 0,
          m = this.max[ch]!;
        for (let i = 0; i < spatial; i++) {
          const x = values[base + i]!;
          s += x;
          sa += Math.abs(x);
          sq += x * x;
          if (x === 0) z++;
          if (x > m) m = x;
        }
        this.sum[ch] = this.sum[ch]! + s;
        this.sumAbs[ch] = this.sumAbs[ch]! + sa;
        this.sumSq[ch] = this.sumSq[ch]! + sq;
        this.zeros[ch] = this.zeros[ch]! + z;
        this.max[ch] = m;
      }
    }
    this.count += n * spatial;
  }

  /** Reservoir-sample `want` rows (channel vectors or patches) from a [N, C, H, W] batch. */
  sample(values: Float64Array, dims: readonly number[], want: number, patch: number, random: Random): void {
    const [n, c] = [dims[0]!, dims[1]!];
    const [h, w] = [dims[2] ?? 1, dims[3] ?? 1];
    const half = (patch - 1) >> 1;
    for (let b = 0; b < n; b++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          this.seen++;
          const slot = this.rows.length < want ? this.rows.length : random.int(this.seen);
          if (slot >= want) continue;
          const row = new Float32Array(c * patch * patch);
          for (let ch = 0; ch < c; ch++) {
            for (let dy = 0; dy < patch; dy++) {
              for (let dx = 0; dx < patch; dx++) {
                const [yy, xx] = [y + dy - half, x + dx - half];
                if (yy >= 0 && yy < h && xx >= 0 && xx < w)
                  row[(ch * patch + dy) * patch + dx] = values[((b * c + ch) * h + yy) * w + xx]!;
              }
            }
          }
          this.rows[slot] = row;
        }
      }
    }
  }

  finish(): ChannelStatistics {
    const c = this.channels;
    const per = Math.max(this.count, 1);
    const mean = this.sum.map((s) => s / per);
    return {
      count: this.count,
      mean,
      meanAbs: this.sumAbs.map((s) => s / per),
      variance: this.sumSq.map((s, ch) => Math.max(0, s / per - mean[ch]! ** 2)),
      zeroFraction: this.zeros.map((z) => z / per),
      max: c ? this.max : new Float64Array(),
      rows: this.rows,
    };
  }
}

/** Per-channel statistics of `values` over the first `samples` items of a dataset. */
export async function calibrate(
  model: Model,
  dataset: Dataset,
  spec: InputSpec,
  values: readonly Value[],
  options: CalibrationOptions = {},
): Promise<Map<Value, ChannelStatistics>> {
  const total = Math.min(options.samples ?? 256, dataset.size);
  const batchSize = fixedBatchOf(model) ?? options.batchSize ?? 32;
  const random = new Random(options.seed ?? 0);
  const session = await createSessionWithOutputs(model, values, options);
  const accumulators = new Map<Value, Accumulator>();
  let done = 0;
  try {
    for await (const batch of batches(dataset, { batchSize, limit: total, shuffle: true, seed: options.seed ?? 0 })) {
      if (batch.images.length < batchSize && fixedBatchOf(model)) break; // a fixed-batch model cannot take a short tail
      const out = await run(
        session,
        { [spec.name]: toTensor(batch.images, spec) },
        values.map((v) => v.name),
      );
      for (const value of values) {
        const tensor = out[value.name]!;
        const dims = tensor.dims;
        if (dims.length < 2)
          throw new RegroupError(
            'usage',
            `value '${value.name}' has rank ${dims.length}; channel statistics need [N, C, …]`,
          );
        const acc = accumulators.get(value) ?? accumulators.set(value, new Accumulator(dims[1]!)).get(value)!;
        const data = floats(tensor);
        acc.add(data, dims);
        if (options.rows) acc.sample(data, dims, options.rows, options.patch ?? 1, random);
      }
      done += batch.images.length;
      options.onProgress?.(done, total);
    }
  } finally {
    await session.release();
  }
  return new Map([...accumulators].map(([v, acc]) => [v, acc.finish()]));
}

/** The model's batch size when its first input fixes it, else undefined. */
export function fixedBatchOf(model: Model): number | undefined {
  const input = model.graph.inputs.find((v) => !v.isInitializer());
  const batch = input?.type?.shape?.[0];
  return typeof batch === 'number' && batch > 0 ? batch : undefined;
}
