/**
 * Latency benchmark: warm-up runs, then N timed runs of one session on fixed seeded
 * inputs; median, p90, mean, min and throughput.
 */
import type { Model } from '../compiler/ir/model.js';
import { randomFeeds, type InputOptions } from './inputs.js';
import { createSession, run, type SessionOptions } from './session.js';

export interface BenchOptions extends SessionOptions, InputOptions {
  warmup?: number;
  runs?: number;
  /** Called after each timed run (progress). */
  onRun?: (done: number, total: number) => void;
}

export interface LatencyStats {
  ep: string;
  batch: number;
  runs: number;
  medianMs: number;
  p90Ms: number;
  meanMs: number;
  minMs: number;
  /** Samples per second at the median latency. */
  throughput: number;
}

export async function benchmark(
  source: Model | Uint8Array | string,
  model: Model,
  options: BenchOptions = {},
): Promise<LatencyStats> {
  const runs = options.runs ?? 50;
  const warmup = options.warmup ?? 5;
  const batch = options.batch ?? 1;
  const session = await createSession(source, options);
  try {
    const feeds = randomFeeds(model, { ...options, batch });
    for (let i = 0; i < warmup; i++) await run(session, feeds);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const start = process.hrtime.bigint();
      await run(session, feeds);
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
      options.onRun?.(i + 1, runs);
    }
    const medianMs = quantile(times, 0.5);
    return {
      ep: options.ep ?? 'cpu',
      batch,
      runs,
      medianMs,
      p90Ms: quantile(times, 0.9),
      meanMs: times.reduce((a, b) => a + b, 0) / times.length,
      minMs: Math.min(...times),
      throughput: (batch * 1000) / medianMs,
    };
  } finally {
    await session.release();
  }
}

/** Linear-interpolated quantile of unsorted samples. */
export function quantile(samples: readonly number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}
