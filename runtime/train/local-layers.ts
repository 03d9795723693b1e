/**
 * Which layers local reconstruction can refit, and how their weights read and write.
 *
 * A layer is a Conv (1-D or 2-D, any kernel, strides, pads or auto_pad, dilations, group),
 * a Gemm (transA = 0) or a MatMul whose right operand is a constant 2-D weight, in the
 * compressed model, matched by node name and op type to a node of the dense model. Its
 * weights are viewed filter-major as the effective linear map the node computes:
 *   Conv    y[o] = Σ_k W[o, k]·patch_g(o)[k] + B[o],  k = (c_local·kh + ky)·kw + kx
 *   Gemm    y[o] = Σ_k α·B'[o, k]·x[k] + β·C[o]       (B' = B, or Bᵀ when transB = 0)
 *   MatMul  y[o] = Σ_k B[k, o]·x[k]                    (no bias slot: none is fitted)
 * so a refit writes W = w, B = b; B' = w/α, C = b/β. A layer is skipped, with the reason
 * stated, when its weight (or bias) is not a float32 initializer used by this node alone,
 * when it has no uniquely named dense counterpart, when the geometry (kernel, strides,
 * dilations, pads) differs from the dense node's, or when it has more outputs than it.
 *
 * Waves: a layer's wave is the number of refittable layers on its longest path from the
 * graph inputs; layers of one wave do not feed each other, so one forward pass collects
 * all of them (after the previous waves were refitted).
 */
import { constantOf } from '../../compiler/ir/constants.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Graph } from '../../compiler/ir/graph.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node, Value } from '../../compiler/ir/node.js';
import { isLinearLayer, weightAxes } from '../../compiler/ir/op-roles.js';
import { Tensor } from '../../compiler/ir/tensor.js';

export type LayerKind = 'Conv' | 'Gemm' | 'MatMul';

/** Conv attributes, normalised to two spatial axes (a 1-D conv has height 1). */
export interface ConvGeometry {
  readonly spatialRank: 1 | 2;
  readonly kernel: readonly [number, number];
  readonly strides: readonly [number, number];
  readonly dilations: readonly [number, number];
  /** [top, left, bottom, right]; undefined when auto_pad decides from the input size. */
  readonly pads: readonly [number, number, number, number] | undefined;
  readonly autoPad: 'NOTSET' | 'SAME_UPPER' | 'SAME_LOWER' | 'VALID';
}

/** One refittable layer of the compressed model. */
export interface LayerPlan {
  /** Position in topological order among refittable layers. */
  readonly index: number;
  readonly node: Node;
  readonly dense: Node;
  readonly kind: LayerKind;
  /** Output channels (features) of the compressed layer. */
  readonly outputs: number;
  readonly denseOutputs: number;
  readonly groups: number;
  /** Inputs each filter reads: C_in/group·kh·kw for a Conv, the input features otherwise. */
  readonly features: number;
  readonly conv: ConvGeometry | undefined;
  /** Effective weights, filter-major [outputs × features]. */
  readonly weights: Float64Array;
  /** Effective bias [outputs] (zeros when the node has none). */
  readonly bias: Float64Array;
  readonly fitBias: boolean;
  readonly wave: number;
}

export interface SkippedLayer {
  readonly node: Node;
  readonly name: string;
  readonly op: string;
  readonly reason: string;
}

export interface LayerSelection {
  /** Only these node names (default: every refittable layer). */
  layers?: readonly string[];
  /** Largest per-filter input count (the Gram matrix is features² float64s). */
  maxFeatures?: number;
}

/** Linear layers (compiler/ir/op-roles.ts) the solver refits: all but ConvTranspose, which it has no form for. */
function refittable(node: Node): boolean {
  return isLinearLayer(node) && node.opType !== 'ConvTranspose';
}
export const DEFAULT_MAX_FEATURES = 4096;

/** Refittable layers of `compressed` matched to `dense`, in topological order, and the skipped ones with reasons. */
export function planLayers(
  compressed: Model,
  dense: Model,
  selection: LayerSelection = {},
): { plans: LayerPlan[]; skipped: SkippedLayer[] } {
  const graph = compressed.graph;
  graph.sort();
  const denseNodes = new DenseNodes(dense.graph);
  const wanted = selection.layers ? new Set(selection.layers) : undefined;
  const plans: LayerPlan[] = [];
  const skipped: SkippedLayer[] = [];
  const waves = waveLevels(graph, (node) => refittable(node) && (!wanted || wanted.has(node.name)));
  for (const node of graph.nodes()) {
    const wave = waves.get(node);
    if (wave === undefined) continue;
    const outcome = planLayer(node, denseNodes, plans.length, wave, selection.maxFeatures ?? DEFAULT_MAX_FEATURES);
    if (typeof outcome === 'string') skipped.push({ node, name: node.name, op: node.opType, reason: outcome });
    else plans.push(outcome);
  }
  return { plans, skipped };
}

/**
 * The dense model's nodes, to match a compressed layer to: by node name when the name is
 * non-empty, else (exports with empty node names) by the name of the first output value,
 * which ONNX keeps unique and compression keeps unchanged.
 */
class DenseNodes {
  readonly #byName = new Map<string, Node[]>();
  readonly #byOutput = new Map<string, Node>();

  constructor(graph: Graph) {
    for (const node of graph.nodes()) {
      if (node.name) (this.#byName.get(node.name) ?? this.#byName.set(node.name, []).get(node.name)!).push(node);
      const out = node.outputs[0];
      if (out) this.#byOutput.set(out.name, node);
    }
  }

  /** Candidates of the same op for `node`, and how they were found (for the reasons). */
  match(node: Node): { found: Node[]; by: string } {
    if (node.name)
      return {
        found: (this.#byName.get(node.name) ?? []).filter((d) => d.opType === node.opType),
        by: `named '${node.name}'`,
      };
    const out = node.outputs[0]?.name ?? '';
    const dense = this.#byOutput.get(out);
    return { found: dense && dense.opType === node.opType ? [dense] : [], by: `writing '${out}'` };
  }
}

/** Wave of every candidate node (see the header); non-candidates are absent. */
function waveLevels(graph: Graph, candidate: (node: Node) => boolean): Map<Node, number> {
  const level = new Map<Value, number>();
  const waves = new Map<Node, number>();
  for (const node of graph.nodes()) {
    const inLevel = Math.max(0, ...node.inputs.map((v) => (v ? (level.get(v) ?? 0) : 0)));
    const isLayer = candidate(node);
    if (isLayer) waves.set(node, inLevel);
    for (const out of node.outputs) if (out) level.set(out, inLevel + (isLayer ? 1 : 0));
  }
  return waves;
}

function planLayer(
  node: Node,
  denseNodes: DenseNodes,
  index: number,
  wave: number,
  maxFeatures: number,
): LayerPlan | string {
  const { found: matches, by } = denseNodes.match(node);
  if (matches.length === 0) return `the dense model has no ${node.opType} node ${by}`;
  if (matches.length > 1) return `the dense model has ${matches.length} ${node.opType} nodes ${by}`;
  const dense = matches[0]!;
  if (constantOf(node.inputs[0])) return 'its input is a constant; there is nothing to calibrate';
  const weightProblem = ownedFloatInitializer(node, 1, 'weight');
  if (weightProblem) return weightProblem;
  const biasProblem = node.inputs[2] ? ownedFloatInitializer(node, 2, 'bias') : undefined;
  if (biasProblem) return biasProblem;
  const layer = node.opType === 'Conv' ? convLayer(node, dense) : linearLayer(node, dense);
  if (typeof layer === 'string') return layer;
  if (layer.outputs > layer.denseOutputs)
    return `it has ${layer.outputs} outputs but the dense node has ${layer.denseOutputs}; outputs can only be kept, not added`;
  if (layer.features > maxFeatures)
    return `each filter reads ${layer.features} inputs, over maxFeatures ${maxFeatures} (the Gram matrix would take ${((8 * (layer.features + 1) ** 2) / 2 ** 20).toFixed(0)} MiB); raise maxFeatures to refit it`;
  return { ...layer, index, node, dense, wave };
}

/** Why input `inputIndex` cannot be rewritten in place, or undefined when it can. */
function ownedFloatInitializer(node: Node, inputIndex: number, what: string): string | undefined {
  const value = node.inputs[inputIndex]!;
  if (!value.isInitializer())
    return `${what} '${value.name}' is not an initializer (run the PREPARE passes to fold Constant weights first)`;
  if (value.constValue!.dtype !== DataType.FLOAT) return `${what} '${value.name}' is not float32`;
  if (value.useCount !== 1 || value.isGraphOutput())
    return `${what} '${value.name}' is shared with other nodes or is a graph output`;
  return undefined;
}

type LayerCore = Omit<LayerPlan, 'index' | 'node' | 'dense' | 'wave'>;

function convLayer(node: Node, dense: Node): LayerCore | string {
  const w = node.input(1).constValue!;
  const denseDims = staticDims(dense.inputs[1]);
  if (w.dims.length !== 3 && w.dims.length !== 4)
    return `a ${w.dims.length - 2}-D convolution; only 1-D and 2-D are refitted`;
  const geometry = convGeometry(node, w.dims);
  if (typeof geometry === 'string') return geometry;
  const denseGeometry = denseDims ? convGeometry(dense, denseDims) : 'the dense weight has no known shape';
  if (typeof denseGeometry === 'string') return `dense node: ${denseGeometry}`;
  if (JSON.stringify(geometry) !== JSON.stringify(denseGeometry))
    return `its kernel, strides, dilations or pads differ from the dense node's (${JSON.stringify(geometry)} vs ${JSON.stringify(denseGeometry)})`;
  const outputs = w.dims[0]!;
  const groups = node.getInt('group', 1);
  const features = w.size / outputs;
  const bias = node.inputs[2]
    ? Float64Array.from(node.input(2).constValue!.data as Float32Array)
    : new Float64Array(outputs);
  if (bias.length !== outputs) return `bias has ${bias.length} values for ${outputs} outputs`;
  return {
    kind: 'Conv',
    outputs,
    denseOutputs: denseDims![0]!,
    groups,
    features,
    conv: geometry,
    weights: Float64Array.from(w.data as Float32Array),
    bias,
    fitBias: true,
  };
}

/** Dims of a constant, or of a value whose declared shape is all numbers. */
function staticDims(value: Value | undefined): readonly number[] | undefined {
  const constant = constantOf(value);
  if (constant) return constant.dims;
  const shape = value?.type?.shape;
  return shape?.every((d) => typeof d === 'number') ? (shape as readonly number[]) : undefined;
}

function convGeometry(node: Node, weightDims: readonly number[]): ConvGeometry | string {
  const spatialRank = weightDims.length - 2;
  if (spatialRank !== 1 && spatialRank !== 2) return `a ${spatialRank}-D convolution; only 1-D and 2-D are refitted`;
  const two = (values: readonly number[]): [number, number] =>
    spatialRank === 1 ? [1, values[0]!] : [values[0]!, values[1]!];
  const kernel = two(weightDims.slice(2));
  const strides = two(node.getInts('strides', [1, 1]));
  const dilations = two(node.getInts('dilations', [1, 1]));
  const autoPad = node.getString('auto_pad', 'NOTSET') as ConvGeometry['autoPad'];
  if (!['NOTSET', 'SAME_UPPER', 'SAME_LOWER', 'VALID'].includes(autoPad)) return `unknown auto_pad '${autoPad}'`;
  const p = node.getInts('pads', [0, 0, 0, 0]);
  const pads: ConvGeometry['pads'] =
    autoPad === 'VALID'
      ? [0, 0, 0, 0]
      : autoPad !== 'NOTSET'
        ? undefined
        : spatialRank === 1
          ? [0, p[0]!, 0, p[1]!]
          : [p[0]!, p[1]!, p[2]!, p[3]!];
  return { spatialRank, kernel, strides, dilations, pads, autoPad };
}

function linearLayer(node: Node, dense: Node): LayerCore | string {
  const b = node.input(1).constValue!;
  if (b.dims.length !== 2) return `its weight '${node.input(1).name}' is rank ${b.dims.length}, not 2`;
  if (node.opType === 'Gemm' && node.getInt('transA', 0) !== 0) return 'Gemm with transA = 1 is not refitted';
  const axes = weightAxes(node, 2)!;
  const transB = axes.out === 0;
  const [features, outputs] = [b.dims[axes.in]!, b.dims[axes.out]!];
  const denseOutputs = linearOutputs(dense);
  if (denseOutputs === undefined) return 'the dense node has no constant 2-D weight';
  const alpha = node.opType === 'Gemm' ? node.getFloat('alpha', 1) : 1;
  const weights = new Float64Array(outputs * features);
  const data = b.data as Float32Array;
  for (let o = 0; o < outputs; o++)
    for (let k = 0; k < features; k++)
      weights[o * features + k] = alpha * data[transB ? o * features + k : k * outputs + o]!;
  const bias = linearBias(node, outputs);
  if (typeof bias === 'string') return bias;
  return {
    kind: node.opType as LayerKind,
    outputs,
    denseOutputs,
    groups: 1,
    features,
    conv: undefined,
    weights,
    bias: bias ?? new Float64Array(outputs),
    fitBias: node.opType === 'Gemm' && node.getFloat('beta', 1) !== 0,
  };
}

function linearOutputs(dense: Node): number | undefined {
  const dims = staticDims(dense.inputs[1]);
  if (dims?.length !== 2) return undefined;
  return dims[weightAxes(dense, 2)!.out];
}

/** Effective Gemm bias β·C, per output; a reason string when C is not one value per output. */
function linearBias(node: Node, outputs: number): Float64Array | string | undefined {
  if (node.opType !== 'Gemm' || !node.inputs[2]) return undefined;
  const c = node.input(2).constValue!;
  if (c.size !== outputs || c.dims.at(-1) !== outputs)
    return `bias C has shape [${c.dims.join(',')}], not one value per output (${outputs})`;
  const beta = node.getFloat('beta', 1);
  if (beta === 0) return 'Gemm with beta = 0 and a bias C is not refitted';
  return Float64Array.from(c.data as Float32Array, (v) => beta * v);
}

/** Write refitted effective weights and bias into the node's initializers (adding a bias when it had none). */
export function writeLayer(graph: Graph, plan: LayerPlan, weights: Float64Array, bias: Float64Array): void {
  const node = plan.node;
  const w = node.input(1);
  const old = w.constValue!;
  if (plan.kind === 'Conv') {
    graph.setInitializer(w, old.withData(old.dims, Float32Array.from(weights)));
  } else {
    const transB = weightAxes(node, 2)!.out === 0;
    const alpha = plan.kind === 'Gemm' ? node.getFloat('alpha', 1) : 1;
    const data = new Float32Array(old.size);
    for (let o = 0; o < plan.outputs; o++)
      for (let k = 0; k < plan.features; k++)
        data[transB ? o * plan.features + k : k * plan.outputs + o] = weights[o * plan.features + k]! / alpha;
    graph.setInitializer(w, old.withData(old.dims, data));
  }
  if (plan.fitBias) writeBias(graph, plan, bias);
}

function writeBias(graph: Graph, plan: LayerPlan, bias: Float64Array): void {
  const node = plan.node;
  const beta = plan.kind === 'Gemm' ? node.getFloat('beta', 1) : 1;
  const values = Float32Array.from(bias, (b) => b / beta);
  const current = node.inputs[2];
  if (current) {
    graph.setInitializer(current, current.constValue!.withData(current.constValue!.dims, values));
    return;
  }
  const added = graph.addInitializer(
    `${node.name || node.output(0).name}.bias`,
    Tensor.float32([plan.outputs], values),
    { fresh: true },
  );
  while (node.inputs.length < 2) node.appendInput(undefined);
  node.appendInput(added);
}
