/**
 * Evaluation on labelled data: top-1 / top-5 accuracy, and against a reference model the
 * top-1 agreement, mean per-sample cosine similarity of the outputs and the largest
 * absolute difference. Batches come from the data loader, preprocessed to the model's
 * input spec; a model whose batch dimension is fixed is fed that many samples at a time.
 */
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { RegroupError } from '../compiler/errors.js';
import type { Model } from '../compiler/ir/model.js';
import { argmax, floats } from './compare.js';
import { batches } from './data/loader.js';
import { toTensor } from './data/preprocess.js';
import type { Dataset, InputSpec, LabeledImage } from './data/types.js';
import { createSession, run, type SessionOptions } from './session.js';

export interface EvaluateOptions extends SessionOptions {
  /** Samples per run (forced to the model's batch size when that is fixed). */
  batchSize?: number;
  limit?: number;
  /** A second model to compare against on the same inputs. */
  reference?: string | Model;
  strict?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface AccuracyResult {
  samples: number;
  top1: number;
  top5: number;
  /** Images that could not be read (skipped unless strict), and the first few of them. */
  skipped: number;
  skippedSources: string[];
  seconds: number;
  agreement?: { top1Agreement: number; cosine: number; maxAbsDiff: number };
}

/** Evaluate a model over a dataset; `fixedBatch` is the batch its input fixes (see fixedBatchOf). */
export async function evaluate(
  model: Model | string,
  fixedBatch: number | undefined,
  dataset: Dataset,
  spec: InputSpec,
  options: EvaluateOptions = {},
): Promise<AccuracyResult> {
  const started = performance.now();
  const batchSize = fixedBatch ?? options.batchSize ?? 32;
  const total = Math.min(options.limit ?? dataset.size, dataset.size);
  const session = await createSession(model, options);
  const reference = options.reference ? await createSession(options.reference, options) : undefined;
  const tally = { samples: 0, top1: 0, top5: 0, agree: 0, cosine: 0, maxAbsDiff: 0 };
  // A limited run takes a seeded random subset: the first N of a class-sorted folder would be one or two classes.
  const stream = batches(dataset, {
    batchSize,
    limit: total,
    strict: options.strict,
    shuffle: total < dataset.size,
    seed: 0,
  });
  try {
    for await (const batch of stream) {
      // A model with a fixed batch gets a short last batch padded with its first image.
      const items =
        fixedBatch && batch.images.length < fixedBatch
          ? [...batch.images, ...Array<LabeledImage>(fixedBatch - batch.images.length).fill(batch.images[0]!)]
          : batch.images;
      const feeds = { [spec.name]: toTensor(items, spec) };
      const count = batch.images.length;
      const logits = rows(await firstOutput(session, feeds), items.length).slice(0, count);
      // The reference may name its input differently; it gets the same tensor.
      const refLogits = reference
        ? rows(await firstOutput(reference, { [reference.inputNames[0]!]: feeds[spec.name]! }), items.length).slice(
            0,
            count,
          )
        : undefined;
      logits.forEach((row, i) => score(row, batch.labels[i]!, refLogits?.[i], tally));
      options.onProgress?.(tally.samples + stream.skipped, total);
    }
  } finally {
    await session.release();
    await reference?.release();
  }
  if (tally.samples === 0) throw new RegroupError('bad-data', `${dataset.name}: no readable samples to evaluate`);
  const result: AccuracyResult = {
    samples: tally.samples,
    top1: tally.top1 / tally.samples,
    top5: tally.top5 / tally.samples,
    skipped: stream.skipped,
    skippedSources: [...stream.skippedSources],
    seconds: (performance.now() - started) / 1000,
  };
  if (reference)
    result.agreement = {
      top1Agreement: tally.agree / tally.samples,
      cosine: tally.cosine / tally.samples,
      maxAbsDiff: tally.maxAbsDiff,
    };
  return result;
}

async function firstOutput(session: InferenceSession, feeds: Record<string, OrtTensor>): Promise<OrtTensor> {
  const out = await run(session, feeds, [session.outputNames[0]!]);
  return out[session.outputNames[0]!]!;
}

/** Split an output [N, …] into N rows of class scores. */
function rows(t: OrtTensor, n: number): Float64Array[] {
  const values = floats(t);
  const per = values.length / n;
  if (!Number.isInteger(per))
    throw new RegroupError('runtime', `model output of ${values.length} values does not split into ${n} samples`);
  return Array.from({ length: n }, (_, i) => values.subarray(i * per, (i + 1) * per));
}

function score(
  row: Float64Array,
  label: number,
  ref: Float64Array | undefined,
  tally: { samples: number; top1: number; top5: number; agree: number; cosine: number; maxAbsDiff: number },
): void {
  tally.samples++;
  const best = argmax(row);
  if (best === label) tally.top1++;
  if (rank(row, label) < 5) tally.top5++;
  if (!ref) return;
  if (argmax(ref) === best) tally.agree++;
  let dot = 0,
    na = 0,
    nb = 0;
  for (let k = 0; k < row.length; k++) {
    dot += row[k]! * ref[k]!;
    na += row[k]! * row[k]!;
    nb += ref[k]! * ref[k]!;
    tally.maxAbsDiff = Math.max(tally.maxAbsDiff, Math.abs(row[k]! - ref[k]!));
  }
  tally.cosine += na === 0 && nb === 0 ? 1 : dot / Math.sqrt(na * nb);
}

/** How many classes score strictly higher than `label`. */
function rank(row: Float64Array, label: number): number {
  let higher = 0;
  for (let k = 0; k < row.length; k++) if (row[k]! > row[label]!) higher++;
  return higher;
}
