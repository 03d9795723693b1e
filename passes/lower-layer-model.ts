/**
 * A single-layer model for tuning: graph input `x` of the layer's input shape → one
 * candidate lowering of the conv → output. The dense weight is first reordered the way the
 * candidate's folds would reorder it (rows by the output order, columns by the input
 * order), so what runs is what the candidate emits in the full model.
 */
import { attr } from '../compiler/ir/attribute.js';
import { constantOf } from '../compiler/ir/constants.js';
import { Graph } from '../compiler/ir/graph.js';
import { Model } from '../compiler/ir/model.js';
import type { Node } from '../compiler/ir/node.js';
import type { Tensor } from '../compiler/ir/tensor.js';
import { gather } from './channel-map.js';
import { cleanup } from './cleanup.js';
import { runPasses } from './manager.js';
import { emitPlan, type FormPlan } from './lower-emit.js';

/** The model that runs `plan` for `conv` alone on an input of `inputDims`. */
export function layerModel(
  source: Model,
  conv: Node,
  inputDims: readonly number[],
  plan: FormPlan,
  outOrder: Int32Array | undefined,
  inOrder: Int32Array | undefined,
): Model {
  const model = new Model(new Graph(`layer_${conv.name}`));
  model.opsetImports = [{ domain: '', version: source.opset('') ?? 17 }];
  model.irVersion = source.irVersion;
  const graph = model.graph;
  // New Tensor objects over the same elements: registering an initializer renames its tensor.
  const own = (t: Tensor) => t.withData(t.dims, t.data);
  let weight = own(constantOf(conv.input(1))!);
  let bias = constantOf(conv.inputs[2]) && own(constantOf(conv.inputs[2])!);
  if (outOrder) {
    weight = gather(weight, 0, Array.from(outOrder));
    bias = bias && gather(bias, 0, Array.from(outOrder));
  }
  if (inOrder) weight = gather(weight, 1, Array.from(inOrder));
  const x = graph.addInput('x', { dtype: weight.dtype, shape: [...inputDims] });
  const w = graph.addInitializer('weight', weight);
  const b = bias ? graph.addInitializer('bias', bias) : undefined;
  const attributes = [...conv.attributes.values()].filter((a) => a.name !== 'group');
  const node = graph.addNode('Conv', b ? [x, w, b] : [x, w], {
    name: conv.name,
    attributes: [...attributes, attr.int('group', 1)],
  });
  graph.outputs.push(node.output(0));
  emitPlan(model, node, plan);
  runPasses(model, [cleanup], {}, { fixpoint: true });
  return model;
}
