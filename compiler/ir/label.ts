/**
 * Display labels for nodes. Side tables are keyed by Node, never by name (exporters write
 * empty and repeated node names); a label is only what a report prints for a node:
 *   its name,                                 when non-empty and unique in its graph,
 *   `${opType}#${k} (→ ${first output name})`, otherwise, with k the node's 1-based position
 *                                             among the graph's nodes of that op type.
 * Labels are stable for a given graph (they depend only on its node order and names); take
 * them before a rewrite that adds or removes nodes of the same op type.
 */
import type { Graph } from './graph.js';
import type { Node } from './node.js';

/** The label of every node of `graph` (one pass over the graph). */
export function nodeLabels(graph: Graph): Map<Node, string> {
  const nameCounts = new Map<string, number>();
  for (const node of graph.nodes()) if (node.name) nameCounts.set(node.name, (nameCounts.get(node.name) ?? 0) + 1);
  const ordinals = new Map<string, number>();
  const labels = new Map<Node, string>();
  for (const node of graph.nodes()) {
    const ordinal = (ordinals.get(node.opType) ?? 0) + 1;
    ordinals.set(node.opType, ordinal);
    labels.set(node, node.name && nameCounts.get(node.name) === 1 ? node.name : positional(node, ordinal));
  }
  return labels;
}

/** The label of one node (scans its graph: for many nodes take nodeLabels once). */
export function nodeLabel(node: Node): string {
  const graph = node.graph;
  return graph ? nodeLabels(graph).get(node)! : node.name || positional(node, undefined);
}

function positional(node: Node, ordinal: number | undefined): string {
  const out = node.outputs.find((v) => v !== undefined)?.name;
  return `${node.opType}${ordinal === undefined ? '' : `#${ordinal}`}${out ? ` (→ ${out})` : ''}`;
}
