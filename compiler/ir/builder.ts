/**
 * A small builder for making models in code (tests, fixtures, generated graphs):
 *
 *   const b = new GraphBuilder({ opset: 17 });
 *   const x = b.input('x', [1, 3, 32, 32]);
 *   const y = b.op('Relu', [b.op('Conv', [x, b.weight('w', [8, 3, 3, 3])], { pads: [1, 1, 1, 1] })]);
 *   b.output(y);
 *
 * Plain attribute values are typed by shape: an integer → INT, a non-integer → FLOAT, a
 * number array → INTS (or FLOATS if any element is fractional), a string → STRING, a Tensor
 * → TENSOR, a Graph → GRAPH; wrap with `floatAttr` / `floatsAttr` to force floats.
 */
import { attr, AttrType, type Attribute } from './attribute.js';
import { DataType } from './dtype.js';
import { Graph } from './graph.js';
import { Model } from './model.js';
import type { Dim, Node, TensorType, Value } from './node.js';
import { Tensor } from './tensor.js';
import { Random } from '../util/random.js';

/** Forces FLOAT / FLOATS for values that happen to be integers. */
export const floatAttr = (value: number) => ({ float: value }) as const;
export const floatsAttr = (value: readonly number[]) => ({ floats: value }) as const;

export type AttrInput =
  | number
  | string
  | readonly number[]
  | readonly string[]
  | Tensor
  | Graph
  | Attribute
  | ReturnType<typeof floatAttr>
  | ReturnType<typeof floatsAttr>;

export interface BuilderOptions {
  opset?: number;
  irVersion?: number;
  /** Seed for `weight()`'s random initialisation. */
  seed?: number;
  graphName?: string;
}

export class GraphBuilder {
  readonly model: Model;
  readonly graph: Graph;
  readonly random: Random;

  constructor(options: BuilderOptions = {}) {
    this.graph = new Graph(options.graphName ?? 'main');
    this.model = new Model(this.graph);
    this.model.opsetImports = [{ domain: '', version: options.opset ?? 17 }];
    this.model.irVersion = options.irVersion ?? 8;
    this.random = new Random(options.seed ?? 0);
  }

  /** A graph input of the given shape (numbers, or strings for symbolic dims). */
  input(name: string, shape: readonly Dim[], dtype: DataType = DataType.FLOAT): Value {
    return this.graph.addInput(name, { dtype, shape });
  }

  /** Mark values as graph outputs; types are declared when given. */
  output(value: Value, type?: TensorType): Value {
    if (type) value.type = type;
    this.graph.outputs.push(value);
    return value;
  }

  initializer(name: string, tensor: Tensor): Value {
    return this.graph.addInitializer(name, tensor, { fresh: this.graph.names.has(name) });
  }

  /** A float32 initializer with He-normal values (std = sqrt(2 / fan_in)) unless a std is given. */
  weight(name: string, dims: readonly number[], std?: number): Value {
    const count = dims.reduce((a, b) => a * b, 1);
    const fanIn = dims.length > 1 ? count / dims[0]! : count;
    return this.initializer(name, Tensor.float32(dims, this.random.normals(count, std ?? Math.sqrt(2 / fanIn))));
  }

  /** A float32 initializer filled with one value, or with the given numbers. */
  constant(name: string, dims: readonly number[], values: number | readonly number[]): Value {
    const count = dims.reduce((a, b) => a * b, 1);
    const data = typeof values === 'number' ? new Float32Array(count).fill(values) : Float32Array.from(values);
    return this.initializer(name, Tensor.float32(dims, data));
  }

  /** An int64 initializer (shapes, axes, pads). */
  ints(name: string, values: readonly number[], dims: readonly number[] = [values.length]): Value {
    return this.initializer(name, Tensor.int64(dims, values));
  }

  /** Add a single-output node and return its output. */
  op(
    opType: string,
    inputs: readonly (Value | undefined)[],
    attributes: Record<string, AttrInput> = {},
    name?: string,
  ): Value {
    return this.node(opType, inputs, attributes, { name, outputs: 1 }).output(0);
  }

  /** Add a node with several outputs and return them. */
  ops(
    opType: string,
    inputs: readonly (Value | undefined)[],
    outputs: number,
    attributes: Record<string, AttrInput> = {},
    name?: string,
  ): Value[] {
    return this.node(opType, inputs, attributes, { name, outputs }).outputs.map((v) => v!);
  }

  /** Add a node; full control over domain and output count. */
  node(
    opType: string,
    inputs: readonly (Value | undefined)[],
    attributes: Record<string, AttrInput> = {},
    init: { name?: string; domain?: string; outputs?: number } = {},
  ): Node {
    const attrs = Object.entries(attributes).map(([key, value]) => toAttribute(key, value));
    return this.graph.addNode(opType, inputs, {
      name: init.name,
      domain: init.domain,
      outputs: init.outputs ?? 1,
      attributes: attrs,
    });
  }
}

function toAttribute(name: string, value: AttrInput): Attribute {
  if (value instanceof Tensor) return attr.tensor(name, value);
  if (value instanceof Graph) return attr.graph(name, value);
  if (typeof value === 'number') return Number.isInteger(value) ? attr.int(name, value) : attr.float(name, value);
  if (typeof value === 'string') return attr.string(name, value);
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'string')) return attr.strings(name, value as string[]);
    const nums = value as number[];
    return nums.every(Number.isInteger) ? attr.ints(name, nums) : attr.floats(name, nums);
  }
  if ('float' in value) return attr.float(name, value.float);
  if ('floats' in value) return attr.floats(name, value.floats);
  if ('type' in value && Object.values(AttrType).includes(value.type)) return { ...value, name } as Attribute;
  throw new TypeError(`attribute '${name}': cannot infer a type for ${String(value)}`);
}
