/**
 * The training-step builder: one ONNX model that runs forward, loss, backward and the
 * optimizer update for a batch (contract in types.ts):
 *
 *   step(data, labels[, teacher_logits], lr, step, params…, state…) → loss, logits, params'…, state'…
 *
 * Built on a copy of the inference model (opset raised to ≥ 17, Constant-node weights made
 * initializers, constants.ts):
 *   1. every BatchNormalization switches to batch statistics (batchnorm-training.ts); its
 *      running mean/var become state carried with PyTorch momentum;
 *   2. trainable parameters (default: float initializers feeding a Conv/ConvTranspose/Gemm/
 *      MatMul weight or bias or a BatchNormalization scale or bias, minus `frozen`, plus
 *      `trainable`) and the BN statistics become graph inputs; frozen ones stay initializers;
 *      `fed` initializers become inputs that are fed every step and never updated;
 *   3. the loss (losses.ts) is appended on the logits, plus every `lossTerms` scalar, then its
 *      gradient with respect to the parameters (gradients.ts), then the optimizer update
 *      (optimizers.ts), with masks applied to gradients and updates.
 *
 * Dropout nodes stay in inference form (identity): the step model is deterministic.
 * Data inputs get a symbolic batch dim (an exporter's fixed batch becomes 'N'; other dims
 * may be fixed with options.inputShapes); labels and teacher logits share it. A graph
 * that hard-codes its batch in a Reshape constant still only runs at that batch.
 */
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Dim, Value } from '../ir/node.js';
import type { Tensor } from '../ir/tensor.js';
import { inferShapes } from '../analysis/shape-inference.js';
import { RegroupError } from '../errors.js';
import { lowerTrainingBatchNorms, type RunningStatUpdate } from './batchnorm-training.js';
import { Emitter, floatTensor } from './emitter.js';
import { appendGradients, type GradientOptions } from './gradients.js';
import { emitLoss } from './losses.js';
import { parameterConstantsToInitializers } from './constants.js';
import { opRole } from '../ir/op-roles.js';
import { ensureOpset } from './opset.js';
import { emitOptimizer, type ParameterUpdate } from './optimizers.js';
import { straightThroughRegions } from './straight-through.js';
import type { CarriedTensor, FedTensor, LossTerm, TrainingGraph, TrainingSpec } from './types.js';

export type { LossTerm, TrainingGraph, TrainingSpec };

/** Build options beyond the contract's TrainingSpec. */
export interface TrainingBuildOptions extends GradientOptions {
  /**
   * Shapes for data inputs whose declared shape has unknown spatial dims (the batch dim
   * stays symbolic whatever is given): convolution gradients need static spatial sizes.
   */
  readonly inputShapes?: Readonly<Record<string, readonly Dim[]>>;
  /**
   * Build the step for batches of exactly this many samples (default: any batch size). Every
   * activation's size is then known, which some backward forms need (rules/conv.ts: the
   * depthwise weight gradient over batch × channels).
   */
  readonly batch?: number;
  /**
   * Training-mode BatchNormalization statistics from reductions (default) or one fused
   * training-mode node, which onnxruntime's CPU provider runs faster (batchnorm-training.ts).
   */
  readonly batchNormStatistics?: 'reductions' | 'fused';
}

/**
 * Build the step model for `model` (not changed) per `spec`; `options` chooses between
 * equivalent backward formulations (defaults are the fastest measured) and can fix input shapes.
 */
export function buildTrainingGraph(
  model: Model,
  spec: TrainingSpec,
  options: TrainingBuildOptions = {},
): TrainingGraph {
  const copy = model.clone().model;
  ensureOpset(copy, 17);
  parameterConstantsToInitializers(copy);
  const graph = copy.graph;
  const logits = findLogits(graph, spec.logits);
  const dataInputs = graph.inputs.filter((v) => !v.isInitializer());
  if (options.batch !== undefined && !(Number.isInteger(options.batch) && options.batch > 0))
    throw new RegroupError('usage', `batch ${options.batch} is not a whole number ≥ 1`);
  const batch = setBatch(copy, dataInputs, logits, options.inputShapes ?? {}, options.batch);
  const params = trainableParameters(graph, spec);
  const fedInputs = fedTensors(graph, spec, params);
  const masks = maskTensors(params, spec.masks);
  checkLrScales(params, spec.lrScale);
  const bn = lowerTrainingBatchNorms(copy, {
    momentum: spec.bnMomentum ?? 0.1,
    statistics: options.batchNormStatistics ?? 'reductions',
  });
  const dtype = logitsType(copy, logits);
  const monitor = monitoredValues(copy, spec.monitor ?? []);
  const inputs = addStepInputs(graph, spec, batch, logits, dtype);
  if (spec.stepValue) readStep(graph, spec.stepValue, inputs.step);
  const paramInits = new Map(params.map((p) => [p.name, carryAsInput(graph, p, masks.get(p.name))]));
  const statInits = bn.updates.map((u) => [carryAsInput(graph, u.mean), carryAsInput(graph, u.variance)] as const);
  const e = new Emitter(graph, copy.opset('') ?? 17, 'train');
  const loss = addLossTerms(
    e,
    emitLoss(e, spec.loss, { logits, labels: inputs.labels, teacherLogits: inputs.teacherLogits, dtype }),
    spec.lossTerms ?? [],
    progressOf(e, inputs.step, spec.totalSteps, dtype),
  );
  const regions = [...bn.regions, ...straightThroughRegions(graph, spec.straightThrough ?? [])];
  const result = appendGradients(copy, { loss, wrt: params, regions, options });
  const updates: ParameterUpdate[] = params.map((p) => ({
    name: p.name,
    value: p,
    gradient: result.gradients.get(p)!,
    mask: maskValue(e, masks.get(p.name), dtype),
    lrScale: spec.lrScale?.get(p.name),
  }));
  const carried = new CarrySet(graph);
  const optimizer = emitOptimizer(e, spec.optimizer, updates, { lr: inputs.lr, step: inputs.step, dtype }, (p, slot) =>
    carried.slotInput(p.value, slot),
  );
  const paramCarry = params.map((p) =>
    carried.carry(p.name, p, optimizer.params.get(p.name)!, paramInits.get(p.name)!),
  );
  const slotCarry = optimizer.slots.map((s) =>
    carried.carry(`${s.parameter}.${s.slot}`, s.input, s.next, zerosLike(paramInits.get(s.parameter)!)),
  );
  const statCarry = bn.updates.flatMap((u, k) => statCarries(carried, u, statInits[k]![0], statInits[k]![1]));
  const [lossOut, logitsOut] = [result.resolve(loss), result.resolve(logits)];
  lossOut.name = graph.names.fresh('loss');
  // An Identity per monitored value: a value can be a graph output only once.
  const monitored = new Map(
    monitor.map((v) => {
      const out = e.op('Identity', [result.resolve(v)]);
      out.name = graph.names.fresh(`monitor.${v.name}`);
      return [v.name, out] as const;
    }),
  );
  graph.outputs.length = 0;
  graph.outputs.push(lossOut, logitsOut, ...carried.outputs, ...monitored.values());
  graph.sort();
  return {
    model: copy,
    batch: options.batch,
    inputs: {
      data: dataInputs.map((v) => v.name),
      labels: inputs.labels.name,
      teacherLogits: inputs.teacherLogits?.name,
      lr: inputs.lr.name,
      step: inputs.step.name,
    },
    params: paramCarry,
    fed: fedInputs,
    state: [...slotCarry, ...statCarry],
    outputs: {
      loss: lossOut.name,
      logits: logitsOut.name,
      monitored: new Map([...monitored].map(([name, v]) => [name, v.name])),
    },
  };
}

/** The values TrainingSpec.monitor names, checked to be float scalars of the model. */
function monitoredValues(model: Model, names: readonly string[]): Value[] {
  if (names.length === 0) return [];
  const values = model.graph.valueMap();
  const shapes = inferShapes(model);
  return names.map((name) => {
    const value = values.get(name);
    const type = value && shapes.typeOf(value);
    if (!value || type?.shape?.length !== 0 || (type.dtype ?? DataType.FLOAT) !== DataType.FLOAT)
      throw new RegroupError(
        'usage',
        `monitored value '${name}' ${value ? `is not a float scalar (shape [${type?.shape?.join(', ') ?? '?'}])` : 'is not a value of the model'}; monitor float scalars`,
      );
    return value;
  });
}

function findLogits(graph: Graph, name: string | undefined): Value {
  if (name === undefined) {
    const first = graph.outputs[0];
    if (!first)
      throw new RegroupError(
        'usage',
        `graph '${graph.name}' has no outputs; name the logits value (TrainingSpec.logits)`,
      );
    return first;
  }
  const value = graph.outputs.find((v) => v.name === name) ?? graph.valueMap().get(name);
  if (!value)
    throw new RegroupError(
      'usage',
      `logits '${name}' is not a value of graph '${graph.name}'; outputs are ${graph.outputs.map((v) => `'${v.name}'`).join(', ')}`,
    );
  return value;
}

/**
 * Give the data inputs the step's batch: `fixed`, or a symbolic one (the step model then runs
 * any batch size). An exporter's fixed batch of 1 would otherwise pin it; declared value_info
 * (which would repeat that 1) is dropped, and the logits' declared batch follows. Returns the
 * batch dim.
 */
function setBatch(
  model: Model,
  dataInputs: readonly Value[],
  logits: Value,
  given: Readonly<Record<string, readonly Dim[]>>,
  fixed: number | undefined,
): Dim {
  const declared = dataInputs[0]?.type?.shape?.[0];
  const batch = fixed ?? (typeof declared === 'string' ? declared : 'N');
  for (const input of dataInputs) {
    const shape = given[input.name] ?? input.type?.shape;
    if (shape && shape.length > 0)
      input.type = { dtype: input.type?.dtype ?? DataType.FLOAT, shape: [batch, ...shape.slice(1)] };
  }
  for (const name of Object.keys(given)) {
    if (!dataInputs.some((v) => v.name === name))
      throw new RegroupError(
        'usage',
        `inputShapes names '${name}', which is not a data input (inputs: ${dataInputs.map((v) => `'${v.name}'`).join(', ')})`,
      );
  }
  model.graph.valueInfo.length = 0;
  if (logits.type?.shape?.length) logits.type = { ...logits.type, shape: [batch, ...logits.type.shape.slice(1)] };
  return batch;
}

function logitsType(model: Model, logits: Value): DataType {
  const type = inferShapes(model).typeOf(logits);
  if (type?.shape && type.shape.length !== 2)
    throw new RegroupError(
      'unsupported',
      `logits '${logits.name}' have shape [${type.shape.join(', ')}]; training needs [N, classes]`,
    );
  const dtype = type?.dtype ?? DataType.FLOAT;
  if (dtype !== DataType.FLOAT)
    throw new RegroupError('unsupported', `logits '${logits.name}' are not float32; training graphs are float32`);
  return dtype;
}

/**
 * Default trainable set (initializers feeding weights/biases/BN affine) minus frozen and fed,
 * in first-use order, then the extra `trainable` names in the spec's order.
 */
function trainableParameters(graph: Graph, spec: TrainingSpec): Value[] {
  const frozen = new Set([...(spec.frozen ?? []), ...(spec.fed ?? [])]);
  for (const name of spec.frozen ?? [])
    if (!graph.initializers.has(name))
      throw new RegroupError('usage', `frozen parameter '${name}' is not an initializer of the model`);
  const found: Value[] = [];
  for (const node of graph.nodes()) {
    // Which inputs train by default (weight and bias, BN's scale and shift) is the op-role table's.
    for (const v of (opRole(node)?.trained ?? []).map((inputIndex) => node.inputs[inputIndex])) {
      if (v?.isInitializer() && v.constValue!.dtype === DataType.FLOAT && !frozen.has(v.name) && !found.includes(v))
        found.push(v);
    }
  }
  for (const name of spec.trainable ?? []) {
    const value = graph.initializers.get(name);
    if (!value?.constValue || value.constValue.dtype !== DataType.FLOAT)
      throw new RegroupError('usage', `trainable '${name}' is not a float32 initializer of the model`);
    if (frozen.has(name))
      throw new RegroupError('usage', `'${name}' is listed as trainable and as frozen or fed; choose one`);
    if (!found.includes(value)) found.push(value);
  }
  return found;
}

/** `base` plus every loss term, each looked up against the step graph's values by name. */
function addLossTerms(e: Emitter, base: Value, terms: readonly LossTerm[], progress: () => Value): Value {
  if (terms.length === 0) return base;
  const byName = e.graph.valueMap();
  const lookup = (name: string): Value => {
    const value = byName.get(name);
    if (!value)
      throw new RegroupError('usage', `a loss term asks for '${name}', which is not a value of the training model`);
    return value;
  };
  let total = base;
  const run = { progress: progress() };
  for (const term of terms) total = e.add(total, term(e, lookup, run));
  return total;
}

/** Point every use of the float scalar initializer `name` at the step input, and drop it. */
function readStep(graph: Graph, name: string, step: Value): void {
  const value = graph.initializers.get(name);
  const tensor = value?.constValue;
  if (!value || !tensor || tensor.dims.length !== 0 || tensor.dtype !== step.type?.dtype)
    throw new RegroupError(
      'usage',
      `stepValue '${name}' must be a scalar initializer of the model with the logits' float type, to be replaced by the update count`,
    );
  value.replaceAllUsesWith(step);
  graph.removeInitializer(value);
}

/** (step − 1) / totalSteps as a float scalar (0 without a total), built only when a loss term asks. */
function progressOf(e: Emitter, step: Value, totalSteps: number | undefined, dtype: DataType): () => Value {
  return () =>
    totalSteps && totalSteps > 0
      ? e.div(e.sub(step, e.scalar(1, dtype)), e.scalar(totalSteps, dtype))
      : e.scalar(0, dtype);
}

/** The `fed` initializers made step inputs (never trainable, never carried). */
function fedTensors(graph: Graph, spec: TrainingSpec, params: readonly Value[]): FedTensor[] {
  return (spec.fed ?? []).map((name) => {
    const value = graph.initializers.get(name);
    if (!value?.constValue) throw new RegroupError('usage', `fed tensor '${name}' is not an initializer of the model`);
    if (params.includes(value))
      throw new RegroupError(
        'usage',
        `'${name}' cannot be both trained and fed; freeze it (TrainingSpec.frozen) to feed it`,
      );
    return { name, input: name, init: carryAsInput(graph, value) };
  });
}

/** Every learning-rate multiplier names a trainable parameter and is a finite positive number. */
function checkLrScales(params: readonly Value[], scales: TrainingSpec['lrScale']): void {
  const names = new Set(params.map((p) => p.name));
  for (const [name, scale] of scales ?? []) {
    if (!names.has(name))
      throw new RegroupError(
        'usage',
        `learning-rate multiplier for '${name}', which is not a trainable parameter (frozen, or not a weight/bias initializer)`,
      );
    if (!(scale > 0) || !Number.isFinite(scale))
      throw new RegroupError('usage', `learning-rate multiplier ${scale} for '${name}': use a finite number above 0`);
  }
}

/** Masks by parameter name, checked against the parameters' shapes. */
function maskTensors(params: readonly Value[], masks: TrainingSpec['masks']): Map<string, Tensor> {
  const byName = new Map(params.map((p) => [p.name, p]));
  for (const [name, mask] of masks ?? []) {
    const param = byName.get(name);
    if (!param)
      throw new RegroupError(
        'usage',
        `mask for '${name}', which is not a trainable parameter (frozen, or not a weight/bias initializer)`,
      );
    if (mask.dims.join(',') !== param.constValue!.dims.join(','))
      throw new RegroupError(
        'usage',
        `mask for '${name}' has shape [${mask.dims.join(', ')}] but the parameter has [${param.constValue!.dims.join(', ')}]`,
      );
  }
  return new Map(masks ?? []);
}

function maskValue(e: Emitter, mask: Tensor | undefined, dtype: DataType): Value | undefined {
  if (!mask) return undefined;
  return e.graph.addInitializer(`train/mask`, floatTensor(dtype, mask.dims, mask.toFloat64()), { fresh: true });
}

interface StepInputs {
  readonly labels: Value;
  readonly teacherLogits?: Value;
  readonly lr: Value;
  readonly step: Value;
}

function addStepInputs(graph: Graph, spec: TrainingSpec, batch: Dim, logits: Value, dtype: DataType): StepInputs {
  const input = (name: string, type: { dtype: DataType; shape: Dim[] }) =>
    graph.addInput(unclaimedName(graph, name), type);
  const labels = input('labels', { dtype: DataType.INT64, shape: [batch] });
  const classes = logits.type?.shape?.[1] ?? null;
  const teacherLogits =
    spec.loss.kind === 'distill' ? input('teacher_logits', { dtype, shape: [batch, classes] }) : undefined;
  return { labels, teacherLogits, lr: input('lr', { dtype, shape: [] }), step: input('step', { dtype, shape: [] }) };
}

/** Turn an initializer into a graph input of the same name; returns its starting value (masked). */
function carryAsInput(graph: Graph, value: Value, mask?: Tensor): Tensor {
  const tensor = value.constValue;
  if (!tensor || !value.isInitializer())
    throw new RegroupError(
      'unsupported',
      `'${value.name}' must be an initializer to be trained or carried (it is computed in the graph)`,
    );
  graph.initializers.delete(value.name);
  value.constValue = undefined;
  value.type = { dtype: tensor.dtype, shape: [...tensor.dims] };
  if (!graph.inputs.includes(value)) graph.inputs.push(value);
  if (!mask) return tensor;
  const masked = tensor.toFloat64().map((x, k) => (mask.data[k] ? x : 0));
  return floatTensor(tensor.dtype, tensor.dims, masked);
}

/** `base`, or `base_1`, `base_2`, … — the first name nobody holds (left unreserved for addInput to claim). */
function unclaimedName(graph: Graph, base: string): string {
  if (!graph.names.has(base)) return base;
  for (let n = 1; ; n++) if (!graph.names.has(`${base}_${n}`)) return `${base}_${n}`;
}

function zerosLike(tensor: Tensor): Tensor {
  return floatTensor(tensor.dtype, tensor.dims, new Float64Array(tensor.size));
}

function statCarries(carried: CarrySet, u: RunningStatUpdate, meanInit: Tensor, varInit: Tensor): CarriedTensor[] {
  return [
    carried.carry(u.mean.name, u.mean, u.newMean, meanInit),
    carried.carry(u.variance.name, u.variance, u.newVariance, varInit),
  ];
}

/** Names the carried inputs and outputs of the step model. */
class CarrySet {
  /** Output values in the order carried. */
  readonly outputs: Value[] = [];

  constructor(readonly graph: Graph) {}

  /** A new state input shaped like `like`, named `<param>.<slot>`. */
  slotInput(like: Value, slot: string): Value {
    return this.graph.addInput(unclaimedName(this.graph, `${like.name}.${slot}`), like.type);
  }

  /** Record a carried tensor; the output value is renamed `<input>.next`. */
  carry(name: string, input: Value, next: Value, init: Tensor): CarriedTensor {
    if (next.isGraphInput() || next.isInitializer() || this.outputs.includes(next)) {
      next = this.graph.addNode('Identity', [next], { name: this.graph.names.fresh(`${input.name}.carry`) }).output(0);
    }
    next.name = this.graph.names.fresh(`${input.name}.next`);
    next.type = input.type;
    this.outputs.push(next);
    return { name, input: input.name, output: next.name, init };
  }
}
