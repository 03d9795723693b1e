/**
 * fold-constants: compute at compile time what does not depend on the model's inputs.
 *
 * 1. Every `Constant` node of the main graph (value, value_float(s), value_int(s)) becomes an
 *    initializer of the same name. Sparse and string constants stay, and so does a Constant
 *    whose output is a graph output.
 * 2. A node whose inputs are all constant is evaluated with ONNX's exact semantics
 *    (passes/fold-kernels.ts) and its output becomes an initializer of the same name:
 *    Identity, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Gather (any movable
 *    dtype, float16/bfloat16 bit patterns copied), Cast (float32/float64/int32/int64), and
 *    Add/Sub/Mul/Div (float32, int64). `Shape` folds when its input's declared or initializer
 *    dims are all known numbers; inferred shapes are not trusted here.
 *
 * "Constant" means an initializer that is not also a graph input (IR < 4 models list those
 * as inputs a caller may override) or the output of a Constant node. A node whose output is
 * a graph output stays computed, and a fold that would disagree with the output's declared
 * type, or blow a broadcast up past 65536 elements, is skipped. Nodes are visited in order, so
 * a chain of foldable nodes folds in one run. The original tensors are left for `cleanup`.
 */
import { DataType, dtypeName } from '../compiler/ir/dtype.js';
import { constantOf } from '../compiler/ir/constants.js';
import type { Graph } from '../compiler/ir/graph.js';
import type { Node, Value } from '../compiler/ir/node.js';
import type { Tensor } from '../compiler/ir/tensor.js';
import { replaceWithInitializer } from './edit.js';
import { DATA_MOVEMENT, foldShape, isMovable, KERNELS, type KernelResult } from './fold-kernels.js';
import type { Pass, PassContext, PassResult } from './pass.js';

const STANDARD_DOMAINS = new Set(['', 'ai.onnx']);
/** A fold may grow the model (a broadcast) only up to this many elements. */
const MAX_GROWN_ELEMENTS = 1 << 16;

/** The fold-constants pass; stats: constantsLifted, nodesFolded. */
export const foldConstants: Pass = {
  name: 'fold-constants',
  run(model, ctx) {
    return new Folder(model.graph, model.opset('') ?? 1, ctx).run();
  },
};

class Folder {
  readonly #stats = { constantsLifted: 0, nodesFolded: 0 };
  /** Graph inputs: an initializer among them is a default, not a constant. */
  readonly #inputs: Set<Value>;
  readonly #outputs: Set<Value>;

  constructor(
    readonly graph: Graph,
    readonly opset: number,
    readonly ctx: PassContext,
  ) {
    this.#inputs = new Set(graph.inputs);
    this.#outputs = new Set(graph.outputs);
  }

  run(): PassResult {
    for (const node of this.graph.nodes()) {
      const output = node.outputs[0];
      if (!STANDARD_DOMAINS.has(node.domain) || node.outputs.length !== 1 || !output) continue;
      const folded = node.opType === 'Constant' ? liftable(node) : this.#evaluate(node);
      if (folded === undefined) continue;
      if (typeof folded === 'string') this.#skip(node, folded);
      else if (this.#outputs.has(output)) this.#skip(node, 'its output is a graph output');
      else {
        replaceWithInitializer(this.graph, output, folded);
        this.#stats[node.opType === 'Constant' ? 'constantsLifted' : 'nodesFolded']++;
      }
    }
    const { constantsLifted, nodesFolded } = this.#stats;
    return { changed: constantsLifted + nodesFolded > 0, stats: { ...this.#stats } };
  }

  /** The folded output, a reason not to fold, or undefined when some input is computed. */
  #evaluate(node: Node): KernelResult | undefined {
    if (node.opType === 'Shape') return this.#staticShape(node);
    if (node.inputs.length === 0 || !node.inputs[0]) return undefined;
    const inputs = node.inputs.map((v) => v && this.#constant(v));
    if (node.inputs.some((v, i) => v && !inputs[i])) return undefined;
    const kernel = KERNELS.get(node.opType);
    if (!kernel) return 'all inputs are constant but there is no kernel for this op';
    const present = inputs.filter((t): t is Tensor => t !== undefined);
    const unmovable = present.find((t) => !isMovable(t.dtype));
    if (unmovable) return `element type ${dtypeName(unmovable.dtype)} is not folded`;
    const halfFloat = present.some((t) => t.dtype === DataType.FLOAT16 || t.dtype === DataType.BFLOAT16);
    if (halfFloat && !DATA_MOVEMENT.has(node.opType)) return 'float16/bfloat16 is folded by data movement only';
    const result = kernel({ node, inputs, opset: this.opset });
    if (typeof result === 'string') return result;
    const inputSize = present.reduce((sum, t) => sum + t.size, 0);
    if (result.size > MAX_GROWN_ELEMENTS && result.size > inputSize)
      return `the result has ${result.size} elements, more than its inputs`;
    return conflict(node.output(0), result) ?? result;
  }

  /** Shape of a value whose dims are all known numbers; undefined (not folded) otherwise. */
  #staticShape(node: Node): KernelResult | undefined {
    const shape = node.inputs[0]?.type?.shape;
    if (!shape?.every((d): d is number => typeof d === 'number' && d >= 0)) return undefined;
    const result = foldShape(node, shape, this.opset);
    return conflict(node.output(0), result) ?? result;
  }

  /** The tensor behind an input, if it is a constant this pass may rely on. */
  #constant(value: Value): Tensor | undefined {
    if (value.isInitializer()) return this.#inputs.has(value) ? undefined : value.constValue;
    const producer = value.producer;
    if (producer?.opType !== 'Constant' || !STANDARD_DOMAINS.has(producer.domain)) return undefined;
    const tensor = constantOf(value);
    return tensor?.dtype === DataType.STRING ? undefined : tensor;
  }

  #skip(node: Node, reason: string): void {
    this.ctx.log?.(`fold-constants: ${node} stays: ${reason}`);
  }
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
