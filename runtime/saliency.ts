/**
 * Channel saliency on labelled data (WSP, Guo et al. 2021): for chosen intermediate values
 * a (channels on axis 1), stream over N labelled images
 *   activation sparsity  s_a(c) = #{(n, x): |a[n, c, x]| ≤ ε} / (N·X)
 *   gradient sparsity    s_g(c) = #{(n, x): |g[n, c, x]| ≤ ε} / (N·X),  g = ∂ℓ_n/∂a[n, c, x]
 *   mean |a|, mean |g|   over the same N·X entries (zeros included)
 * where ℓ_n is sample n's cross-entropy on its label and X the spatial positions.
 *
 * One onnxruntime session runs a copy of the model with the loss and its backward pass
 * appended by regroup's autodiff (compiler/autodiff/gradients.ts differentiates with respect
 * to intermediate values as well as parameters): inputs data and int64 labels, outputs the
 * chosen values and their gradients. BatchNormalization stays in inference form (running
 * statistics), so samples do not interact and the batch loss's gradient times the batch size
 * is every sample's own ∂ℓ_n/∂a (the graph's loss is the batch mean).
 */
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import { emitLoss } from '../compiler/autodiff/losses.js';
import { Emitter } from '../compiler/autodiff/emitter.js';
import { appendGradients } from '../compiler/autodiff/gradients.js';
import { ensureOpset } from '../compiler/autodiff/opset.js';
import { RegroupError } from '../compiler/errors.js';
import { DataType } from '../compiler/ir/dtype.js';
import type { Graph } from '../compiler/ir/graph.js';
import type { Model } from '../compiler/ir/model.js';
import type { Dim, Value } from '../compiler/ir/node.js';
import { fixedBatchOf } from './calibrate.js';
import { floats } from './compare.js';
import { batches } from './data/loader.js';
import { toTensor } from './data/preprocess.js';
import type { Dataset, InputSpec } from './data/types.js';
import { createSession, ort, run, type SessionOptions } from './session.js';

/** Per-channel saliency of one value (the same shape as ChannelSaliency in passes/methods/method.ts). */
export interface ChannelSaliency {
  readonly activationSparsity: Float64Array;
  readonly gradientSparsity: Float64Array;
  readonly activationMeanAbs: Float64Array;
  readonly gradientMeanAbs: Float64Array;
  /** Images measured. */
  readonly samples: number;
}

export interface SaliencyOptions extends SessionOptions {
  /** Images measured (default 256, at most the dataset's size). */
  samples?: number;
  /** Images per run (default 32; a model with a fixed batch uses its own). */
  batchSize?: number;
  /** Entries with |x| ≤ epsilon count as zeros (default 0: exact zeros). */
  epsilon?: number;
  /** Seed of the shuffled order the images are drawn in (default 0). */
  seed?: number;
  onProgress?: (done: number, total: number) => void;
}

/** The model with its loss and gradients exposed: feeds data + labels, fetches values and gradients. */
export interface SaliencyGraph {
  readonly model: Model;
  readonly labels: string;
  /** Output names per requested value, in request order. */
  readonly activations: readonly string[];
  readonly gradients: readonly string[];
}

/** Activation and gradient sparsity per channel of each value over labelled images (see the header). */
export async function channelSaliency(
  model: Model,
  dataset: Dataset,
  spec: InputSpec,
  values: readonly Value[],
  options: SaliencyOptions = {},
): Promise<Map<Value, ChannelSaliency>> {
  const total = Math.min(options.samples ?? 256, dataset.size);
  const fixed = fixedBatchOf(model);
  const batchSize = fixed ?? options.batchSize ?? 32;
  const graph = saliencyGraph(model, values, spec);
  const session = await createSession(graph.model, { optimization: 'disabled', ...options });
  const accumulators = values.map(() => new SaliencyAccumulator(options.epsilon ?? 0));
  let done = 0;
  try {
    for await (const batch of batches(dataset, { batchSize, limit: total, shuffle: true, seed: options.seed ?? 0 })) {
      if (fixed && batch.images.length < fixed) break; // a fixed-batch model cannot take a short tail
      const labels = new ort.Tensor(
        'int64',
        BigInt64Array.from(batch.labels, (l) => BigInt(l)),
        [batch.labels.length],
      );
      const out = await run(session, { [spec.name]: toTensor(batch.images, spec), [graph.labels]: labels }, [
        ...graph.activations,
        ...graph.gradients,
      ]);
      values.forEach((value, k) => {
        accumulators[k]!.add(value, out[graph.activations[k]!]!, out[graph.gradients[k]!]!, batch.images.length);
      });
      done += batch.images.length;
      options.onProgress?.(done, total);
    }
  } finally {
    await session.release();
  }
  if (done === 0)
    throw new RegroupError('bad-data', `${dataset.name}: no labelled images could be measured for channel saliency`);
  return new Map(values.map((value, k) => [value, accumulators[k]!.finish()]));
}

/**
 * A copy of `model` (opset ≥ 17) whose outputs are the requested values and the gradients of
 * the mean cross-entropy of the first output (the logits, [N, classes]) on int64 `labels`
 * with respect to them. The data input's batch becomes symbolic unless the model fixes it.
 */
export function saliencyGraph(model: Model, values: readonly Value[], spec: InputSpec): SaliencyGraph {
  const { model: copy, values: copies } = model.clone();
  const wrt = values.map(
    (v) =>
      copies.get(v) ?? fail(`value '${v.name}' is not in the model's graph; measure values of the model passed in`),
  );
  ensureOpset(copy, 17);
  const graph = copy.graph;
  const logits =
    graph.outputs[0] ?? fail(`graph '${graph.name}' has no outputs; saliency needs the logits as its first output`);
  const batch = shapeDataInput(copy, spec, logits);
  const labels = graph.addInput(unclaimedName(graph, 'labels'), { dtype: DataType.INT64, shape: [batch] });
  const dtype = inferShapes(copy).typeOf(logits)?.dtype ?? DataType.FLOAT;
  if (dtype !== DataType.FLOAT)
    throw new RegroupError(
      'unsupported',
      `logits '${logits.name}' are not float32; channel saliency needs a float32 model`,
    );
  const loss = emitLoss(
    new Emitter(graph, copy.opset('') ?? 17, 'saliency'),
    { kind: 'cross-entropy' },
    { logits, labels, dtype },
  );
  const result = appendGradients(copy, { loss, wrt });
  graph.outputs.length = 0;
  const activations = wrt.map((v) => asOutput(graph, result.resolve(v)).name);
  const gradients = wrt.map((v) => asOutput(graph, result.gradients.get(v)!).name);
  graph.sort();
  return { model: copy, labels: labels.name, activations, gradients };
}

/** Give the data input the spec's NCHW/NHWC shape with a symbolic (or the model's fixed) batch. */
function shapeDataInput(model: Model, spec: InputSpec, logits: Value): Dim {
  const input = model.graph.inputs.find((v) => v.name === spec.name && !v.isInitializer());
  if (!input)
    throw new RegroupError('usage', `the input spec names '${spec.name}', which is not a data input of the model`);
  const declared = input.type?.shape?.[0];
  const batch: Dim =
    typeof declared === 'number' && declared > 0 ? declared : typeof declared === 'string' ? declared : 'N';
  const dims: Dim[] =
    spec.layout === 'NCHW'
      ? [batch, spec.channels, spec.height, spec.width]
      : [batch, spec.height, spec.width, spec.channels];
  input.type = { dtype: input.type?.dtype ?? DataType.FLOAT, shape: dims };
  model.graph.valueInfo.length = 0; // declared intermediate shapes may repeat an exporter's fixed batch
  if (logits.type?.shape?.length) logits.type = { ...logits.type, shape: [batch, ...logits.type.shape.slice(1)] };
  return batch;
}

/** A value that can be listed as one more graph output (inputs, initializers and repeats go through an Identity). */
function asOutput(graph: Graph, value: Value): Value {
  const listed = value.isGraphInput() || value.isInitializer() || graph.outputs.includes(value) || !value.producer;
  const out = listed
    ? graph.addNode('Identity', [value], { name: graph.names.fresh('saliency/output') }).output(0)
    : value;
  graph.outputs.push(out);
  return out;
}

function unclaimedName(graph: Graph, base: string): string {
  if (!graph.names.has(base)) return base;
  for (let n = 1; ; n++) if (!graph.names.has(`${base}_${n}`)) return `${base}_${n}`;
}

function fail(message: string): never {
  throw new RegroupError('usage', message);
}

/** Streaming counts for one value; channels on axis 1, the rest of a sample's entries are its positions. */
class SaliencyAccumulator {
  #entries = 0;
  #samples = 0;
  #channels = -1;
  #zerosA = new Float64Array();
  #zerosG = new Float64Array();
  #absA = new Float64Array();
  #absG = new Float64Array();

  constructor(readonly epsilon: number) {}

  add(value: Value, activation: ort.Tensor, gradient: ort.Tensor, images: number): void {
    const dims = activation.dims;
    if (dims.length < 2)
      throw new RegroupError(
        'usage',
        `value '${value.name}' has rank ${dims.length}; channel saliency needs [N, C, …]`,
      );
    if (gradient.dims.join(',') !== dims.join(','))
      throw new RegroupError(
        'invalid-ir',
        `internal: gradient of '${value.name}' has shape [${gradient.dims}] but the value [${dims}]`,
      );
    const [n, c] = [dims[0]!, dims[1]!];
    this.#allocate(c, value);
    const spatial = dims.slice(2).reduce((a, b) => a * b, 1);
    // The graph's loss is the batch mean: n · ∂L/∂a is each sample's own gradient.
    this.#accumulate(floats(activation), n, c, spatial, 1, this.#zerosA, this.#absA);
    this.#accumulate(floats(gradient), n, c, spatial, n, this.#zerosG, this.#absG);
    this.#entries += images * spatial;
    this.#samples += images;
  }

  #allocate(channels: number, value: Value): void {
    if (this.#channels === channels) return;
    if (this.#channels !== -1)
      throw new RegroupError('invalid-ir', `value '${value.name}' changed its channel count between batches`);
    this.#channels = channels;
    this.#zerosA = new Float64Array(channels);
    this.#zerosG = new Float64Array(channels);
    this.#absA = new Float64Array(channels);
    this.#absG = new Float64Array(channels);
  }

  /** Count |x·scale| ≤ ε and sum |x·scale| per channel over `n` samples. */
  #accumulate(
    data: Float64Array,
    n: number,
    c: number,
    spatial: number,
    scale: number,
    zeros: Float64Array,
    abs: Float64Array,
  ): void {
    for (let sample = 0; sample < n; sample++) {
      for (let channel = 0; channel < c; channel++) {
        const base = (sample * c + channel) * spatial;
        let [z, s] = [0, 0];
        for (let i = 0; i < spatial; i++) {
          const x = Math.abs(data[base + i]! * scale);
          if (x <= this.epsilon) z++;
          s += x;
        }
        zeros[channel] = zeros[channel]! + z;
        abs[channel] = abs[channel]! + s;
      }
    }
  }

  finish(): ChannelSaliency {
    const per = Math.max(this.#entries, 1);
    const mean = (sums: Float64Array) => sums.map((s) => s / per);
    return {
      activationSparsity: mean(this.#zerosA),
      gradientSparsity: mean(this.#zerosG),
      activationMeanAbs: mean(this.#absA),
      gradientMeanAbs: mean(this.#absG),
      samples: this.#samples,
    };
  }
}
