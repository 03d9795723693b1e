/**
 * Gradient checks: the autodiff gradient of a scalar loss against central finite
 * differences of the same loss, both computed by onnxruntime (CPU, optimisations disabled)
 * on the gradient model, so the forward the differences see is exactly the one
 * differentiated.
 *
 * For each checked tensor θ (a graph input of the test model):
 *   entries     up to `entries` random elements i:  fd_i = (L(θ + ε·e_i) − L(θ − ε·e_i)) / 2ε
 *   directions  `directions` random unit-norm d:     fd_d = (L(θ + ε·d) − L(θ − ε·d)) / 2ε vs ⟨g, d⟩
 * error = |g − fd| / max(|g|, |fd|, floor): floor = 1e-3 · max|g| for entries (so entries whose
 * gradient is ~0 are measured against the tensor's gradient scale, not against 0) and
 * ‖g‖/√n, the typical size of a random unit projection, for directions. Losses are summed
 * in float64 (float32 outputs cast up) so the differences are not swamped by the rounding
 * of a float32 sum.
 */
import { attr } from '../../compiler/ir/attribute.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Graph } from '../../compiler/ir/graph.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { Random } from '../../compiler/util/random.js';
import { gradientModel, type GradientOptions } from '../../compiler/autodiff/gradients.js';
import { createSession, ort, run, toOrtTensor, type Feeds } from '../../runtime/session.js';

ort.env.logLevel = 'error';

export interface GradCheckOptions {
  /** Finite-difference step. */
  readonly eps: number;
  /** Random single entries checked per tensor (all when the tensor is smaller). */
  readonly entries?: number;
  /** Random directions checked per tensor. */
  readonly directions?: number;
  readonly seed?: number;
  readonly trainingBatchNorm?: boolean | 'fused';
  readonly options?: GradientOptions;
}

/** A float input: dims and values (held as float64, fed in the input's own type). */
export interface Input {
  readonly dtype: DataType;
  readonly dims: readonly number[];
  readonly data: Float64Array;
}

export type Inputs = Record<string, Input>;

/** Max error over the checked entries and directions, per checked tensor. */
export type GradCheckResult = Record<string, number>;

/** Random normal input of a float type. */
export function randomInput(dims: readonly number[], dtype: DataType, seed: number, scale = 1): Input {
  const count = dims.reduce((a, b) => a * b, 1);
  const random = new Random(seed);
  return { dtype, dims, data: Float64Array.from({ length: count }, () => random.normal() * scale) };
}

/**
 * y in float64: float32 outputs are cast up first, so the loss sum adds no float32
 * rounding and the differences resolve gradients far below the float32 step's own error.
 */
function toDouble(graph: Graph, y: Value, dtype: DataType): Value {
  return dtype === DataType.DOUBLE
    ? y
    : graph.addNode('Cast', [y], { attributes: [attr.int('to', DataType.DOUBLE)] }).output(0);
}

function doubles(graph: Graph, name: string, dims: readonly number[], data: Float64Array): Value {
  return graph.addInitializer(name, Tensor.fromArray(DataType.DOUBLE, dims, data), { fresh: true });
}

const op = (graph: Graph, type: string, inputs: Value[]) => graph.addNode(type, inputs).output(0);

function sumToLoss(graph: Graph, v: Value): Value {
  return graph.addNode('ReduceSum', [v], { attributes: [attr.int('keepdims', 0)], outputs: ['loss'] }).output(0);
}

/** loss = Σ y·R with a seeded random R (a random projection: ∂loss/∂y = R), computed in float64. */
export function projectionLoss(graph: Graph, y: Value, dims: readonly number[], dtype: DataType, seed = 99): Value {
  const r = randomInput(dims, DataType.DOUBLE, seed);
  return sumToLoss(graph, op(graph, 'Mul', [toDouble(graph, y, dtype), doubles(graph, 'projection', dims, r.data)]));
}

/** loss = Σ y²/2 + Σ y·R (the incoming gradient y + R depends on the forward values), in float64. */
export function squaresLoss(graph: Graph, y: Value, dims: readonly number[], dtype: DataType, seed = 98): Value {
  const r = randomInput(dims, DataType.DOUBLE, seed);
  const y64 = toDouble(graph, y, dtype);
  const quadratic = op(graph, 'Mul', [op(graph, 'Mul', [y64, y64]), doubles(graph, 'half', [], Float64Array.of(0.5))]);
  return sumToLoss(
    graph,
    op(graph, 'Add', [quadratic, op(graph, 'Mul', [y64, doubles(graph, 'projection', dims, r.data)])]),
  );
}

export function feedsOf(inputs: Inputs, override?: { name: string; data: Float64Array }): Feeds {
  const feeds: Feeds = {};
  for (const [name, input] of Object.entries(inputs)) {
    const data = override?.name === name ? override.data : input.data;
    feeds[name] =
      input.dtype === DataType.DOUBLE
        ? toOrtTensor(DataType.DOUBLE, input.dims, data)
        : input.dtype === DataType.INT64
          ? toOrtTensor(
              DataType.INT64,
              input.dims,
              BigInt64Array.from(data, (x) => BigInt(x)),
            )
          : toOrtTensor(DataType.FLOAT, input.dims, Float32Array.from(data));
  }
  return feeds;
}

/** Check ∂loss/∂θ for every θ in `wrt` (graph inputs named in `inputs`); returns the max errors. */
export async function gradCheck(
  model: Model,
  wrt: readonly string[],
  inputs: Inputs,
  options: GradCheckOptions,
): Promise<GradCheckResult> {
  const gm = gradientModel(model, {
    loss: 'loss',
    wrt,
    trainingBatchNorm: options.trainingBatchNorm,
    options: options.options,
  });
  const session = await createSession(gm.model, { optimization: 'disabled' });
  try {
    const base = await run(session, feedsOf(inputs));
    const lossAt = async (name: string, data: Float64Array) =>
      Number((await run(session, feedsOf(inputs, { name, data }), [gm.loss]))[gm.loss]!.data[0]);
    const result: GradCheckResult = {};
    const random = new Random(options.seed ?? 5);
    for (const name of wrt) {
      const g = Float64Array.from(base[gm.gradients.get(name)!]!.data as Float32Array);
      result[name] = await checkTensor(name, inputs[name]!, g, lossAt, options, random);
    }
    return result;
  } finally {
    await session.release();
  }
}

async function checkTensor(
  name: string,
  input: Input,
  g: Float64Array,
  lossAt: (name: string, data: Float64Array) => Promise<number>,
  options: GradCheckOptions,
  random: Random,
): Promise<number> {
  if (g.length !== input.data.length)
    throw new Error(`gradient of '${name}' has ${g.length} elements, the input ${input.data.length}`);
  const eps = options.eps;
  const floor = 1e-3 * g.reduce((m, x) => Math.max(m, Math.abs(x)), 0) + 1e-12;
  const error = (analytic: number, numeric: number) =>
    Math.abs(analytic - numeric) / Math.max(Math.abs(analytic), Math.abs(numeric), floor);
  const central = async (direction: Float64Array) => {
    const plus = input.data.map((x, k) => x + eps * direction[k]!);
    const minus = input.data.map((x, k) => x - eps * direction[k]!);
    return ((await lossAt(name, plus)) - (await lossAt(name, minus))) / (2 * eps);
  };
  let worst = 0;
  for (const index of sampleIndices(g.length, options.entries ?? 24, random)) {
    const direction = new Float64Array(g.length);
    direction[index] = 1;
    worst = Math.max(worst, error(g[index]!, await central(direction)));
  }
  // A random unit direction's projection is typically ‖g‖/√n: that is its error's scale floor.
  const typical = Math.sqrt(g.reduce((s, x) => s + x * x, 0) / g.length) + 1e-12;
  const directionalError = (analytic: number, numeric: number) =>
    Math.abs(analytic - numeric) / Math.max(Math.abs(analytic), Math.abs(numeric), typical);
  for (let k = 0; k < (options.directions ?? 3); k++) {
    const raw = Float64Array.from({ length: g.length }, () => random.normal());
    const norm = Math.sqrt(raw.reduce((s, x) => s + x * x, 0));
    const direction = raw.map((x) => x / norm);
    const analytic = g.reduce((s, x, i) => s + x * direction[i]!, 0);
    worst = Math.max(worst, directionalError(analytic, await central(direction)));
  }
  return worst;
}

function sampleIndices(length: number, count: number, random: Random): number[] {
  const all = Array.from({ length }, (_, k) => k);
  return count >= length ? all : random.shuffle(all).slice(0, count);
}

/** The model with every straight-through Sign replaced by u + (sign u₀ − u₀): same value at θ₀, identity slope. */
export async function surrogate(model: Model, signs: readonly string[], feeds: Record<string, Input>): Promise<Model> {
  const probe = model.clone().model;
  const byName = probe.graph.valueMap();
  const inputsOfSigns = signs.map((s) => byName.get(s)!.producer!.input(0));
  probe.graph.outputs.push(...inputsOfSigns);
  const session = await createSession(probe, { optimization: 'disabled' });
  const out = await run(session, feedsOf(feeds));
  await session.release();
  const copy = model.clone().model;
  const values = copy.graph.valueMap();
  signs.forEach((name, k) => {
    const sign = values.get(name)!;
    const node = sign.producer!;
    const probed = out[inputsOfSigns[k]!.name]!;
    const u0 = Array.from(probed.data as Float32Array);
    const shift = copy.graph.addInitializer(
      `${name}.shift`,
      Tensor.float32(
        [...probed.dims],
        u0.map((u) => Math.sign(u) - u),
      ),
      { fresh: true },
    );
    const add = copy.graph.createNode('Add', [node.input(0), shift], { name: `${node.name}.surrogate` });
    copy.graph.insertBefore(node, add);
    sign.replaceAllUsesWith(add.output(0));
    copy.graph.remove(node);
  });
  copy.graph.sort();
  return copy;
}

export async function straightThroughGradient(
  model: Model,
  signs: readonly string[],
  feeds: Record<string, Input>,
  wrt = 'input',
  trainingBatchNorm = false,
) {
  const gm = gradientModel(model, { loss: 'loss', wrt: [wrt], straightThrough: signs, trainingBatchNorm });
  const session = await createSession(gm.model, { optimization: 'disabled' });
  const out = await run(session, feedsOf(feeds));
  await session.release();
  return Float64Array.from(out[gm.gradients.get(wrt)!]!.data as Float32Array);
}

export async function surrogateGradient(
  model: Model,
  feeds: Record<string, Input>,
  wrt = 'input',
  trainingBatchNorm = false,
) {
  const gm = gradientModel(model, { loss: 'loss', wrt: [wrt], trainingBatchNorm });
  const session = await createSession(gm.model, { optimization: 'disabled' });
  const out = await run(session, feedsOf(feeds));
  await session.release();
  return Float64Array.from(out[gm.gradients.get(wrt)!]!.data as Float32Array);
}
