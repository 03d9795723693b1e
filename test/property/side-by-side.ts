/**
 * Several models as one: every model's nodes, initializers, declared value types and
 * outputs copied into one graph under a prefix (`m0.`, `m1.`, …), all reading the same graph
 * inputs. One onnxruntime session then computes what each model computes — the models share
 * no value, so with graph optimisations disabled each part runs exactly as it would alone —
 * and saves a session per model (creating one costs about as much as running a tiny model).
 */
import { Graph } from '../../compiler/ir/graph.js';
import { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';

/** The prefix of model `index`'s names in the combined model. */
export const partPrefix = (index: number) => `m${index}.`;

/**
 * One model holding every model of `models` side by side. The models must have the same
 * graph inputs (by name) and no subgraphs; node names are left empty.
 */
export function sideBySide(models: readonly Model[]): Model {
  const graph = new Graph('side_by_side');
  const combined = new Model(graph);
  combined.irVersion = models[0]!.irVersion;
  combined.opsetImports = models[0]!.opsetImports.map((o) => ({ ...o }));
  const inputs = new Map<string, Value>();
  models.forEach((model, index) => copyInto(graph, model, partPrefix(index), inputs));
  return combined;
}

function copyInto(graph: Graph, model: Model, prefix: string, inputs: Map<string, Value>): void {
  const copied = new Map<Value, Value>();
  for (const input of model.graph.inputs) {
    if (input.isInitializer()) continue;
    let shared = inputs.get(input.name);
    if (!shared) inputs.set(input.name, (shared = graph.addInput(input.name, input.type)));
    copied.set(input, shared);
  }
  for (const [name, value] of model.graph.initializers)
    copied.set(value, graph.addInitializer(prefix + name, value.constValue!.clone()));
  for (const node of model.graph.nodes()) {
    if (node.subgraphs().length > 0) throw new Error(`sideBySide: ${node} has subgraphs`);
    const copy = graph.addNode(
      node.opType,
      node.inputs.map((v) => v && copied.get(v)!),
      {
        name: '',
        domain: node.domain,
        attributes: [...node.attributes.values()],
        outputs: node.outputs.map((v) => (v ? prefix + v.name : '')),
      },
    );
    node.outputs.forEach((v, k) => {
      if (!v) return;
      const out = copy.outputs[k]!;
      out.type = v.type;
      copied.set(v, out);
    });
  }
  for (const value of model.graph.valueInfo) {
    const copy = copied.get(value);
    if (copy) graph.valueInfo.push(copy);
  }
  for (const value of model.graph.outputs) graph.outputs.push(copied.get(value)!);
}
