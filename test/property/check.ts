/**
 * The properties every generated CNN (test/property/generate.ts) must satisfy, as plain
 * async functions that throw a PropertyFailure naming the check, so that vitest (through
 * fast-check) and bench/property.ts run the same code:
 *
 *   build     the generated model verifies, and decoding its bytes and encoding again gives
 *             the same bytes.
 *   shapes    inferShapes gives every node output a fully known shape and the element type
 *             onnxruntime produces, with no issues — on the model as built, after PREPARE and
 *             after pruning (every node output is fetched as an extra graph output).
 *   prepare   PREPARE (to a fixpoint, verifying after each pass) leaves a graph that verifies,
 *             computes exactly (bit for bit) what the built model computes, and changes
 *             nothing when run again.
 *   lower     a self-grouped or randomly masked copy is the reference; every lowering form
 *             (forced), the cost model's choice and, for self-grouping, the pass pipeline
 *             (self-group → lower-grouped → cleanup, verified after each pass) reproduce it:
 *             max |lowered − reference| ≤ max(1e-4 · max |reference|, 1e-5) (LOWER_RTOL as
 *             test/passes/lower-grouped.test.ts, ATOL as STYLE.md's fp32 atol).
 *   prune     planted dead channels. The channels to remove come, for half the graphs, from
 *             the planner of `regroup prune` (random weight criterion, MAC or parameter
 *             target, rounding, mode), whose predicted MACs and parameters must be the pruned
 *             model's exactly; for the others, a random set of free coupled channels. They are
 *             made exactly zero in a copy (their producers' filters and biases, their
 *             per-channel parameters: BN γ β μ, broadcast constants), then the original is
 *             pruned of them (channel map, TIDY, verify); the pruned outputs equal the planted
 *             copy's within max(1e-5 · max |planted|, 1e-5) (PRUNE_RTOL, ATOL): only the
 *             summation order differs.
 *
 * Why an absolute floor: rounding from a changed summation order scales with the terms summed
 * (Σ |w·x|, about 1–10 here), not with the result. A head Gemm whose single output is small by
 * cancellation (found at seed 1: 1e-3 from terms of about 1, the lowered Gemm's columns
 * permuted) differs by 3e-7, which no bug explains and 1e-4 · 1e-3 rejects.
 *
 * onnxruntime runs on CPU, one thread, graph optimisations disabled, on seeded inputs; the
 * models each check compares run side by side in one session (side-by-side.ts), three
 * sessions per graph. Node names are cleared in what onnxruntime gets (it refuses repeated
 * node names; names do not change what a model computes).
 */
import { analyzeChannels, type ChannelAnalysis } from '../../compiler/analysis/channel-groups.js';
import { convConnectivity, type Connectivity, uniformConnectivity } from '../../compiler/analysis/connectivity.js';
import { computeCost, type CostReport, type CostTotals } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { evaluateDim } from '../../compiler/analysis/shape-values.js';
import { constantOf } from '../../compiler/ir/constants.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node } from '../../compiler/ir/node.js';
import { decodeModel } from '../../compiler/onnx/decode.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { Random } from '../../compiler/util/random.js';
import { criterionNamed } from '../../passes/importance.js';
import {
  applyChannelMap,
  CRITERIA,
  channelImportance,
  type PlanOptions,
  type PruningPlan,
  planPruning,
  removalSet,
  LOWERING_FORMS,
  type LoweringForm,
  lowerGrouped,
  maskLayer,
  PREPARE,
  runPasses,
  selfGroup,
  type SelfGroupContext,
  type SelfGroupOptions,
  selfGroupPipeline,
  TIDY,
} from '../../passes/index.js';
import { randomFeeds } from '../../runtime/inputs.js';
import { createSession, type Feeds, ort, ortType, run, type Outputs } from '../../runtime/session.js';
import { buildCnn, type CnnSpec } from './generate.js';
import { partPrefix, sideBySide } from './side-by-side.js';

// Failures come back as exceptions and are reported with the shrunk case; onnxruntime's own log lines are noise.
ort.env.logLevel = 'fatal';

/** Lowered outputs: max |diff| ≤ max(LOWER_RTOL · max |reference|, ATOL) (fp32 summation order; as lower-grouped.test.ts). */
export const LOWER_RTOL = 1e-4;
/** Pruned outputs against the planted copy: max |diff| ≤ max(PRUNE_RTOL · max |planted|, ATOL). */
export const PRUNE_RTOL = 1e-5;
/** fp32 absolute tolerance (STYLE.md), for outputs much smaller than the terms they sum. */
export const ATOL = 1e-5;

export type CheckName = 'build' | 'shapes' | 'prepare' | 'lower' | 'prune';

/** A property that does not hold for a generated graph. */
export class PropertyFailure extends Error {
  constructor(
    readonly check: CheckName,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${check}: ${message}`, options);
    this.name = 'PropertyFailure';
  }
}

export interface CheckOptions {
  /** Lowering forms to force (default: every form and 'auto'); empty skips the lowering check. */
  forms?: readonly (LoweringForm | 'auto')[];
}

/** What the checks did with one graph (for the bench's report and the suite's coverage asserts). */
export interface GraphStats {
  nodes: number;
  /** PREPARE changed the model. */
  prepared: boolean;
  /** Node outputs whose inferred shape was compared with onnxruntime's (all three models). */
  shapesChecked: number;
  /** Layers given a connectivity and where it came from; layers that took each forced form; the cost model's picks. */
  lowered: {
    layers: number;
    source: 'random' | 'self-group' | 'none';
    forced: Partial<Record<LoweringForm, number>>;
    auto: Partial<Record<LoweringForm, number>>;
  };
  /** Coupled channels removed, and whether planting them changed the outputs (the oracle had teeth). */
  pruned: { removed: number; mattered: boolean };
}

/** Run every check on the graph `spec` describes; throws PropertyFailure on the first that fails. */
export async function checkCnn(spec: CnnSpec, options: CheckOptions = {}): Promise<GraphStats> {
  const model = stage('build', () => {
    const built = buildCnn(spec);
    built.graph.verify();
    const bytes = Buffer.from(encodeModel(built).bytes);
    if (!bytes.equals(Buffer.from(encodeModel(decodeModel(bytes)).bytes)))
      throw new Error('decoding and encoding the model again changes its bytes');
    return built;
  });
  const random = new Random(spec.seed ^ 0x5bd1e995);
  const feeds = randomFeeds(model, { seed: spec.seed + 1, batch: spec.batch });
  const stats: GraphStats = {
    nodes: model.graph.nodeCount,
    prepared: false,
    shapesChecked: 0,
    lowered: { layers: 0, source: 'none', forced: {}, auto: {} },
    pruned: { removed: 0, mattered: false },
  };
  const original = model.clone().model;
  stats.prepared = stage('prepare', () => prepare(model));
  const [built, prepared] = await executeAll(
    [
      { check: 'build', label: 'the model as built', model: original },
      { check: 'prepare', label: 'the model after PREPARE', model },
    ],
    feeds,
    'every value',
  );
  stats.shapesChecked += checkShapes('as built', original, built!, spec.batch);
  compareOutputs('prepare', 'outputs after PREPARE', built!, prepared!, 'exact');
  stats.shapesChecked += checkShapes('after PREPARE', model, prepared!, spec.batch);

  const forms = options.forms ?? [...LOWERING_FORMS, 'auto'];
  if (forms.length > 0) stats.lowered = await checkLowering(model, feeds, forms, random, spec.seed);
  const pruned = await checkPrune(model, feeds, prepared!, random);
  stats.pruned = pruned.stats;
  stats.shapesChecked += checkShapes('after pruning', model, pruned.execution, spec.batch);
  return stats;
}

// ---------------------------------------------------------------------------------------------
// prepare

function prepare(model: Model): boolean {
  const first = runPasses(model, PREPARE, {}, { verify: true, fixpoint: true });
  if (!first.converged) throw new Error(`PREPARE still changed the model after ${first.rounds} rounds`);
  const again = runPasses(model, PREPARE, {}, { verify: true });
  if (again.changed) {
    const which = again.records.filter((r) => r.result.changed).map((r) => r.pass);
    throw new Error(`a second PREPARE run changed the model again (${which.join(', ')})`);
  }
  return first.changed;
}

// ---------------------------------------------------------------------------------------------
// lower

async function checkLowering(
  model: Model,
  feeds: Feeds,
  forms: readonly (LoweringForm | 'auto')[],
  random: Random,
  seed: number,
): Promise<GraphStats['lowered']> {
  const source = random.next() < 0.5 ? 'random' : 'self-group';
  const grouping = { groups: 2 + random.int(3), cp: 20 + random.int(60), seed: random.int(1000), minInputChannels: 2 };
  const { reference, table } = stage('lower', () =>
    source === 'random' ? maskRandomly(model, random) : selfGrouped(model, grouping),
  );
  const stats: GraphStats['lowered'] = { layers: table.size, source, forced: {}, auto: {} };
  if (table.size === 0) return stats;
  const fold = random.next() < 0.9;
  const simdBlock = random.next() < 0.5 ? 4 : 8;
  const runs: Run[] = [{ check: 'lower', label: 'the masked-dense reference', model: reference }];
  if (source === 'self-group') {
    // The same grouping as passes, run by the pass manager and verified after each.
    const piped = model.clone().model;
    // A stream of its own, so that adding this draw left the other checks' draws as they were.
    const form = forms[new Random(seed ^ 0x2545f491).int(forms.length)];
    const pipeline = selfGroupPipeline({ ...grouping, fold, simdBlock, form });
    stage('lower', () => runPasses(piped, pipeline, {} as SelfGroupContext, { verify: true }));
    runs.push({
      check: 'lower',
      label: `the self-group pipeline (self-group, lower-grouped '${form}', cleanup)`,
      model: piped,
    });
  }
  for (const form of forms) {
    const { model: lowered, choices } = await stageAsync('lower', () =>
      lowerGrouped(reference, table, { form, fold, simdBlock }),
    );
    stage('lower', () => {
      lowered.graph.verify();
      if (choices.length !== table.size) throw new Error(`${choices.length} choices for ${table.size} layers`);
      for (const c of choices) {
        const honoured = c.form === form || (form === 'grouped' && c.form === 'duplicated');
        if (form !== 'auto' && !honoured && !/does not apply|connectivity is dense/.test(c.reason))
          throw new Error(`form '${form}' forced on '${c.label}' gave '${c.form}' (${c.reason})`);
        if (form === 'auto') stats.auto[c.form] = (stats.auto[c.form] ?? 0) + 1;
        else if (c.form === form) stats.forced[form] = (stats.forced[form] ?? 0) + 1;
      }
    });
    runs.push({ check: 'lower', label: `form '${form}' (fold ${fold}, simdBlock ${simdBlock})`, model: lowered });
  }
  const [want, ...got] = await executeAll(runs, feeds, 'outputs');
  got.forEach((execution, i) =>
    compareOutputs('lower', runs[i + 1]!.label, want!, execution, { rtol: LOWER_RTOL, atol: ATOL }),
  );
  return stats;
}

interface Masked {
  reference: Model;
  table: Map<Node, Connectivity>;
}

function selfGrouped(model: Model, options: SelfGroupOptions): Masked {
  const { model: reference, connectivity } = selfGroup(model, options);
  reference.graph.verify();
  return { reference, table: connectivity };
}

/** A copy where about two convs in three are masked to a random connectivity (maskLayer). */
function maskRandomly(model: Model, random: Random): Masked {
  const { model: reference } = model.clone();
  const table = new Map<Node, Connectivity>();
  for (const node of reference.graph.nodeList()) {
    const w = node.inputs[1];
    const weight = constantOf(w);
    if (node.opType !== 'Conv' || !w?.isInitializer() || w.useCount !== 1 || !weight) continue;
    if (random.next() < 0.3) continue;
    const group = node.getInt('group', 1)!;
    const own = convConnectivity(weight.dims, group);
    const conn = group > 1 && random.next() < 0.5 ? own : randomConnectivity(own.outChannels, own.inChannels, random);
    maskLayer(node, conn);
    table.set(node, conn);
  }
  reference.graph.verify();
  return { reference, table };
}

/**
 * Shuffled equal clusters on disjoint inputs (the grouped form applies), equal clusters on
 * independently drawn inputs of one width (the duplicated form may apply), contiguous uniform
 * groups, or 1–4 clusters of random sizes reading random, possibly overlapping, inputs.
 */
function randomConnectivity(outChannels: number, inChannels: number, random: Random): Connectivity {
  const divisor = [4, 2].find((g) => outChannels % g === 0 && inChannels % g === 0);
  const mode = random.int(5);
  if (divisor && mode === 0) return balancedConnectivity(outChannels, inChannels, divisor, random);
  if (divisor && mode === 1) return uniformConnectivity(outChannels, inChannels, divisor);
  if (divisor && mode <= 3) return overlappingConnectivity(outChannels, inChannels, divisor, random);
  const count = 1 + random.int(Math.min(outChannels, 4));
  const owner = random.shuffle(Array.from({ length: outChannels }, (_, f) => (f < count ? f : random.int(count))));
  return {
    outChannels,
    inChannels,
    clusters: Array.from({ length: count }, (_, c) => {
      const inputs = Array.from({ length: inChannels }, (_, j) => j).filter(() => random.next() < 0.5);
      return {
        filters: Int32Array.from(owner.flatMap((o, f) => (o === c ? [f] : []))),
        inputs: Int32Array.from(inputs.length > 0 ? inputs : [random.int(inChannels)]),
      };
    }),
  };
}

/** `groups` clusters of Cout/groups shuffled filters, each reading its own random Cin/groups inputs (fold-selection's shape). */
function overlappingConnectivity(
  outChannels: number,
  inChannels: number,
  groups: number,
  random: Random,
): Connectivity {
  const filters = random.shuffle(Array.from({ length: outChannels }, (_, i) => i));
  const [m, w] = [outChannels / groups, inChannels / groups];
  const clusters = Array.from({ length: groups }, (_, c) => ({
    filters: Int32Array.from(filters.slice(c * m, (c + 1) * m)).sort(),
    inputs: Int32Array.from(random.shuffle(Array.from({ length: inChannels }, (_, i) => i)).slice(0, w)).sort(),
  }));
  return { outChannels, inChannels, clusters };
}

function balancedConnectivity(outChannels: number, inChannels: number, groups: number, random: Random): Connectivity {
  const filters = random.shuffle(Array.from({ length: outChannels }, (_, i) => i));
  const inputs = random.shuffle(Array.from({ length: inChannels }, (_, i) => i));
  const [m, w] = [outChannels / groups, inChannels / groups];
  const clusters = Array.from({ length: groups }, (_, c) => ({
    filters: Int32Array.from(filters.slice(c * m, (c + 1) * m)).sort(),
    inputs: Int32Array.from(inputs.slice(c * w, (c + 1) * w)).sort(),
  }));
  return { outChannels, inChannels, clusters };
}

// ---------------------------------------------------------------------------------------------
// prune

async function checkPrune(
  model: Model,
  feeds: Feeds,
  original: Execution,
  random: Random,
): Promise<{ stats: GraphStats['pruned']; execution: Execution }> {
  const shapes = inferShapes(model);
  const analysis = stage('prune', () => {
    const a = analyzeChannels(model, shapes);
    if (a.unsupported) throw new Error(a.unsupported);
    return a;
  });
  const plan =
    random.next() < 0.5 ? stage('prune', () => planRandomly(analysis, computeCost(model, shapes), random)) : undefined;
  const removed = plan ? stage('prune', () => removalSet(plan, analysis)) : chooseRemoval(analysis, random);
  const { model: planted, nodes } = model.clone();
  stage('prune', () => plantDeadChannels(planted, nodes, analysis, removed));
  stage('prune', () => {
    applyChannelMap(model, analysis, removed);
    runPasses(model, TIDY, {}, { verify: true, fixpoint: true });
    model.graph.verify();
    if (plan) expectPredicted(plan, computeCost(model, inferShapes(model)).totals);
  });
  const [want, got] = await executeAll(
    [
      { check: 'prune', label: 'the copy with planted dead channels', model: planted },
      { check: 'prune', label: `the model pruned of ${removed.size} coupled channels`, model },
    ],
    feeds,
    'every value',
  );
  compareOutputs('prune', `pruned outputs (${removed.size} coupled channels removed)`, want!, got!, {
    rtol: PRUNE_RTOL,
    atol: ATOL,
  });
  return { stats: { removed: removed.size, mattered: differ(original, want!) }, execution: got! };
}

/**
 * A plan as `regroup prune` makes it (passes/plan-pruning.ts) for a random weight criterion,
 * MAC or parameter target, rounding and mode.
 */
function planRandomly(analysis: ChannelAnalysis, cost: CostReport, random: Random): PruningPlan {
  const criterion = CRITERIA[random.int(CRITERIA.length)]!;
  const keep = 0.3 + 0.6 * random.next();
  const options: PlanOptions = {
    ...(random.next() < 0.7 ? { keepMacs: keep } : { keepParams: keep }),
    roundTo: [1, 1, 2, 4][random.int(4)]!,
    uniform: random.next() < 0.3,
    ceiling: criterionNamed(criterion).ceiling,
  };
  return planPruning(analysis, cost, channelImportance(analysis, { criterion }), options, criterion);
}

/** The planner's claim: the pruned model's MACs and parameters are exactly the ones it predicted. */
function expectPredicted(plan: PruningPlan, realised: CostTotals): void {
  const { macsAfter, paramsAfter } = plan.predicted;
  if (realised.macs !== macsAfter || realised.params !== paramsAfter)
    throw new Error(
      `the plan predicted ${macsAfter} MACs and ${paramsAfter} parameters, the pruned model has ${realised.macs} and ${realised.params}`,
    );
}

/**
 * Each free coupled channel of each prunable group with one probability (drawn per graph),
 * then one given back wherever a member (touch) or a value would lose all of its channels: a
 * channel map refuses to empty anything (passes/plan-pruning.ts keepEveryValueAlive).
 */
function chooseRemoval(analysis: ChannelAnalysis, random: Random): Set<number> {
  const rate = 0.15 + 0.5 * random.next();
  const removed = new Set<number>();
  for (const group of analysis.groups) {
    if (!group.prunable) continue;
    for (const root of group.roots)
      if (analysis.pinReasons(root).length === 0 && random.next() < rate) removed.add(root);
  }
  // Giving a channel back never empties anything, so one pass over every run of channels suffices.
  const runs = [...analysis.touches.map((t) => t.elems), ...[...analysis.layouts.values()].map((l) => l.elems)];
  for (const elems of runs)
    if (elems.length > 0 && elems.every((e) => removed.has(analysis.root(e)))) removed.delete(analysis.root(elems[0]!));
  return removed;
}

/**
 * Make the removed channels exactly zero in `planted` (a clone; `nodes` maps the analysed
 * model's nodes to it): their rows of every producer's weight and bias, and their entries of
 * every per-channel parameter (BN γ, β, μ, σ²: γ = β = μ = 0 gives 0 for a zero input; a
 * broadcast constant of 0 keeps 0). Every op between them in generated graphs maps 0 to 0,
 * except the SE gate's Sigmoid, whose output only ever multiplies a channel coupled to it.
 */
function plantDeadChannels(
  planted: Model,
  nodes: ReadonlyMap<Node, Node>,
  analysis: ChannelAnalysis,
  removed: ReadonlySet<number>,
): void {
  for (const touch of analysis.touches) {
    if (touch.role !== 'out-channels' && touch.role !== 'per-channel') continue;
    const positions = [...touch.elems.keys()].filter((p) => removed.has(analysis.root(touch.elems[p]!)));
    if (positions.length === 0) continue;
    const node = nodes.get(touch.node)!;
    const value = node.input(touch.inputIndex);
    const tensor = constantOf(value)!;
    const data = tensor.data.slice() as Float32Array;
    const dims = tensor.dims;
    const outer = dims.slice(0, touch.axis).reduce((a, b) => a * b, 1);
    const inner = dims.slice(touch.axis + 1).reduce((a, b) => a * b, 1);
    for (let o = 0; o < outer; o++)
      for (const p of positions)
        data.fill(0, (o * dims[touch.axis]! + p) * inner, (o * dims[touch.axis]! + p + 1) * inner);
    const zeroed = tensor.withData(dims, data);
    if (value.isInitializer() && value.useCount === 1) planted.graph.setInitializer(value, zeroed);
    else node.setInput(touch.inputIndex, planted.graph.addInitializer(value.name, zeroed, { fresh: true }));
  }
  planted.graph.verify();
}

// ---------------------------------------------------------------------------------------------
// onnxruntime, shapes and comparisons

interface Execution {
  /** The model's own outputs, by name. */
  outputs: Outputs;
  /** Every value fetched (outputs included), by name. */
  values: Outputs;
}

/** A model to run, and what to blame when onnxruntime cannot. */
interface Run {
  check: CheckName;
  label: string;
  model: Model;
}

/**
 * Run the models on the feeds in one session (test/property/side-by-side.ts); with 'every
 * value', every node output is fetched too. Models that encode to the same bytes run once
 * (a form that fell back to masked-dense, a PREPARE that changed nothing). When the combined
 * model does not run, each model runs alone, and the first that fails is the failure: the
 * combination of valid models is ours, not the code under test's.
 */
async function executeAll(runs: readonly Run[], feeds: Feeds, fetch: 'outputs' | 'every value'): Promise<Execution[]> {
  const distinct: Run[] = [];
  const seen: Buffer[] = [];
  const slot = runs.map((r) => {
    const bytes = Buffer.from(encodeModel(r.model).bytes);
    const at = seen.findIndex((b) => b.equals(bytes));
    if (at >= 0) return at;
    seen.push(bytes);
    return distinct.push(r) - 1;
  });
  let executions: Execution[];
  try {
    executions = await executeSideBySide(distinct, feeds, fetch);
  } catch {
    executions = [];
    for (const r of distinct)
      executions.push((await stageAsync(r.check, () => executeSideBySide([r], feeds, fetch), r.label))[0]!);
  }
  return slot.map((index) => executions[index]!);
}

async function executeSideBySide(
  runs: readonly Run[],
  feeds: Feeds,
  fetch: 'outputs' | 'every value',
): Promise<Execution[]> {
  const combined = sideBySide(runs.map((r) => r.model));
  if (fetch === 'every value') fetchEveryValue(combined);
  const values = await session(combined, feeds);
  return runs.map((r, index) => {
    const prefix = partPrefix(index);
    const mine: Outputs = {};
    for (const [name, tensor] of Object.entries(values))
      if (name.startsWith(prefix)) mine[name.slice(prefix.length)] = tensor;
    return { outputs: Object.fromEntries(r.model.graph.outputs.map((v) => [v.name, mine[v.name]!])), values: mine };
  });
}

/** Every node output becomes a graph output (types cleared: onnxruntime infers them). */
function fetchEveryValue(model: Model): void {
  const graph = model.graph;
  for (const node of graph.nodes())
    for (const v of node.outputs)
      if (v && !v.isGraphOutput()) {
        v.type = undefined;
        graph.outputs.push(v);
      }
}

/** Outputs of a model in onnxruntime (CPU, one thread, optimisations disabled); repeated node names are cleared in a copy. */
async function session(model: Model, feeds: Feeds): Promise<Outputs> {
  const names = model.graph
    .nodeList()
    .map((n) => n.name)
    .filter(Boolean);
  let runnable = model;
  if (new Set(names).size !== names.length) {
    runnable = model.clone().model;
    for (const n of runnable.graph.nodes()) n.name = '';
  }
  const created = await createSession(encodeModel(runnable).bytes, { optimization: 'disabled', threads: 1 });
  try {
    return await run(created, feeds);
  } finally {
    await created.release();
  }
}

/** Every node output has a fully known inferred shape and type equal to onnxruntime's; returns how many were compared. */
function checkShapes(when: string, model: Model, execution: Execution, batch: number): number {
  return stage('shapes', () => {
    const shapes = inferShapes(model);
    if (shapes.issues.length > 0) throw new Error(`${when}: ${shapes.issues.map((i) => i.message).join('; ')}`);
    let checked = 0;
    for (const node of model.graph.nodes()) {
      for (const value of node.outputs) {
        if (!value) continue;
        const actual = execution.values[value.name];
        if (!actual) throw new Error(`${when}: onnxruntime gave no value for '${value.name}' (${node})`);
        const type = shapes.typeOf(value);
        const dims = type?.shape?.map((d) => evaluateDim(d, () => batch) ?? null);
        const same =
          type !== undefined &&
          ortType(type.dtype) === actual.type &&
          dims?.length === actual.dims.length &&
          dims.every((d, i) => d === actual.dims[i]);
        if (!same)
          throw new Error(
            `${when}: '${value.name}' (${node}) is inferred ${describe(type?.shape, type && ortType(type.dtype))}, onnxruntime gives ${describe(actual.dims, actual.type)}`,
          );
        checked++;
      }
    }
    return checked;
  });
}

function describe(dims: readonly unknown[] | undefined, type: string | undefined): string {
  return `${type ?? '?'}[${dims?.join(', ') ?? '?'}]`;
}

/** Same output names and dims; elements equal ('exact') or max |got − want| ≤ max(rtol · max |want|, atol). */
function compareOutputs(
  check: CheckName,
  what: string,
  want: Execution,
  got: Execution,
  tolerance: 'exact' | { rtol: number; atol: number },
): void {
  stage(check, () => {
    for (const [name, reference] of Object.entries(want.outputs)) {
      const actual = got.outputs[name];
      if (!actual) throw new Error(`${what}: output '${name}' is missing`);
      if (actual.dims.join() !== reference.dims.join())
        throw new Error(`${what}: output '${name}' is [${actual.dims}], expected [${reference.dims}]`);
      const [a, b] = [reference.data as Float32Array, actual.data as Float32Array];
      let [worst, at, scale] = [0, 0, 0];
      for (let i = 0; i < a.length; i++) {
        const diff = Math.abs(a[i]! - b[i]!);
        if (diff > worst || Number.isNaN(diff)) [worst, at] = [Number.isNaN(diff) ? Infinity : diff, i];
        scale = Math.max(scale, Math.abs(a[i]!));
      }
      const bound = tolerance === 'exact' ? 0 : Math.max(tolerance.rtol * scale, tolerance.atol);
      if (worst > bound)
        throw new Error(
          `${what}: output '${name}'[${at}] is ${b[at]}, expected ${a[at]} (max |diff| ${worst.toExponential(2)} > ${bound.toExponential(2)})`,
        );
    }
  });
}

/** Some output element differs (planting changed what the model computes). */
function differ(a: Execution, b: Execution): boolean {
  return Object.entries(a.outputs).some(([name, t]) => {
    const [x, y] = [t.data as Float32Array, b.outputs[name]!.data as Float32Array];
    return x.some((v, i) => v !== y[i]);
  });
}

function stage<T>(check: CheckName, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw err instanceof PropertyFailure ? err : new PropertyFailure(check, messageOf(err), { cause: err });
  }
}

async function stageAsync<T>(check: CheckName, fn: () => Promise<T>, label?: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PropertyFailure) throw err;
    throw new PropertyFailure(check, label ? `${label}: ${messageOf(err)}` : messageOf(err), { cause: err });
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
