/**
 * prepareModel: the PREPARE passes run to a fixpoint, with a runtime evaluator for what the
 * folding kernels do not cover. Exporters and tools write weights as small constant subgraphs
 * (ConstantOfShape fills, Shape → Gather → Reshape chains, weight normalisation's
 * Pow/ReduceSum/Sqrt); channel analysis and the cost model see weights only once those are
 * initializers. Like onnx-simplifier, the runtime itself computes the ops the compiler has no
 * kernel for; passes do not import the runtime, so the caller hands one in (the CLI:
 * runtime/constant-evaluator.ts, onnxruntime with optimisations disabled).
 *
 * A round: after PREPARE, the nodes computable from constants alone (constantCone) that may be
 * evaluated elsewhere become one model whose initializers are their constant inputs and whose
 * outputs are all their outputs; the evaluator runs it, fold-constants adopts the results under
 * its usual rules (adoptEvaluated), PREPARE runs again. Rounds repeat while some node folds
 * (most models need one). Never evaluated elsewhere: Div and Mod unless their first input is
 * known to be float (an integer zero divisor is undefined behaviour in the runtime's C++, and
 * the kernels fold int64 division already); nodes fold-constants refused for a reason that
 * holds whoever computes them (graph output, declared type); and nodes downstream of those or
 * of a node the evaluator failed on. When the whole model fails, the nodes whose inputs are
 * all constant are evaluated one by one, and each failure is recorded with the runtime's
 * message.
 */
import { constantOf } from '../compiler/ir/constants.js';
import { isFloat } from '../compiler/ir/dtype.js';
import { Graph } from '../compiler/ir/graph.js';
import { Model } from '../compiler/ir/model.js';
import type { Node, Value } from '../compiler/ir/node.js';
import { Tensor } from '../compiler/ir/tensor.js';
import { adoptEvaluated, constantCone, type FoldContext } from './fold-constants.js';
import { FoldLog, type FoldSummary } from './fold-log.js';
import { PREPARE } from './index.js';
import { runPasses } from './manager.js';

/** Computes every output of a model that has no graph inputs; returns tensors by output name. */
export type ConstantEvaluator = (model: Model) => Promise<ReadonlyMap<string, Tensor>>;

export interface PrepareOptions {
  /** Evaluates constant subgraphs the folding kernels leave; without it, only the kernels fold. */
  evaluate?: ConstantEvaluator;
  /** Receives the passes' notes (what stays and why). */
  log?: (line: string) => void;
}

/** Most evaluator rounds: one evaluates the whole cone; more follow only when nodes went one by one. */
const MAX_ROUNDS = 8;

/** Run PREPARE to a fixpoint on `model`, with `options.evaluate` for the rest; what was folded. */
export async function prepareModel(model: Model, options: PrepareOptions = {}): Promise<FoldSummary> {
  const ctx: FoldContext = { log: options.log, folds: new FoldLog() };
  runPasses(model, PREPARE, ctx, { fixpoint: true });
  const failed = new Set<Node>();
  for (let round = 0; options.evaluate && round < MAX_ROUNDS; round++) {
    const nodes = evaluable(model.graph, (node) => failed.has(node) || ctx.folds!.isSettled(node));
    if (nodes.length === 0) break;
    const results = await evaluateNodes(model, nodes, options.evaluate, failed, ctx);
    if (!adoptEvaluated(model, results, ctx).changed) break;
    runPasses(model, PREPARE, ctx, { fixpoint: true });
  }
  return ctx.folds!.summary();
}

/** The constant cone without what must not (or need not) be evaluated elsewhere, and what reads it. */
function evaluable(graph: Graph, skip: (node: Node) => boolean): Node[] {
  const excluded = new Set<Value>();
  const nodes: Node[] = [];
  for (const node of constantCone(graph, { staticShapes: false })) {
    const blocked = skip(node) || integerDivision(node) || node.inputs.some((v) => v && excluded.has(v));
    if (blocked) for (const v of node.outputs) v && excluded.add(v);
    else nodes.push(node);
  }
  return nodes;
}

/** A Div or Mod that may divide integers (an unknown element type counts as integer). */
function integerDivision(node: Node): boolean {
  const dtype = node.inputs[0]?.type?.dtype;
  return (node.opType === 'Div' || node.opType === 'Mod') && (dtype === undefined || !isFloat(dtype));
}

/** Evaluate `nodes` as one model; on failure, those with all-constant inputs one by one. */
async function evaluateNodes(
  model: Model,
  nodes: readonly Node[],
  evaluate: ConstantEvaluator,
  failed: Set<Node>,
  ctx: FoldContext,
): Promise<Map<Node, (Tensor | undefined)[]>> {
  const results = new Map<Node, (Tensor | undefined)[]>();
  const collect = (batch: readonly Node[], tensors: ReadonlyMap<string, Tensor>) => {
    for (const node of batch)
      results.set(
        node,
        node.outputs.map((v) => v && tensors.get(v.name)),
      );
  };
  const whole = constantModel(model, nodes);
  try {
    collect(nodes, await evaluate(whole));
    return results;
  } catch (err) {
    ctx.log?.(`prepare: evaluating ${nodes.length} constant node(s) together failed (${messageOf(err)}); one by one`);
  }
  const inBatch = new Set(nodes);
  for (const node of nodes.filter((n) => n.inputs.every((v) => !v?.producer || !inBatch.has(v.producer)))) {
    const single = constantModel(model, [node]);
    try {
      collect([node], await evaluate(single));
    } catch (err) {
      failed.add(node);
      const reason = `onnxruntime could not evaluate it: ${messageOf(err)}`;
      ctx.folds?.stays(node, reason);
      ctx.log?.(`prepare: ${node} stays: ${reason}`);
    }
  }
  return results;
}

/**
 * A model computing `nodes` (in graph order, each input a constant or an earlier node's
 * output): their constant inputs become initializers under the same names, every output a
 * graph output. The tensors share the original bytes; IR 4 or later, so initializers need not
 * be graph inputs.
 */
export function constantModel(model: Model, nodes: readonly Node[]): Model {
  const graph = new Graph('constants');
  const sub = new Model(graph);
  sub.irVersion = Math.max(model.irVersion, 4);
  sub.opsetImports = model.opsetImports.map((o) => ({ ...o }));
  const copies = new Map<Value, Value>();
  const copyOf = (value: Value): Value => {
    const known = copies.get(value);
    if (known) return known;
    const tensor = constantOf(value);
    if (!tensor) throw new Error(`internal: '${value.name}' is neither constant nor computed earlier`);
    const copy = graph.addInitializer(value.name, Tensor.fromRaw(tensor.dtype, tensor.dims, tensor.rawBytes()));
    copies.set(value, copy);
    return copy;
  };
  for (const node of nodes) {
    const copy = graph.addNode(
      node.opType,
      node.inputs.map((v) => v && copyOf(v)),
      {
        domain: node.domain,
        attributes: [...node.attributes.values()],
        outputs: node.outputs.map((v) => v?.name ?? ''),
      },
    );
    node.outputs.forEach((v, outputIndex) => {
      if (!v) return;
      copies.set(v, copy.output(outputIndex));
      graph.outputs.push(copy.output(outputIndex));
    });
  }
  return sub;
}

function messageOf(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
}
