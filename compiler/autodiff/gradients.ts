/**
 * Reverse-mode automatic differentiation over the IR, emitting the backward pass as
 * standard ONNX nodes appended to the same graph.
 *
 *   ḡ(loss) = 1
 *   for each node on the path from the wrt values to the loss, in reverse order:
 *     ḡ(input_i) += rule(node)(ḡ(outputs))_i          (fan-out summed with Add)
 *
 * Only nodes on a path between a wrt value and the loss are differentiated (path.ts); an
 * op on that path without a rule is an error naming the node. Rules live one file per
 * op family under rules/; the table is rules/index.ts. Fused regions (training-mode
 * BatchNormalization) are differentiated as one unit with their own rule.
 *
 * `appendGradients` changes the model it is given; `gradientModel` works on a copy of the
 * caller's model whose default-domain opset is raised to at least 17 (opset.ts), which the
 * emitted ops need (ScatterElements with reduction='add' is opset 16).
 */
import { DataType, isFloat } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { Dim, Node, TensorType, Value } from '../ir/node.js';
import { inferShapes, type ShapeResult } from '../analysis/shape-inference.js';
import { RegroupError } from '../errors.js';
import { Emitter } from './emitter.js';
import { findPath, type GradientPath } from './path.js';
import { withOutputs } from './prepare.js';
import type { GradientOptions, GradientRegion, GradientRule, RuleContext } from './rules/context.js';
import { GRADIENT_RULES, REQUIRED_OUTPUTS } from './rules/index.js';
import { ensureOpset } from './opset.js';
import { straightThroughRegions } from './straight-through.js';
import { lowerTrainingBatchNorms } from './batchnorm-training.js';

export interface GradientRequest {
  /** A scalar float value of the graph. */
  readonly loss: Value;
  /** Values to differentiate with respect to (graph inputs, initializers or intermediates). */
  readonly wrt: readonly Value[];
  /** Groups of nodes with a closed-form backward (see GradientRegion). */
  readonly regions?: readonly GradientRegion[];
  readonly options?: GradientOptions;
}

export type { GradientOptions };

export interface GradientResult {
  /** Gradient of each wrt value (keyed by the values passed in). */
  readonly gradients: Map<Value, Value>;
  /**
   * The value now standing for `value`: nodes on the path may have been replaced to expose
   * optional outputs (prepare.ts), which gives their outputs new Value objects with the
   * same names. Identity for every other value.
   */
  resolve(value: Value): Value;
}

/**
 * Append the backward pass of `request.loss` to `model.graph` (in place) and return the
 * gradient value of each wrt value (zeros when the loss does not depend on it).
 */
export function appendGradients(model: Model, request: GradientRequest): GradientResult {
  const graph = model.graph;
  graph.sort();
  const replaced = exposeRequiredOutputs(model, findPath(graph, request.wrt, request.loss));
  const resolve = (v: Value) => replaced.get(v) ?? v;
  const [loss, wrt] = [resolve(request.loss), request.wrt.map(resolve)];
  const shapes = inferShapes(model);
  const path = findPath(graph, wrt, loss, (v) => isFloat(shapes.typeOf(v)?.dtype ?? v.type?.dtype ?? DataType.FLOAT));
  const emitter = new Emitter(graph, model.opset('') ?? 17);
  const walk = new BackwardWalk(emitter, shapes, path, request.regions ?? [], request.options ?? {});
  walk.seed(loss);
  for (let at = path.nodes.length - 1; at >= 0; at--) {
    const node = path.nodes[at]!;
    emitter.scope = node.name || `${node.opType}#${at}`;
    walk.visit(node);
  }
  emitter.scope = undefined;
  const gradients = new Map(
    request.wrt.map((v, k) => [v, walk.total(wrt[k]!) ?? emitter.zerosLike(wrt[k]!, walk.dtype(wrt[k]!))]),
  );
  return { gradients, resolve };
}

export interface GradientModelOptions {
  /** Name of the scalar loss value. */
  readonly loss: string;
  /** Names of the values to differentiate with respect to. */
  readonly wrt: readonly string[];
  /**
   * Put BatchNormalization in training mode (batch statistics) before differentiating; 'fused':
   * statistics from one training-mode node (batchnorm-training.ts).
   */
  readonly trainingBatchNorm?: boolean | 'fused';
  /** Values whose Sign/Round/Floor/Ceil producer is differentiated straight through (straight-through.ts). */
  readonly straightThrough?: readonly string[];
  readonly options?: GradientOptions;
}

export interface GradientModel {
  /** Outputs: the loss, then one gradient per wrt value. */
  readonly model: Model;
  readonly loss: string;
  /** wrt name → output name of its gradient. */
  readonly gradients: ReadonlyMap<string, string>;
}

/**
 * A copy of `model` whose outputs are the loss and its gradients with respect to the named
 * values (for gradient checks and gradient-based importance). The caller's model is not
 * changed.
 */
export function gradientModel(model: Model, options: GradientModelOptions): GradientModel {
  const copy = model.clone().model;
  ensureOpset(copy, 17);
  const regions = [
    ...(options.trainingBatchNorm
      ? lowerTrainingBatchNorms(copy, {
          momentum: 0.1,
          statistics: options.trainingBatchNorm === 'fused' ? 'fused' : 'reductions',
        }).regions
      : []),
    ...straightThroughRegions(copy.graph, options.straightThrough ?? []),
  ];
  const values = copy.graph.valueMap();
  const find = (name: string): Value =>
    values.get(name) ?? fail(`value '${name}' is not in graph '${copy.graph.name}'`);
  const loss = find(options.loss);
  const wrt = options.wrt.map(find);
  const result = appendGradients(copy, { loss, wrt, regions, options: options.options });
  const outputs = copy.graph.outputs;
  outputs.length = 0;
  outputs.push(result.resolve(loss));
  const grads = wrt.map((v) => {
    const grad = exposed(copy, result.gradients.get(v)!);
    outputs.push(grad);
    return grad;
  });
  const gradients = new Map(wrt.map((v, k) => [v.name, grads[k]!.name]));
  return { model: copy, loss: result.resolve(loss).name, gradients };
}

/** A value that can be listed as one more graph output (an Identity copy of inputs, initializers and repeats). */
function exposed(model: Model, value: Value): Value {
  const graph = model.graph;
  if (!value.isGraphInput() && !value.isInitializer() && !graph.outputs.includes(value) && value.producer) return value;
  return graph.addNode('Identity', [value], { name: graph.names.fresh('grad/output') }).output(0);
}

function fail(message: string): never {
  throw new RegroupError('usage', message);
}

/** Replace on-path nodes that lack an output their gradient reads; returns old → new outputs. */
function exposeRequiredOutputs(model: Model, path: GradientPath): Map<Value, Value> {
  const replaced = new Map<Value, Value>();
  for (const node of path.nodes) {
    const count = REQUIRED_OUTPUTS[node.opType]?.(node) ?? 0;
    if (count === 0) continue;
    const replacement = withOutputs(model.graph, node, count);
    node.outputs.forEach((old, index) => old && replacement !== node && replaced.set(old, replacement.output(index)));
  }
  if (replaced.size > 0) model.graph.sort();
  return replaced;
}

/** One differentiable unit: a node, or a fused region anchored at its output's producer. */
interface Unit {
  readonly node: Node;
  readonly inputs: readonly (Value | undefined)[];
  readonly outputs: readonly (Value | undefined)[];
  readonly rule: GradientRule;
}

/** The state of the reverse sweep: gradient contributions per value, summed on first read. */
class BackwardWalk {
  readonly #contributions = new Map<Value, Value[]>();
  readonly #totals = new Map<Value, Value>();
  readonly #regionOf = new Map<Node, GradientRegion>();
  readonly #onPath: ReadonlySet<Node>;

  constructor(
    readonly e: Emitter,
    readonly shapes: ShapeResult,
    readonly path: GradientPath,
    regions: readonly GradientRegion[],
    readonly options: GradientOptions,
  ) {
    for (const region of regions) for (const node of region.nodes) this.#regionOf.set(node, region);
    this.#onPath = new Set(path.nodes);
  }

  /** ∂loss/∂loss = 1. */
  seed(loss: Value): void {
    const dtype = this.dtype(loss);
    if (!isFloat(dtype))
      throw new RegroupError('usage', `loss '${loss.name}' is not a float value; autodiff needs a float scalar loss`);
    const shape = (this.shapes.typeOf(loss) ?? loss.type)?.shape;
    if (!shape || shape.some((d) => d !== 1))
      throw new RegroupError(
        'usage',
        `loss '${loss.name}' has shape [${shape?.join(', ') ?? '?'}]; autodiff needs a scalar loss (reduce it first)`,
      );
    const one = this.e.scalar(1, dtype);
    this.#contributions.set(loss, [
      shape.length === 0 ? one : this.e.op('Expand', [one, this.e.int64(shape as number[])]),
    ]);
  }

  visit(node: Node): void {
    const unit = this.#unitOf(node);
    if (!unit) return;
    const context = this.#context(unit);
    const grads = unit.rule(context);
    unit.inputs.forEach((input, index) => {
      const grad = grads[index];
      if (!input || !context.needs(index)) return;
      if (!grad)
        throw new RegroupError(
          'invalid-ir',
          `internal: gradient rule for ${node} returned no gradient for input ${index} ('${input.name}')`,
        );
      this.#add(input, grad);
    });
  }

  /** The summed gradient of a value, or undefined when nothing reached it. */
  total(value: Value): Value | undefined {
    const done = this.#totals.get(value);
    if (done) return done;
    const parts = this.#contributions.get(value);
    if (!parts || parts.length === 0) return undefined;
    const sum = parts.reduce((acc, part) => this.e.add(acc, part));
    this.#totals.set(value, sum);
    return sum;
  }

  dtype(value: Value): DataType {
    const dtype = this.shapes.typeOf(value)?.dtype ?? value.type?.dtype;
    if (dtype === undefined)
      throw new RegroupError('unsupported', `element type of '${value.name}' is unknown; give the graph inputs types`);
    return dtype;
  }

  #add(value: Value, grad: Value): void {
    if (this.#totals.has(value))
      throw new RegroupError(
        'invalid-ir',
        `internal: gradient of '${value.name}' was read before all its uses were differentiated`,
      );
    const list = this.#contributions.get(value);
    if (list) list.push(grad);
    else this.#contributions.set(value, [grad]);
  }

  /** The unit to differentiate at `node`, or undefined for a non-anchor node of a region. */
  #unitOf(node: Node): Unit | undefined {
    const region = this.#regionOf.get(node);
    if (region) {
      if (region.output.producer !== node) return undefined;
      this.#checkRegion(region);
      return { node, inputs: region.inputs, outputs: [region.output], rule: region.rule };
    }
    if (node.domain !== '' && node.domain !== 'ai.onnx')
      this.#unsupported(node, `custom-domain op ${node.domain}.${node.opType} has no gradient rule`);
    if (node.subgraphs().length > 0) this.#unsupported(node, `control flow (${node.opType}) cannot be differentiated`);
    const rule = GRADIENT_RULES[node.opType];
    if (!rule) this.#unsupported(node, `no gradient rule for ${node.opType}`);
    return { node, inputs: node.inputs, outputs: node.outputs, rule };
  }

  /** Values inside a region must reach the loss only through its output. */
  #checkRegion(region: GradientRegion): void {
    for (const node of region.nodes) {
      for (const out of node.outputs) {
        if (!out || out === region.output || !this.path.values.has(out)) continue;
        if (out.uses().some((use) => !region.nodes.has(use.node) && this.#onPath.has(use.node))) {
          throw new RegroupError(
            'invalid-ir',
            `internal: '${out.name}' inside a fused region reaches the loss outside it`,
          );
        }
      }
    }
  }

  #context(unit: Unit): RuleContext {
    const inputs = unit.inputs;
    return {
      node: unit.node,
      e: this.e,
      options: this.options,
      inputs,
      grad: (index) => {
        const out = unit.outputs[index];
        return out ? this.total(out) : undefined;
      },
      needs: (index) => {
        const input = inputs[index];
        return input !== undefined && this.path.values.has(input);
      },
      shape: (value) => this.#shape(unit.node, value),
      dtype: (value) => this.dtype(value),
      unsupported: (reason) => this.#unsupported(unit.node, reason),
    };
  }

  /** Inferred shape, else a declared one (values regroup or the caller typed), else an error. */
  #shape(node: Node, value: Value): readonly Dim[] {
    const type: TensorType | undefined = this.shapes.typeOf(value) ?? value.type;
    if (type?.shape) return type.shape;
    const issue = this.shapes.issues.find((i) => i.node.outputs.includes(value))?.message;
    this.#unsupported(
      node,
      `the shape of '${value.name}' is unknown${issue ? ` (${issue})` : ''}; give the graph inputs shapes`,
    );
  }

  #unsupported(node: Node, reason: string): never {
    throw new RegroupError('unsupported', `cannot differentiate node ${node}: ${reason}`);
  }
}
