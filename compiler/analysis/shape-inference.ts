/**
 * Shape inference: element types and shapes for every value of a model, in side tables.
 *
 * The walk starts from the graph inputs' declared types (or caller-given shapes) and the
 * initializers' dims, then visits nodes in order and applies the op's rule from
 * shape-ops.ts. Dims are numbers, symbols (a symbolic batch stays 'batch', products become
 * monomials such as '512*batch') or null when unknown. Alongside types it follows the
 * elements of small rank ≤ 1 tensors ("shape values": Shape outputs, integer constants and
 * what Gather/Concat/Slice/arithmetic make of them), so shape computations fold to constant
 * target shapes, with symbolic elements where the batch is symbolic.
 *
 * Declared types of intermediate values are not read: they may be stale after a rewrite,
 * and inference should stand on its own. The IR is never changed.
 *
 * An op without a rule, an If/Loop/Scan, or a rule that cannot resolve its inputs leaves
 * the outputs unknown and records an issue naming the node; inference never throws for a
 * model that decodes. An unknown input does not produce a second issue downstream.
 */
import { constantOf } from '../ir/constants.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Node, TensorType, Value } from '../ir/node.js';
import { Unresolved, type ShapeContext } from './shape-context.js';
import { MAX_VALUE_ELEMENTS, SHAPE_RULES } from './shape-ops.js';
import { canonicalDim, isFullyKnown, staticSize, type Dim, type ShapeValue } from './shape-values.js';

export type { Dim, ShapeValue };

export interface InferShapesOptions {
  /** Shapes for graph inputs by name, replacing the declared ones (numbers, symbols, or null). */
  inputShapes?: Record<string, readonly Dim[]>;
}

export interface ShapeIssue {
  readonly node: Node;
  readonly message: string;
}

export interface ShapeResult {
  /** Inferred type of each value inference could type (graph inputs, initializers, node outputs). */
  readonly types: Map<Value, TensorType>;
  /** Followed elements of small rank ≤ 1 tensors. */
  readonly values: Map<Value, ShapeValue>;
  /** Why some outputs were left unknown, one entry per node at the origin of the unknown. */
  readonly issues: ShapeIssue[];
  typeOf(value: Value): TensorType | undefined;
}

/** Infer element types and shapes of every value in the model's main graph. */
export function inferShapes(model: Model, options: InferShapesOptions = {}): ShapeResult {
  const state = new InferenceState();
  seedGraph(model.graph, options, state);
  const opset = model.opset('') ?? 1;
  for (const node of model.graph.nodes()) inferNode(node, opset, state);
  const { types, values, issues } = state;
  return { types, values, issues, typeOf: (value) => types.get(value) };
}

class InferenceState {
  readonly types = new Map<Value, TensorType>();
  readonly values = new Map<Value, ShapeValue>();
  readonly issues: ShapeIssue[] = [];

  issue(node: Node, message: string): void {
    this.issues.push({ node, message: `${node}: ${message}` });
  }

  /** Record a value's type, and its elements when they fit the type. */
  set(value: Value, type: TensorType, elements: ShapeValue | undefined): void {
    this.types.set(value, type);
    if (elements && type.shape && type.shape.length <= 1 && staticSize(type.shape) === elements.length) {
      this.values.set(value, elements.map(canonicalDim));
    }
  }
}

/** Graph inputs (declared or caller-given) and initializers. */
function seedGraph(graph: Graph, options: InferShapesOptions, state: InferenceState): void {
  for (const input of graph.inputs) {
    if (input.isInitializer()) continue;
    const given = options.inputShapes?.[input.name];
    const declared = input.type;
    if (!declared && !given) continue;
    const shape = given ?? declared?.shape;
    state.types.set(input, { dtype: declared?.dtype ?? DataType.FLOAT, shape: shape?.map(validDim) });
  }
  for (const init of graph.initializers.values()) {
    const tensor = init.constValue!;
    state.set(init, { dtype: tensor.dtype, shape: tensor.dims }, integerElements(init));
  }
}

/** Negative dim values (some exporters write −1 for "any") are unknown. */
function validDim(dim: Dim): Dim {
  return typeof dim === 'number' && dim < 0 ? null : dim;
}

/** Elements of a small integer or bool constant, which are worth following. */
function integerElements(value: Value): number[] | undefined {
  const tensor = constantOf(value);
  if (!tensor || tensor.dims.length > 1 || tensor.size > MAX_VALUE_ELEMENTS) return undefined;
  const integer = tensor.dtype === DataType.INT64 || tensor.dtype === DataType.INT32 || tensor.dtype === DataType.BOOL;
  return integer ? tensor.toNumbers() : undefined;
}

/** Elements of any small numeric constant (float scales included), read on demand. */
function constantElements(value: Value): number[] | undefined {
  const tensor = constantOf(value);
  if (!tensor || tensor.dtype === DataType.STRING || tensor.dims.length > 1 || tensor.size > MAX_VALUE_ELEMENTS)
    return undefined;
  return tensor.toNumbers();
}

function inferNode(node: Node, opset: number, state: InferenceState): void {
  const standard = node.domain === '' || node.domain === 'ai.onnx';
  const rule = standard ? SHAPE_RULES[node.opType] : undefined;
  if (!rule) {
    const what = standard ? node.opType : `${node.domain}.${node.opType}`;
    const why = node.subgraphs().length > 0 ? 'control flow is not inferred' : `no shape rule for ${what}`;
    return state.issue(node, `${why}; outputs left unknown`);
  }
  const context = new NodeContext(node, opset, state);
  try {
    rule(context);
  } catch (err) {
    const reason = `cannot infer outputs: ${(err as Error).message ?? err}`;
    if (!(err instanceof Unresolved)) state.issue(node, reason);
    else reportHere(node, reason, state);
    return;
  }
  context.commit();
  const partial = node.outputs.filter((v): v is Value => v !== undefined && !isFullyKnown(state.types.get(v)?.shape));
  if (partial.length > 0)
    reportHere(node, `shape of ${partial.map((v) => `'${v.name}'`).join(', ')} only partly inferred`, state);
}

/**
 * Record an issue at this node unless it inherited the unknown from an input some other
 * node produced (that node is where the issue was, or will have been, recorded). An
 * unknown graph input is named, since only the caller can supply its shape.
 */
function reportHere(node: Node, message: string, state: InferenceState): void {
  const unknown = node.inputs.filter((v): v is Value => v !== undefined && !isFullyKnown(state.types.get(v)?.shape));
  if (unknown.some((v) => v.producer)) return;
  const inputs = unknown.map(
    (v) =>
      `'${v.name}' [${
        state.types
          .get(v)
          ?.shape?.map((d) => d ?? '?')
          .join(',') ?? '?'
      }]`,
  );
  state.issue(
    node,
    inputs.length === 0
      ? message
      : `${message}: graph input ${inputs.join(', ')} has unknown dims; give its shape (inputShapes)`,
  );
}

/** What a rule sees of one node; outputs are buffered and committed only when the rule succeeds. */
class NodeContext implements ShapeContext {
  readonly #outputs = new Map<number, TensorType>();
  readonly #elements = new Map<number, ShapeValue>();

  constructor(
    readonly node: Node,
    readonly opset: number,
    private readonly state: InferenceState,
  ) {}

  has(index: number): boolean {
    return this.node.inputs[index] !== undefined;
  }

  dtype(index: number): DataType {
    const type = this.state.types.get(this.#input(index));
    if (!type) throw new Unresolved(`input ${index} ('${this.#input(index).name}') has an unknown type`);
    return type.dtype;
  }

  shape(index: number): readonly Dim[] {
    const shape = this.tryShape(index);
    if (!shape) throw new Unresolved(`input ${index} ('${this.#input(index).name}') has an unknown shape`);
    return shape;
  }

  tryShape(index: number): readonly Dim[] | undefined {
    const input = this.node.inputs[index];
    return input ? this.state.types.get(input)?.shape : undefined;
  }

  value(index: number): ShapeValue | undefined {
    const input = this.node.inputs[index];
    if (!input) return undefined;
    return this.state.values.get(input) ?? constantElements(input);
  }

  numbers(index: number): number[] {
    const elements = this.value(index);
    if (!elements?.every((e): e is number => typeof e === 'number')) {
      throw new Unresolved(`input ${index} ('${this.#input(index).name}') is not a known constant`);
    }
    return [...elements];
  }

  optionalNumbers(index: number): number[] | undefined {
    if (!this.has(index)) return undefined;
    const numbers = this.numbers(index);
    return numbers.length > 0 ? numbers : undefined;
  }

  out(index: number, shape: readonly Dim[] | undefined, dtype: DataType = this.dtype(0)): void {
    if (this.node.outputs[index]) this.#outputs.set(index, { dtype, shape: shape && [...shape] });
  }

  outValue(index: number, elements: ShapeValue | undefined): void {
    if (elements) this.#elements.set(index, elements);
  }

  commit(): void {
    for (const [index, type] of this.#outputs) this.state.set(this.node.output(index), type, this.#elements.get(index));
  }

  #input(index: number): Value {
    const input = this.node.inputs[index];
    if (!input) throw new Unresolved(`input ${index} is absent`);
    return input;
  }
}
