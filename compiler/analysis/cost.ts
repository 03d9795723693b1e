/**
 * Cost model: multiply-accumulates, learnable parameters and memory traffic per node.
 *
 *   Conv            MACs = |Y| · |W| / Cout = N·Cout·∏out · (Cin/group)·∏k
 *   ConvTranspose   MACs = |X| · |W| / Cin  = N·Cin·∏in · (Cout/group)·∏k
 *   Gemm            MACs = M·N·K
 *   MatMul          MACs = |Y| · K (batched: ∏batch·M·N·K)
 *   QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger: as their float forms.
 *   Everything else (elementwise, pools, reshapes) counts 0 MACs.
 *
 *   params  elements of the constant tensors a node uses as learnable weights: weight and
 *           bias of Conv/ConvTranspose/Gemm/MatMul (and their quantized forms), scale and
 *           bias of BatchNormalization / InstanceNormalization / LayerNormalization (not
 *           running mean or variance), PRelu slopes, and per-channel (more than one
 *           element) constants of Mul and Add. Weights are found through Identity and
 *           DequantizeLinear; float tensors only, except the quantized ops' integer weights.
 *           A tensor shared by several nodes counts once, for its first consumer, so the
 *           per-layer figures add up to the totals.
 *   bytes   storage bytes of the tensors a node reads (activations and constants) plus the
 *           outputs it writes, for values whose shapes are known.
 *
 * A symbol in a shape (a symbolic batch, or a product like '512*batch') counts as
 * `options.batch ?? 1`. Constant nodes are not layers and are left out.
 */
import { constantOf } from '../ir/constants.js';
import { isFloat, storageBytes } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { Node, Value } from '../ir/node.js';
import { opRole } from '../ir/op-roles.js';
import type { Tensor } from '../ir/tensor.js';
import type { ShapeResult } from './shape-inference.js';
import { evaluateDim, type Dim } from './shape-values.js';

export interface CostOptions {
  /** Size given to every symbolic dim (default 1). */
  batch?: number;
}

export interface LayerCost {
  readonly node: Node;
  readonly name: string;
  readonly opType: string;
  readonly outputShape: readonly Dim[] | undefined;
  readonly macs: number;
  readonly params: number;
  readonly bytes: number;
}

export interface CostTotals {
  readonly macs: number;
  readonly params: number;
  readonly bytes: number;
}

export interface CostReport {
  readonly layers: LayerCost[];
  readonly totals: CostTotals;
}

/** MACs, parameters and bytes of every node of the main graph, and their totals. */
export function computeCost(model: Model, shapes: ShapeResult, options: CostOptions = {}): CostReport {
  const sizes = new Sizes(shapes, options.batch ?? 1);
  const counted = new Set<Value>();
  const layers: LayerCost[] = [];
  for (const node of model.graph.nodes()) {
    if (node.opType === 'Constant' && node.domain === '') continue;
    layers.push(layerCost(node, sizes, counted));
  }
  const sum = (pick: (l: LayerCost) => number) => layers.reduce((acc, l) => acc + pick(l), 0);
  return { layers, totals: { macs: sum((l) => l.macs), params: sum((l) => l.params), bytes: sum((l) => l.bytes) } };
}

function layerCost(node: Node, sizes: Sizes, counted: Set<Value>): LayerCost {
  const macRule = node.domain === '' || node.domain === 'ai.onnx' ? MAC_RULES[node.opType] : undefined;
  const first = node.outputs[0];
  return {
    node,
    name: node.name,
    opType: node.opType,
    outputShape: first ? sizes.shapes.typeOf(first)?.shape : undefined,
    macs: macRule?.(node, sizes) ?? 0,
    params: newParams(node, counted),
    bytes: trafficBytes(node, sizes),
  };
}

/** Element counts of values under a batch binding. */
class Sizes {
  constructor(
    readonly shapes: ShapeResult,
    private readonly batch: number,
  ) {}

  dims(value: Value | undefined): number[] | undefined {
    const shape = value ? this.shapes.typeOf(value)?.shape : undefined;
    const dims = shape?.map((d) => evaluateDim(d, () => this.batch));
    return dims?.every((d): d is number => d !== undefined) ? dims : undefined;
  }

  /** Elements of a value, or undefined when its shape is not known. */
  count(value: Value | undefined): number | undefined {
    return this.dims(value)?.reduce((a, b) => a * b, 1);
  }

  bytes(value: Value | undefined): number {
    const type = value ? this.shapes.typeOf(value) : undefined;
    const count = this.count(value);
    return type && count !== undefined ? storageBytes(type.dtype, count) : 0;
  }
}

// ---------------------------------------------------------------------------------------------
// MACs

type MacRule = (node: Node, sizes: Sizes) => number;

/** Conv-like: |Y| · |W| / W[0] (each output element reads Cin/group · ∏k weights). */
const convMacs =
  (wIndex: number): MacRule =>
  (node, sizes) => {
    const w = sizes.dims(node.inputs[wIndex]);
    const y = sizes.count(node.outputs[0]);
    if (!w || y === undefined || !w[0]) return 0;
    return (y * w.reduce((a, b) => a * b, 1)) / w[0];
  };

/** ConvTranspose: every input element is spread over Cout/group · ∏k outputs: |X| · |W| / W[0]. */
const convTransposeMacs: MacRule = (node, sizes) => {
  const w = sizes.dims(node.inputs[1]);
  const x = sizes.count(node.inputs[0]);
  if (!w || x === undefined || !w[0]) return 0;
  return (x * w.reduce((a, b) => a * b, 1)) / w[0];
};

/** Gemm: M·N·K, K read from A (transA swaps its axes). */
const gemmMacs: MacRule = (node, sizes) => {
  const a = sizes.dims(node.inputs[0]);
  const y = sizes.count(node.outputs[0]);
  if (a?.length !== 2 || y === undefined) return 0;
  return y * (node.getInt('transA', 0) ? a[0]! : a[1]!);
};

/** MatMul-like: |Y| · K, K the last axis of A. */
const matmulMacs: MacRule = (node, sizes) => {
  const a = sizes.dims(node.inputs[0]);
  const y = sizes.count(node.outputs[0]);
  if (!a || a.length === 0 || y === undefined) return 0;
  return y * a[a.length - 1]!;
};

const MAC_RULES: Readonly<Record<string, MacRule>> = {
  Conv: convMacs(1),
  ConvTranspose: convTransposeMacs,
  Gemm: gemmMacs,
  MatMul: matmulMacs,
  QLinearConv: convMacs(3),
  ConvInteger: convMacs(1),
  QLinearMatMul: matmulMacs,
  MatMulInteger: matmulMacs,
};

// ---------------------------------------------------------------------------------------------
// Parameters

/** Mul/Add constants with more than one element are per-channel scales and biases. */
const PER_CHANNEL_OPS = new Set(['Mul', 'Add']);

/**
 * Whether a constant of `elements` elements read at `inputIndex` by `node` counts as
 * parameters: an op-role parameter slot, or a per-channel (more than one element) Mul/Add
 * constant. The pruning planner predicts with the same rule (passes/plan-pruning.ts).
 */
export function countsAsParams(node: Node, inputIndex: number, elements: number): boolean {
  const spec = opRole(node);
  if (spec) return spec.params.includes(inputIndex);
  return PER_CHANNEL_OPS.has(node.opType) && elements > 1;
}

/** Elements of the weights this node is the first to use. */
function newParams(node: Node, counted: Set<Value>): number {
  let params = 0;
  for (const { source, tensor } of weightsOf(node)) {
    if (counted.has(source)) continue;
    counted.add(source);
    params += tensor.size;
  }
  return params;
}

interface Weight {
  readonly source: Value;
  readonly tensor: Tensor;
  /** Reached through DequantizeLinear: integer storage of a float weight. */
  readonly quantized: boolean;
}

function weightsOf(node: Node): Weight[] {
  // Which inputs are parameters, and whether integer ones count, is the op-role table's (compiler/ir/op-roles.ts).
  const spec = opRole(node);
  const slots =
    spec?.params ?? (PER_CHANNEL_OPS.has(node.opType) ? node.inputs.map((_, inputIndex) => inputIndex) : []);
  const found: Weight[] = [];
  for (const inputIndex of slots) {
    const weight = weightSource(node.inputs[inputIndex]);
    if (!weight || (!spec?.integer && !weight.quantized && !isFloat(weight.tensor.dtype))) continue;
    if (!countsAsParams(node, inputIndex, weight.tensor.size)) continue;
    found.push(weight);
  }
  return found;
}

/** The constant behind a value, looking through Identity and DequantizeLinear. */
function weightSource(value: Value | undefined): Weight | undefined {
  let quantized = false;
  for (let v = value; v; v = v.producer?.inputs[0]) {
    const tensor = constantOf(v);
    if (tensor) return { source: v, tensor, quantized };
    const op = v.producer?.opType;
    if (op === 'DequantizeLinear') quantized = true;
    else if (op !== 'Identity') return undefined;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Bytes

/** Bytes read (every input, constants included) plus bytes written. */
function trafficBytes(node: Node, sizes: Sizes): number {
  let bytes = 0;
  for (const input of node.inputs) bytes += sizes.bytes(input);
  for (const output of node.outputs) bytes += sizes.bytes(output);
  return bytes;
}
