/**
 * Copying a model, and raising its default-domain opset to what the backward ops need
 * while keeping the forward graph's meaning. Between opset 9 and 17 these forms changed:
 *
 *   Split (13)              `split` attribute → second input
 *   Squeeze/Unsqueeze (13)  `axes` attribute → second input
 *   ReduceSum (13)          `axes` attribute → second input
 *   Softmax/LogSoftmax (13) "flatten to 2-D at axis" → one axis: rewritten as
 *                           Flatten(axis) → op(axis 1) → Reshape(Shape(x)) unless axis is last
 *   Dropout (12)            `ratio` attribute → input (inference: identity either way)
 *   Clip (11)               `min`/`max` attributes → inputs
 *   Pad (11)                `pads`/`value` attributes → inputs
 *   Slice (10)              `starts`/`ends`/`axes` attributes → inputs
 *
 * Ops whose form changed in ways not rewritten here (Upsample and Scatter, removed; Resize
 * before 11, whose default coordinate mode changed; TopK before 10) make the upgrade fail
 * with a typed error; models older than opset 9 are refused.
 */
import { attr } from '../ir/attribute.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Node, TensorType, Value } from '../ir/node.js';
import { Tensor } from '../ir/tensor.js';
import { inferShapes } from '../analysis/shape-inference.js';
import { RegroupError } from '../errors.js';
import { floatTensor } from './emitter.js';

/** Raise the default-domain opset to at least `minimum` in place, rewriting old op forms. */
export function ensureOpset(model: Model, minimum: number): void {
  const current = model.opset('') ?? 1;
  if (current >= minimum) return;
  if (current < 9)
    throw new RegroupError(
      'unsupported',
      `model opset ${current} is too old for training graphs; re-export it with opset ≥ 13 (or convert it with onnx.version_converter)`,
    );
  const types = inferShapes(model).types;
  const typeOf = (v: Value | undefined) => (v ? types.get(v) : undefined);
  for (const node of model.graph.nodeList()) upgradeNode(model.graph, node, current, typeOf);
  model.opsetImports = [
    ...model.opsetImports.filter((o) => o.domain !== '' && o.domain !== 'ai.onnx'),
    { domain: '', version: minimum },
  ];
  model.irVersion = Math.max(model.irVersion, 8);
  model.graph.sort();
}

type TypeOf = (v: Value | undefined) => TensorType | undefined;

function upgradeNode(graph: Graph, node: Node, from: number, typeOf: TypeOf): void {
  const dtype = typeOf(node.inputs[0])?.dtype ?? DataType.FLOAT;
  if (node.domain !== '' && node.domain !== 'ai.onnx') return;
  const op = node.opType;
  if (from < 13 && (op === 'Split' || op === 'Squeeze' || op === 'Unsqueeze' || op === 'ReduceSum'))
    moveIntsToInput(graph, node, op === 'Split' ? 'split' : 'axes');
  else if (from < 13 && (op === 'Softmax' || op === 'LogSoftmax' || op === 'Hardmax'))
    upgradeSoftmax(graph, node, typeOf(node.inputs[0])?.shape?.length);
  else if (from < 12 && op === 'Dropout') dropAttributes(node, ['ratio', 'is_test']);
  else if (from < 11 && op === 'Clip') upgradeClip(graph, node, dtype);
  else if (from < 11 && op === 'Pad') upgradePad(graph, node, dtype);
  else if (from < 10 && op === 'Slice') upgradeSlice(graph, node);
  else if (NOT_UPGRADED[op] && from < NOT_UPGRADED[op].since) {
    throw new RegroupError(
      'unsupported',
      `node ${node}: ${op} at opset ${from} has a form regroup does not upgrade to opset 17; ${NOT_UPGRADED[op].fix}`,
    );
  }
}

/** Ops whose old forms are not rewritten: the first opset whose form is current, and the fix. */
const NOT_UPGRADED: Record<string, { since: number; fix: string }> = {
  Upsample: { since: Infinity, fix: 'it was removed in opset 10; re-export the model with Resize (opset ≥ 11)' },
  Scatter: {
    since: Infinity,
    fix: 'it was removed in opset 11; re-export the model with ScatterElements (opset ≥ 11)',
  },
  Resize: { since: 11, fix: 're-export the model with opset ≥ 11' },
  TopK: { since: 10, fix: 're-export the model with opset ≥ 10' },
};

/** Move an INTS attribute into a new int64 input at index 1. */
function moveIntsToInput(graph: Graph, node: Node, name: string): void {
  const values = node.getInts(name);
  dropAttributes(node, [name]);
  if (values === undefined) return;
  const constant = graph.addInitializer(`${node.name || node.opType}.${name}`, Tensor.int64([values.length], values), {
    fresh: true,
  });
  if (node.inputs.length === 1) node.appendInput(constant);
  else node.setInput(1, constant);
}

/** Old Softmax: coerce to 2-D at `axis` (default 1) and normalise the second dim. */
function upgradeSoftmax(graph: Graph, node: Node, rank: number | undefined): void {
  const axis = node.getInt('axis', 1);
  if (rank !== undefined && (axis === rank - 1 || axis === -1)) {
    node.setAttr(attr.int('axis', -1));
    return;
  }
  const x = node.input(0);
  const y = node.output(0);
  const uses = y.uses();
  const name = y.name;
  y.name = graph.names.fresh(`${name}_2d`);
  const flat = graph.insertBefore(node, graph.createNode('Flatten', [x], { attributes: [attr.int('axis', axis)] }));
  const shape = graph.insertBefore(node, graph.createNode('Shape', [x]));
  node.setInput(0, flat.output(0));
  node.setAttr(attr.int('axis', 1));
  const restored = graph
    .insertAfter(node, graph.createNode('Reshape', [y, shape.output(0)], { outputs: [name] }))
    .output(0);
  for (const use of uses) use.node.setInput(use.inputIndex, restored);
  const at = graph.outputs.indexOf(y);
  if (at >= 0) {
    graph.outputs[at] = restored;
    restored.type = y.type;
  }
}

function upgradeClip(graph: Graph, node: Node, dtype: DataType): void {
  const min = node.getFloat('min');
  const max = node.getFloat('max');
  dropAttributes(node, ['min', 'max']);
  const scalar = (v: number | undefined, what: string) =>
    v === undefined
      ? undefined
      : graph.addInitializer(`${node.name || 'Clip'}.${what}`, floatTensor(dtype, [], [v]), { fresh: true });
  node.appendInput(scalar(min, 'min'));
  node.appendInput(scalar(max, 'max'));
}

function upgradePad(graph: Graph, node: Node, dtype: DataType): void {
  const pads = node.getInts('pads') ?? [];
  const value = node.getFloat('value', 0);
  dropAttributes(node, ['pads', 'value']);
  node.appendInput(
    graph.addInitializer(`${node.name || 'Pad'}.pads`, Tensor.int64([pads.length], pads), { fresh: true }),
  );
  node.appendInput(
    graph.addInitializer(
      `${node.name || 'Pad'}.value`,
      floatTensor(dtype === DataType.DOUBLE ? dtype : DataType.FLOAT, [], [value]),
      { fresh: true },
    ),
  );
}

function upgradeSlice(graph: Graph, node: Node): void {
  const get = (name: string) => node.getInts(name);
  const [starts, ends, axes] = [get('starts') ?? [], get('ends') ?? [], get('axes')];
  dropAttributes(node, ['starts', 'ends', 'axes']);
  const int64 = (what: string, values: readonly number[]) =>
    graph.addInitializer(`${node.name || 'Slice'}.${what}`, Tensor.int64([values.length], values), { fresh: true });
  node.appendInput(int64('starts', starts));
  node.appendInput(int64('ends', ends));
  if (axes) node.appendInput(int64('axes', axes));
}

function dropAttributes(node: Node, names: readonly string[]): void {
  for (const name of names) node.attributes.delete(name);
}
