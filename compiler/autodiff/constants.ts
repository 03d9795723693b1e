/**
 * Weights stored as Constant nodes (paddle2onnx and some other exporters store every
 * tensor that way) become initializers of the same name, so the training builder can
 * carry them as parameters and BatchNormalization statistics. Only Constants feeding a
 * parameter slot are converted: Conv/ConvTranspose/Gemm/MatMul inputs 1–2 and
 * BatchNormalization inputs 1–4.
 */
import { AttrType } from '../ir/attribute.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Node, Value } from '../ir/node.js';
import type { Tensor } from '../ir/tensor.js';

/** Op type → input slots that hold parameters. */
const PARAMETER_SLOTS: Record<string, readonly number[]> = {
  Conv: [1, 2],
  ConvTranspose: [1, 2],
  Gemm: [1, 2],
  MatMul: [1],
  BatchNormalization: [1, 2, 3, 4],
};

/**
 * Turn Constant nodes that feed parameter slots into initializers named like their
 * outputs, in place; returns how many were converted. Run it on an inference model before
 * training so the trained values have initializers to return to.
 */
export function parameterConstantsToInitializers(model: Model): number {
  const graph = model.graph;
  let converted = 0;
  for (const node of graph.nodeList()) {
    if (node.opType !== 'Constant' || (node.domain !== '' && node.domain !== 'ai.onnx')) continue;
    const value = node.output(0);
    const tensor = tensorAttribute(node);
    if (!tensor || graph.outputs.includes(value) || !value.uses().some(isParameterUse)) continue;
    moveToInitializer(graph, node, value, tensor);
    converted++;
  }
  return converted;
}

function isParameterUse(use: { node: Node; inputIndex: number }): boolean {
  const slots = PARAMETER_SLOTS[use.node.opType];
  return (
    slots !== undefined && (use.node.domain === '' || use.node.domain === 'ai.onnx') && slots.includes(use.inputIndex)
  );
}

function tensorAttribute(node: Node): Tensor | undefined {
  const value = node.attr('value');
  return value?.type === AttrType.TENSOR ? value.value : undefined;
}

/** Replace the Constant's output by an initializer that takes over its name. */
function moveToInitializer(graph: Graph, node: Node, value: Value, tensor: Tensor): void {
  const name = value.name;
  value.name = graph.names.fresh(`${name}_constant`);
  // The name stays reserved by the authority: register under a fresh one, then move onto it.
  const initializer = graph.addInitializer(name, tensor.withData(tensor.dims, tensor.data), { fresh: true });
  value.replaceAllUsesWith(initializer);
  graph.remove(node);
  graph.initializers.delete(initializer.name);
  initializer.name = name;
  initializer.constValue!.name = name;
  graph.initializers.set(name, initializer);
}
