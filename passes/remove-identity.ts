/**
 * remove-identity: bypass `Identity` nodes of the main graph. Every reader of y = Identity(x)
 * reads x instead and the node goes. An Identity whose output is a graph output stays, since
 * removing it would rename (or, when x is a graph input, alias) an output of the model.
 */
import { removeNode } from './edit.js';
import type { Pass } from './pass.js';

/** The remove-identity pass; stats: identitiesRemoved. */
export const removeIdentity: Pass = {
  name: 'remove-identity',
  run(model, ctx) {
    const graph = model.graph;
    let identitiesRemoved = 0;
    for (const node of graph.nodes()) {
      if (node.opType !== 'Identity' || (node.domain !== '' && node.domain !== 'ai.onnx')) continue;
      const [input] = node.inputs;
      const output = node.outputs[0];
      if (!input || !output) continue;
      if (output.isGraphOutput()) {
        ctx.log?.(`remove-identity: ${node} stays: its output '${output.name}' is a graph output`);
        continue;
      }
      output.replaceAllUsesWith(input);
      removeNode(graph, node);
      identitiesRemoved++;
    }
    return { changed: identitiesRemoved > 0, stats: { identitiesRemoved } };
  },
};
