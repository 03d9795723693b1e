/**
 * Output divergence probe: how far a changed model's output moves from a reference model's
 * on a fixed set of training images — the cost of a layer-wise sensitivity scan.
 *
 * The images are decoded once; the reference output is computed once. For a classifier
 * output [N, K] the divergence is the mean KL(softmax(reference) ‖ softmax(candidate)) over
 * the images (what distillation later has to undo); for any other output it is
 * Σ(candidate − reference)² / Σ reference² (relative squared error). Sessions run with graph
 * optimisations off, like every numeric check in regroup.
 */
import { RegroupError } from '../compiler/errors.js';
import type { Model } from '../compiler/ir/model.js';
import { floats } from './compare.js';
import { batches } from './data/loader.js';
import { toTensor } from './data/preprocess.js';
import type { Dataset, InputSpec } from './data/types.js';
import { createSession, run, type ort, type SessionOptions } from './session.js';

export interface ProbeOptions extends SessionOptions {
  /** Training images to compare on (default 256). */
  samples?: number;
  /** Images per run (default 64). */
  batchSize?: number;
  /** Which images (default 0). */
  seed?: number;
}

export class OutputProbe {
  private constructor(
    private readonly feeds: readonly Record<string, ort.Tensor>[],
    private readonly reference: readonly Float64Array[],
    private readonly dims: readonly number[],
    private readonly options: ProbeOptions,
  ) {}

  /** Decode the images and compute the reference outputs. */
  static async open(
    reference: Model,
    dataset: Dataset,
    spec: InputSpec,
    options: ProbeOptions = {},
  ): Promise<OutputProbe> {
    const feeds: Record<string, ort.Tensor>[] = [];
    for await (const batch of batches(dataset, {
      batchSize: options.batchSize ?? 64,
      limit: Math.min(options.samples ?? 256, dataset.size),
      shuffle: true,
      seed: options.seed ?? 0,
    })) {
      feeds.push({ [spec.name]: toTensor(batch.images, spec) });
    }
    if (feeds.length === 0)
      throw new RegroupError('bad-data', `${dataset.name}: no readable images to measure layer sensitivity on`);
    const { outputs, dims } = await runAll(reference, feeds, options);
    return new OutputProbe(feeds, outputs, dims, options);
  }

  /** Divergence of `candidate`'s first output from the reference's (0 when identical). */
  async divergence(candidate: Model): Promise<number> {
    const { outputs } = await runAll(candidate, this.feeds, this.options);
    const classifier = this.dims.length === 2;
    let sum = 0,
      scale = 0,
      rows = 0;
    outputs.forEach((y, b) => {
      const x = this.reference[b]!;
      if (y.length !== x.length)
        throw new RegroupError(
          'invalid-ir',
          `the changed model's output has ${y.length} values per batch where the reference has ${x.length}`,
        );
      if (classifier) {
        const k = this.dims[1]!;
        for (let r = 0; r < x.length / k; r++, rows++) sum += kl(x, y, r * k, k);
      } else {
        for (let i = 0; i < x.length; i++) {
          sum += (y[i]! - x[i]!) ** 2;
          scale += x[i]! ** 2;
        }
      }
    });
    return classifier ? sum / rows : sum / (scale || 1);
  }
}

async function runAll(
  model: Model,
  feeds: readonly Record<string, ort.Tensor>[],
  options: SessionOptions,
): Promise<{ outputs: Float64Array[]; dims: readonly number[] }> {
  const session = await createSession(model, { ...options, optimization: 'disabled' });
  try {
    const name = session.outputNames[0]!;
    const outputs: Float64Array[] = [];
    let dims: readonly number[] = [];
    for (const feed of feeds) {
      const out = (await run(session, feed, [name]))[name]!;
      outputs.push(floats(out));
      dims = out.dims;
    }
    return { outputs, dims };
  } finally {
    await session.release();
  }
}

/** KL(softmax(p) ‖ softmax(q)) for one row of logits. */
function kl(p: Float64Array, q: Float64Array, offset: number, k: number): number {
  const lp = logSoftmax(p, offset, k);
  const lq = logSoftmax(q, offset, k);
  let sum = 0;
  for (let i = 0; i < k; i++) sum += Math.exp(lp[i]!) * (lp[i]! - lq[i]!);
  return Math.max(sum, 0);
}

function logSoftmax(x: Float64Array, offset: number, k: number): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < k; i++) max = Math.max(max, x[offset + i]!);
  let z = 0;
  for (let i = 0; i < k; i++) z += Math.exp(x[offset + i]! - max);
  const log = Math.log(z) + max;
  return Float64Array.from({ length: k }, (_, i) => x[offset + i]! - log);
}
