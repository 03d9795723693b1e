/**
 * cleanup: remove what no longer contributes to the graph outputs.
 *
 * - Dead nodes: every output unused (no node, subgraph node or graph output reads it),
 *   removed repeatedly until none is left. Only default-domain (ai.onnx, ai.onnx.ml) nodes
 *   go, as those ops are pure; a dead node of another domain is kept and logged.
 * - Initializers nothing reads that are neither graph inputs (an IR < 4 initializer listed
 *   as an input is part of the model's interface) nor graph outputs.
 * - value_info entries of values the graph no longer defines.
 *
 * Graph inputs and outputs, with their names and declared shapes, are never touched. Works
 * on the main graph; subgraph bodies are left as they are.
 */
import type { Graph } from '../compiler/ir/graph.js';
import type { Node } from '../compiler/ir/node.js';
import { forgetValueInfo } from './edit.js';
import type { Pass, PassContext } from './pass.js';

const PURE_DOMAINS = new Set(['', 'ai.onnx', 'ai.onnx.ml']);

/** The cleanup pass; stats: nodesRemoved, initializersRemoved, valueInfoRemoved. */
export const cleanup: Pass = {
  name: 'cleanup',
  run(model, ctx) {
    const graph = model.graph;
    const stats = {
      nodesRemoved: removeDeadNodes(graph, ctx),
      initializersRemoved: removeUnusedInitializers(graph),
      valueInfoRemoved: removeStaleValueInfo(graph),
    };
    return { changed: Object.values(stats).some((n) => n > 0), stats };
  },
};

function isDead(graph: Graph, node: Node): boolean {
  return node.outputs.every((v) => !v || (v.useCount === 0 && !graph.outputs.includes(v)));
}

/** Sweep from the end, so a dead chain goes in one sweep; repeat until a sweep removes nothing. */
function removeDeadNodes(graph: Graph, ctx: PassContext): number {
  let removed = 0;
  const kept = new Set<Node>();
  for (let sweep = -1; sweep !== 0; ) {
    sweep = 0;
    for (const node of graph.nodeList().reverse()) {
      if (kept.has(node) || !isDead(graph, node)) continue;
      if (!PURE_DOMAINS.has(node.domain)) {
        kept.add(node);
        ctx.log?.(`cleanup: ${node} is unused but stays: domain '${node.domain}' may have side effects`);
        continue;
      }
      graph.remove(node); // its value_info entries go with the stale ones below, and are counted there
      sweep++;
    }
    removed += sweep;
  }
  return removed;
}

function removeUnusedInitializers(graph: Graph): number {
  let removed = 0;
  for (const value of [...graph.initializers.values()]) {
    if (value.useCount > 0 || value.isGraphInput() || value.isGraphOutput()) continue;
    graph.removeInitializer(value);
    removed++;
  }
  return removed;
}

function removeStaleValueInfo(graph: Graph): number {
  const defined = new Set(graph.values());
  return forgetValueInfo(
    graph,
    graph.valueInfo.filter((v) => !defined.has(v)),
  );
}
