/**
 * fold-constants: compute at compile time what does not depend on the model's inputs.
 *
 * 1. Every `Constant` node of the main graph (value, value_float(s), value_int(s)) becomes an
 *    initializer of the same name. Sparse and string constants stay, and so does a Constant
 *    whose output is a graph output.
 * 2. A node whose inputs are all constant is evaluated with ONNX's exact semantics
 *    (passes/fold-kernels.ts) and its output becomes an initializer of the same name:
 *    Identity, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Gather, Slice, Expand,
 *    ConstantOfShape (any movable dtype, float16/bfloat16 bit patterns copied), Cast
 *    (float32/float64/int32/int64), integer Range, and Add/Sub/Mul/Div (float32, int64).
 *    `Shape` folds when its input's declared or initializer dims are all known numbers;
 *    inferred shapes are not trusted here. Other ops with constant inputs are left for a
 *    runtime evaluator (passes/prepare.ts), whose results `adoptEvaluated` puts in place under
 *    the same rules.
 *
 * "Constant" means an initializer that is not also a graph input (IR < 4 models list those
 * as inputs a caller may override) or the output of a Constant node. A node whose output is
 * a graph output stays computed, and so does a fold that would disagree with the output's
 * declared type. Size: a fold may grow the model (a result with more elements than its inputs)
 * by up to 65536 elements, or by up to 1 GiB when the result feeds a layer's parameters
 * (an input of an op in the op-role table, directly or through nodes computable from constants):
 * exporters write whole weights as `ConstantOfShape` fills, while a big broadcast feeding
 * activations is better computed at run time. Nodes are visited in order, so a chain of
 * foldable nodes folds in one run. The original tensors are left for `cleanup`.
 */
import { constantOf } from '../compiler/ir/constants.js';
import { DataType, dtypeName } from '../compiler/ir/dtype.js';
import type { Graph } from '../compiler/ir/graph.js';
import type { Model } from '../compiler/ir/model.js';
import type { Node, Value } from '../compiler/ir/node.js';
import { opRole } from '../compiler/ir/op-roles.js';
import type { Tensor } from '../compiler/ir/tensor.js';
import { replaceOutputsWithInitializers } from './edit.js';
import { DATA_MOVEMENT, foldShape, isMovable, KERNELS, type KernelResult } from './fold-kernels.js';
import type { FoldedBy, FoldLog } from './fold-log.js';
import type { Pass, PassContext, PassResult } from './pass.js';

const STANDARD_DOMAINS = new Set(['', 'ai.onnx']);
/** A fold may grow the model (a broadcast) only up to this many elements… */
const MAX_GROWN_ELEMENTS = 1 << 16;
/** …unless its result feeds a layer's parameters; then up to this many bytes. */
const MAX_WEIGHT_BYTES = 2 ** 30;
/** Ops whose outputs are not a function of their inputs: never folded. */
const NOT_FUNCTIONS = new Set([
  'RandomNormal',
  'RandomUniform',
  'RandomNormalLike',
  'RandomUniformLike',
  'Multinomial',
  'Bernoulli',
  'Dropout',
]);

/** The context fold-constants reads: a fold log, when the caller wants a summary. */
export interface FoldContext extends PassContext {
  folds?: FoldLog;
}

/** The fold-constants pass; stats: constantsLifted, nodesFolded. */
export const foldConstants: Pass = {
  name: 'fold-constants',
  run(model, ctx: FoldContext) {
    return new Folder(model, ctx).run();
  },
};

/**
 * Put tensors a runtime evaluator computed for nodes of `model` in place of those nodes, in
 * graph order, under the pass's rules (graph outputs, declared types, size; size is checked
 * only for values read by a node outside `results`, as the others go once their readers
 * fold). Stats: nodesEvaluated.
 */
export function adoptEvaluated(
  model: Model,
  results: ReadonlyMap<Node, readonly (Tensor | undefined)[]>,
  ctx: FoldContext,
): PassResult {
  const folder = new Folder(model, ctx);
  let nodesEvaluated = 0;
  for (const node of model.graph.nodes()) {
    const tensors = results.get(node);
    if (tensors && folder.adopt(node, tensors, (v) => v.uses().some((u) => !results.has(u.node)))) nodesEvaluated++;
  }
  return { changed: nodesEvaluated > 0, stats: { nodesEvaluated } };
}

/**
 * Nodes of the main graph computable from constants alone, in graph order: every present
 * input (at least one) is a constant or an output of an earlier such node — or, with
 * `staticShapes`, the node is a Shape of a value whose declared dims are all known numbers.
 * Constant nodes are sources, not members; ops that are not functions of their inputs, ops
 * with subgraphs and ops of other domains are never members.
 */
export function constantCone(graph: Graph, options: { staticShapes: boolean }): Set<Node> {
  const inputs = new Set(graph.inputs);
  const cone = new Set<Node>();
  const computed = new Set<Value>();
  const known = (v: Value | undefined) => !v || computed.has(v) || constantTensor(v, inputs) !== undefined;
  for (const node of graph.nodes()) {
    if (!STANDARD_DOMAINS.has(node.domain) || node.opType === 'Constant') continue;
    const member =
      options.staticShapes && node.opType === 'Shape'
        ? staticDims(node.inputs[0]) !== undefined
        : node.inputs.some((v) => v) && node.inputs.every(known) && isFunction(node);
    if (!member) continue;
    cone.add(node);
    for (const v of node.outputs) if (v) computed.add(v);
  }
  return cone;
}

class Folder {
  readonly #stats = { constantsLifted: 0, nodesFolded: 0 };
  readonly graph: Graph;
  readonly opset: number;
  /** Graph inputs: an initializer among them is a default, not a constant. */
  readonly #inputs: Set<Value>;
  readonly #outputs: Set<Value>;
  /** constantCone, made when a size check first needs it. */
  #cone: Set<Node> | undefined;
  readonly #feedsParametersMemo = new Map<Value, boolean>();

  constructor(
    model: Model,
    readonly ctx: FoldContext,
  ) {
    this.graph = model.graph;
    this.opset = model.opset('') ?? 1;
    this.#inputs = new Set(this.graph.inputs);
    this.#outputs = new Set(this.graph.outputs);
  }

  run(): PassResult {
    for (const node of this.graph.nodes()) {
      const output = node.outputs[0];
      if (!STANDARD_DOMAINS.has(node.domain) || node.outputs.length !== 1 || !output) continue;
      if (node.opType === 'Constant') this.#lift(node, output);
      else {
        const folded = this.#evaluate(node);
        if (folded !== undefined) this.#accept(node, new Map([[output, folded]]), 'kernel', () => true);
      }
    }
    const { constantsLifted, nodesFolded } = this.#stats;
    return { changed: constantsLifted + nodesFolded > 0, stats: { ...this.#stats } };
  }

  /** Adopt a runtime evaluator's outputs for `node` (see adoptEvaluated); true when it folded. */
  adopt(node: Node, tensors: readonly (Tensor | undefined)[], checkSize: (v: Value) => boolean): boolean {
    const used = node.outputs.filter((v): v is Value => v !== undefined && (v.useCount > 0 || this.#outputs.has(v)));
    const missing = used.find((v) => !tensors[v.outputIndex]);
    if (used.length === 0) return false;
    if (missing) return this.#skip(node, `the evaluator returned no tensor for '${missing.name}'`);
    return this.#accept(node, new Map(used.map((v) => [v, tensors[v.outputIndex]!])), 'onnxruntime', checkSize);
  }

  #lift(node: Node, output: Value): void {
    const tensor = liftable(node);
    if (typeof tensor === 'string') this.#skip(node, tensor);
    else if (this.#outputs.has(output)) this.#skip(node, 'its output is a graph output');
    else {
      replaceOutputsWithInitializers(this.graph, node, new Map([[output, tensor]]));
      this.#stats.constantsLifted++;
      if (this.ctx.folds) this.ctx.folds.lifted++;
    }
  }

  /** Replace the node's outputs by the tensors, unless a rule says no; true when it did. */
  #accept(node: Node, tensors: Map<Value, KernelResult>, by: FoldedBy, checkSize: (v: Value) => boolean): boolean {
    for (const [value, tensor] of tensors) {
      if (typeof tensor === 'string') return this.#skip(node, tensor);
      const refused =
        (this.#outputs.has(value) ? 'its output is a graph output' : undefined) ?? conflict(value, tensor);
      if (refused) return this.#skip(node, refused, true);
      // A kernel's size refusal is not final: an evaluator's result is checked only where it stays.
      const tooLarge = checkSize(value) ? this.#tooLarge(node, value, tensor) : undefined;
      if (tooLarge) return this.#skip(node, tooLarge, by === 'onnxruntime');
    }
    const inputs = [...node.inputs];
    const initializers = replaceOutputsWithInitializers(this.graph, node, tensors as Map<Value, Tensor>);
    this.ctx.folds?.folded(node, inputs, initializers, by);
    this.#stats.nodesFolded++;
    return true;
  }

  /** The folded output, a reason not to fold, or undefined when some input is computed. */
  #evaluate(node: Node): KernelResult | undefined {
    if (node.opType === 'Shape') return this.#staticShape(node);
    if (node.inputs.length === 0 || !node.inputs[0]) return undefined;
    const inputs = node.inputs.map((v) => v && constantTensor(v, this.#inputs));
    if (node.inputs.some((v, i) => v && !inputs[i])) return undefined;
    const kernel = KERNELS.get(node.opType);
    if (!kernel) return 'all inputs are constant but there is no kernel for this op';
    const present = inputs.filter((t): t is Tensor => t !== undefined);
    const unmovable = present.find((t) => !isMovable(t.dtype));
    if (unmovable) return `element type ${dtypeName(unmovable.dtype)} is not folded`;
    const halfFloat = present.some((t) => t.dtype === DataType.FLOAT16 || t.dtype === DataType.BFLOAT16);
    if (halfFloat && !DATA_MOVEMENT.has(node.opType)) return 'float16/bfloat16 is folded by data movement only';
    return kernel({ node, inputs, opset: this.opset });
  }

  /** Shape of a value whose dims are all known numbers; undefined (not folded) otherwise. */
  #staticShape(node: Node): KernelResult | undefined {
    const dims = staticDims(node.inputs[0]);
    return dims && foldShape(node, dims, this.opset);
  }

  /** Why `tensor` is too large to become an initializer in place of `value`, if it is. */
  #tooLarge(node: Node, value: Value, tensor: Tensor): string | undefined {
    const inputSize = node.inputs.reduce((sum, v) => sum + ((v && constantOf(v)?.size) ?? 0), 0);
    if (tensor.size <= MAX_GROWN_ELEMENTS || tensor.size <= inputSize) return undefined;
    if (!this.#feedsParameters(value))
      return `the result has ${tensor.size} elements, more than its inputs, and feeds no layer's parameters (limit ${MAX_GROWN_ELEMENTS})`;
    return tensor.byteLength > MAX_WEIGHT_BYTES
      ? `the result has ${tensor.byteLength} bytes, more than the ${MAX_WEIGHT_BYTES} allowed for parameters`
      : undefined;
  }

  /** Whether a layer reads `value` as a parameter, directly or through nodes computable from constants. */
  #feedsParameters(value: Value): boolean {
    const known = this.#feedsParametersMemo.get(value);
    if (known !== undefined) return known;
    this.#feedsParametersMemo.set(value, false);
    this.#cone ??= constantCone(this.graph, { staticShapes: true });
    const cone = this.#cone;
    const feeds = value
      .uses()
      .some(
        ({ node }) =>
          opRole(node) !== undefined ||
          (cone.has(node) && node.outputs.some((out) => out !== undefined && this.#feedsParameters(out))),
      );
    this.#feedsParametersMemo.set(value, feeds);
    return feeds;
  }

  /** Log why a node stays and note it in the fold log (`settled`: see FoldLog.stays); returns false. */
  #skip(node: Node, reason: string, settled = false): false {
    this.ctx.log?.(`fold-constants: ${node} stays: ${reason}`);
    if (node.opType !== 'Constant') this.ctx.folds?.stays(node, reason, settled);
    return false;
  }
}

/** The tensor behind a value, if it is a constant fold-constants may rely on. */
function constantTensor(value: Value, graphInputs: ReadonlySet<Value>): Tensor | undefined {
  if (value.isInitializer()) return graphInputs.has(value) ? undefined : value.constValue;
  const producer = value.producer;
  if (producer?.opType !== 'Constant' || !STANDARD_DOMAINS.has(producer.domain)) return undefined;
  const tensor = constantOf(value);
  return tensor?.dtype === DataType.STRING ? undefined : tensor;
}

/** Declared or initializer dims of a value, when all are known numbers. */
function staticDims(value: Value | undefined): readonly number[] | undefined {
  const shape = value?.type?.shape;
  return shape?.every((d): d is number => typeof d === 'number' && d >= 0) ? shape : undefined;
}

/** A deterministic op of its inputs alone: not random, no subgraph. */
function isFunction(node: Node): boolean {
  return !NOT_FUNCTIONS.has(node.opType) && node.subgraphs().length === 0;
}

/** The tensor a Constant node holds, or why it stays a node. */
function liftable(node: Node): Tensor | string {
  const tensor = constantOf(node.output(0));
  if (!tensor) return 'sparse, string or malformed Constant';
  return tensor.dtype === DataType.STRING ? 'string Constant' : tensor;
}

/** Why a folded tensor disagrees with the value's declared type, if it does. */
function conflict(value: Value, tensor: Tensor): string | undefined {
  const type = value.type;
  if (!type) return undefined;
  if (type.dtype !== tensor.dtype) return `declared ${dtypeName(type.dtype)} but computes ${dtypeName(tensor.dtype)}`;
  const shape = type.shape;
  const same =
    !shape ||
    (shape.length === tensor.dims.length &&
      shape.every((d, i) => typeof d !== 'number' || d < 0 || d === tensor.dims[i]));
  return same ? undefined : `declared shape [${shape}] but computes [${tensor.dims}]`;
}
