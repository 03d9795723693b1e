/**
 * What constant folding did, across runs and rounds, for the commands' one-line summaries: a
 * side table a caller hands to fold-constants through the pass context (`FoldContext.folds`).
 *
 * A "constant subgraph" is a connected set of computed nodes that became initializers: two
 * folded nodes belong to one subgraph when one read the other's folded output. The log keeps
 * a union-find over subgraph ids, the op type of every folded node (and whether onnxruntime
 * computed it), the count of Constant nodes lifted, and, per node that stays computed although
 * its inputs are constant, the latest reason — forgotten when the node folds later.
 */
import type { Node, Value } from '../compiler/ir/node.js';

/** How a folded node was computed. */
export type FoldedBy = 'kernel' | 'onnxruntime';

/** The log's content as plain data. */
export interface FoldSummary {
  /** Constant nodes turned into initializers. */
  readonly lifted: number;
  /** Constant subgraphs (connected sets of computed nodes) that became initializers. */
  readonly subgraphs: number;
  /** Folded computed nodes by op type, most frequent first. */
  readonly ops: Readonly<Record<string, number>>;
  /** The part of `ops` onnxruntime computed. */
  readonly evaluated: Readonly<Record<string, number>>;
  /** Nodes whose inputs are all constant but that stay computed: "node (Op): reason". */
  readonly left: readonly string[];
}

/** A fold log; pass one in the context of every run whose folds should be summed. */
export class FoldLog {
  lifted = 0;
  /** Subgraph id of every initializer a fold produced. */
  readonly #subgraphOf = new Map<Value, number>();
  /** Union-find parents of subgraph ids. */
  readonly #parent: number[] = [];
  readonly #folded: { opType: string; subgraph: number; by: FoldedBy }[] = [];
  readonly #left = new Map<Node, string>();
  /** Nodes refused for a reason no evaluator changes (graph output, declared type, an evaluated size). */
  readonly #settled = new Set<Node>();

  /** Record that `node`, which read `inputs`, became the initializers `outputs`. */
  folded(node: Node, inputs: readonly (Value | undefined)[], outputs: readonly Value[], by: FoldedBy): void {
    const joined = [...new Set(inputs.flatMap((v) => (v && this.#subgraphOf.has(v) ? [this.#find(v)] : [])))];
    const subgraph = joined[0] ?? this.#parent.push(this.#parent.length) - 1;
    for (const other of joined.slice(1)) this.#parent[other] = subgraph;
    for (const value of outputs) this.#subgraphOf.set(value, subgraph);
    this.#folded.push({ opType: node.opType, subgraph, by });
    this.#left.delete(node);
    this.#settled.delete(node);
  }

  /**
   * Record why a node with constant inputs stays computed (the latest reason wins); `settled`
   * when the reason holds whoever computes the node, so no evaluator need try.
   */
  stays(node: Node, reason: string, settled = false): void {
    this.#left.set(node, reason);
    if (settled) this.#settled.add(node);
  }

  /** Whether a node stays for a reason no evaluator changes. */
  isSettled(node: Node): boolean {
    return this.#settled.has(node);
  }

  summary(): FoldSummary {
    const roots = new Set(this.#folded.map((f) => this.#root(f.subgraph)));
    const left = [...this.#left].filter(([node]) => node.graph !== undefined);
    return {
      lifted: this.lifted,
      subgraphs: roots.size,
      ops: countOps(this.#folded),
      evaluated: countOps(this.#folded.filter((f) => f.by === 'onnxruntime')),
      left: left.map(([node, reason]) => `${node}: ${reason}`),
    };
  }

  #find(value: Value): number {
    return this.#root(this.#subgraphOf.get(value)!);
  }

  #root(id: number): number {
    let root = id;
    while (this.#parent[root] !== root) root = this.#parent[root]!;
    return root;
  }
}

function countOps(folded: readonly { opType: string }[]): Record<string, number> {
  const counts = new Map<string, number>();
  for (const { opType } of folded) counts.set(opType, (counts.get(opType) ?? 0) + 1);
  return Object.fromEntries([...counts].sort(([a, m], [b, n]) => n - m || a.localeCompare(b)));
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const listOps = (ops: Readonly<Record<string, number>>) =>
  Object.entries(ops)
    .map(([op, n]) => `${op} ${n}`)
    .join(', ');

/** How many `left` reasons describeFolds spells out before counting the rest. */
const LEFT_SHOWN = 5;

/**
 * The summary as lines for a command's output, none when nothing was folded or left:
 * "folded 53 constant subgraphs (ConstantOfShape 53) into initializers", with what onnxruntime
 * computed and how many Constant nodes were lifted, then one line per node left computed.
 */
export function describeFolds(summary: FoldSummary): string[] {
  const lines: string[] = [];
  const parts: string[] = [];
  if (summary.subgraphs > 0) {
    const evaluated = Object.keys(summary.evaluated).length
      ? `; onnxruntime computed ${listOps(summary.evaluated)}`
      : '';
    parts.push(
      `folded ${plural(summary.subgraphs, 'constant subgraph')} (${listOps(summary.ops)}) into initializers${evaluated}`,
    );
  }
  if (summary.lifted > 0) parts.push(`lifted ${plural(summary.lifted, 'Constant node')} into initializers`);
  if (parts.length) lines.push(parts.join('; '));
  for (const reason of summary.left.slice(0, LEFT_SHOWN)) lines.push(`not folded: ${reason}`);
  if (summary.left.length > LEFT_SHOWN)
    lines.push(`not folded: ${summary.left.length - LEFT_SHOWN} more node(s) with constant inputs`);
  return lines;
}
