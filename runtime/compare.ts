/**
 * Compare two models on the same seeded inputs: cosine similarity of their first outputs,
 * top-1 agreement (argmax over everything but the batch axis) and the largest absolute
 * difference. Graph optimisations are off, so the comparison is of the models themselves.
 */
import { loadModel } from '../compiler/onnx/io.js';
import { halfToFloat } from '../compiler/ir/tensor.js';
import { randomFeeds } from './inputs.js';
import { createSession, run, type SessionOptions } from './session.js';
import type { Tensor as OrtTensor } from 'onnxruntime-node';

export interface CompareOptions extends SessionOptions {
  samples?: number;
  seed?: number;
  /** Explicit input shapes by name (batch axis included), for inputs with symbolic dims. */
  shapes?: Record<string, readonly number[]>;
}

export interface Agreement {
  samples: number;
  cosine: number;
  top1Agreement: number;
  maxAbsDiff: number;
}

export async function compareModels(
  reference: string,
  candidate: string,
  options: CompareOptions = {},
): Promise<Agreement> {
  const samples = options.samples ?? 8;
  const model = loadModel(reference);
  const [a, b] = await Promise.all([
    createSession(reference, { optimization: 'disabled', ...options }),
    createSession(candidate, { optimization: 'disabled', ...options }),
  ]);
  try {
    let dot = 0,
      na = 0,
      nb = 0,
      maxAbsDiff = 0,
      agree = 0;
    for (let i = 0; i < samples; i++) {
      const feeds = randomFeeds(model, {
        seed: (options.seed ?? 0) + i,
        batch: 1,
        shapes: options.shapes as Record<string, number[]> | undefined,
      });
      const [ra, rb] = [await run(a, feeds), await run(b, feeds)];
      const [xa, xb] = [floats(ra[a.outputNames[0]!]!), floats(rb[b.outputNames[0]!]!)];
      for (let k = 0; k < xa.length; k++) {
        dot += xa[k]! * xb[k]!;
        na += xa[k]! ** 2;
        nb += xb[k]! ** 2;
        maxAbsDiff = Math.max(maxAbsDiff, Math.abs(xa[k]! - xb[k]!));
      }
      if (argmax(xa) === argmax(xb)) agree++;
    }
    return { samples, cosine: dot / Math.sqrt(na * nb || 1), top1Agreement: agree / samples, maxAbsDiff };
  } finally {
    await Promise.all([a.release(), b.release()]);
  }
}

/** An output tensor's values as numbers (float16 decoded). */
export function floats(t: OrtTensor): Float64Array {
  if (t.type === 'float16') return Float64Array.from(t.data as Uint16Array, halfToFloat);
  return Float64Array.from(t.data as ArrayLike<number>);
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}
