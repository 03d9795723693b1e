/**
 * lower-grouped: turn each self-grouped conv (a masked dense Conv plus its connectivity,
 * from passes/self-group.ts) into ONNX that onnxruntime runs fast. Per layer, one of the
 * forms of passes/lower-emit.ts:
 *   (a) grouped       Conv(group = g), equal groups; permutations folded into channel groups
 *   (a') duplicated   Conv(group = g), equal overlapping groups; the selection of every group's
 *                     inputs folded into the input's producer (passes/fold-selection.ts), which
 *                     must be free (one producer, per-channel ops, read by this conv alone); a
 *                     grouped producer's blocks must line up with the groups
 *   (b) padded        Gather → zero-padded Conv(group = g) → Gather
 *   (c) per-group     Gather/Slice → Conv per cluster → Concat (→ Gather)
 *   (d) masked-dense  the reference itself
 * chosen by the latency model of passes/lower-cost.ts (charged per group, not only per
 * MAC), by a caller's `tune` hook measuring one single-layer model per candidate form, or
 * forced by `form` (a forced form that does not apply falls back to the cheapest that does,
 * and the choice says why).
 *
 * Selections are folded first, wherever they apply (fold-selection.ts foldDuplications; not
 * with fold = false): the folded layers and their grouped producers then read and write their
 * clusters in blocks, and their channel groups are claimed so that no permutation moves them.
 * Layers are decided in order of dense MACs, largest first, because a channel group can be
 * reordered only once (passes/lower-permute.ts): the layer that saves most claims it. The
 * padded form's group width is w = max |I_c| or w rounded up to the SIMD block, and its
 * filters per group m the largest cluster or S·2^k below it (larger clusters split into
 * several groups on the same inputs), whichever the model finds cheapest. All claimed
 * permutations are applied together, connectivities renumbered, then every layer emitted;
 * unused weights are removed at the end. The connectivity table is keyed by Node (never by
 * name: exporters write empty and repeated node names); choices name the caller's nodes
 * and carry a display label.
 */
import { analyzeChannels } from '../compiler/analysis/channel-groups.js';
import { connectivityPairs, isDense, type Connectivity } from '../compiler/analysis/connectivity.js';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes, type InferShapesOptions, type ShapeResult } from '../compiler/analysis/shape-inference.js';
import { RegroupError } from '../compiler/errors.js';
import { constantOf } from '../compiler/ir/constants.js';
import { nodeLabels } from '../compiler/ir/label.js';
import type { Model } from '../compiler/ir/model.js';
import type { Node, Value } from '../compiler/ir/node.js';
import { isFloat } from '../compiler/ir/dtype.js';
import { cleanup } from './cleanup.js';
import { foldDuplications } from './fold-selection.js';
import {
  FORMS,
  groupedRefusal,
  planGrouped,
  planMacsPerPosition,
  planOps,
  planPerGroup,
  emitPlan,
  splitClusters,
  type Form,
  type FormPlan,
} from './lower-emit.js';
import { opsCost, type CostModelOptions, type LayerGeometry } from './lower-cost.js';
import { layerModel } from './lower-layer-model.js';
import { PermutationFolder, renumberConnectivity } from './lower-permute.js';
import { runPasses } from './manager.js';
import type { Pass, PassContext } from './pass.js';

/** Latencies (any unit, lower is faster) of candidate single-layer models, in order. */
export type TuneHook = (candidates: Model[]) => Promise<number[]>;

export interface LowerGroupedOptions {
  /** 'auto' (default): the cost model, or `tune` when given; a form forces it where it applies. */
  form?: Form | 'auto';
  /** Channels per SIMD block of the target (runtime/providers.ts cpuSimdBlock(); default 8). */
  simdBlock?: number;
  /** Batch size the cost model and the tuned layer models assume (default 1). */
  batch?: number;
  /** Fold permutations into channel groups where they are free to reorder (default true). */
  fold?: boolean;
  /** Measures candidate forms per layer (runtime supplies it; passes never run models). */
  tune?: TuneHook;
  inputShapes?: InferShapesOptions['inputShapes'];
}

export interface LayerChoice {
  /** The layer as the caller keyed it: a node of the model handed in (the result may have replaced it). */
  node: Node;
  /** Display label (compiler/ir/label.ts). */
  label: string;
  form: Form;
  reason: string;
  clusters: number;
  /** Modelled latency of every form that applies (MAC-equivalents, see lower-cost.ts). */
  modelled: Partial<Record<Form, number>>;
  /** Tuned latencies, when `tune` was used. */
  measured?: Partial<Record<Form, number>>;
  /** Whether the output / input permutation was folded into its channel group. */
  folded: { output: boolean; input: boolean };
  /** The `group` of the grouped and padded forms' Conv, its group width and filters per group. */
  groups?: number;
  width?: number;
  filtersPerGroup?: number;
  /** MACs of the emitted convs at batch 1 (padding included) and of the dense conv. */
  macs: number;
  denseMacs: number;
  /** Nodes emitted for the layer by op type (empty for masked-dense: the conv stays). */
  emitted: Record<string, number>;
  /** Float weights the lowered layer stores (padding and masked zeros included), counted on the emitted graph. */
  params: number;
}

export interface LowerGroupedResult {
  model: Model;
  choices: LayerChoice[];
}

/** What the pass form reads from its context. */
export interface LowerGroupedContext extends PassContext {
  connectivity?: Map<Node, Connectivity>;
}

/** A layer to lower. */
interface Layer {
  readonly node: Node;
  readonly label: string;
  readonly conn: Connectivity;
  readonly geometry: LayerGeometry;
  readonly denseMacs: number;
  /** [N, C, H, W] of the input at the tuned batch, when static. */
  readonly inputDims: number[] | undefined;
}

/** One applicable form of one layer, planned on the connectivity as it would be after its folds. */
export interface Candidate {
  readonly form: Form;
  readonly plan: FormPlan;
  readonly outOrder: Int32Array | undefined;
  readonly inOrder: Int32Array | undefined;
  readonly cost: number;
}

/** Lower a copy of `model` (connectivity keyed by nodes of `model`); the input model is not changed. */
export async function lowerGrouped(
  model: Model,
  connectivity: ReadonlyMap<Node, Connectivity>,
  options: LowerGroupedOptions = {},
): Promise<LowerGroupedResult> {
  const { model: copy, nodes } = model.clone();
  const onCopy = new Map<Node, Connectivity>();
  const callerNode = new Map<Node, Node>();
  for (const [node, conn] of connectivity) {
    const copied = nodes.get(node);
    if (!copied)
      throw new RegroupError(
        'usage',
        `connectivity names node ${node}, which is not in the model being lowered; lower the model selfGroup returned`,
      );
    onCopy.set(copied, conn);
    callerNode.set(copied, node);
  }
  const lowering = new Lowering(copy, onCopy, options, callerNode);
  for (const layer of lowering.layers) {
    const candidates = lowering.candidates(layer);
    const measured =
      options.tune && (options.form ?? 'auto') === 'auto' ? await measure(copy, layer, candidates, options) : undefined;
    lowering.decide(layer, candidates, measured);
  }
  return { model: copy, choices: lowering.finish() };
}

/** Lower `model` in place with the cost model (no tuning). */
export function lowerGroupedInPlace(
  model: Model,
  connectivity: ReadonlyMap<Node, Connectivity>,
  options: Omit<LowerGroupedOptions, 'tune'> = {},
): LayerChoice[] {
  const lowering = new Lowering(model, connectivity, options);
  for (const layer of lowering.layers) lowering.decide(layer, lowering.candidates(layer), undefined);
  return lowering.finish();
}

/** The pass form: lowers the layers in ctx.connectivity (filled by the self-group pass), then empties it. */
export function lowerGroupedPass(options: Omit<LowerGroupedOptions, 'tune'> = {}): Pass {
  return {
    name: 'lower-grouped',
    run(model, ctx) {
      const table = (ctx as LowerGroupedContext).connectivity;
      if (!table || table.size === 0) {
        ctx.log?.('lower-grouped: no connectivity in the context (run self-group first); nothing to lower');
        return { changed: false };
      }
      const choices = lowerGroupedInPlace(model, table, options);
      const stats = Object.fromEntries(FORMS.map((f) => [f, choices.filter((c) => c.form === f).length]));
      table.clear();
      return { changed: choices.length > 0, stats };
    },
  };
}

async function measure(
  model: Model,
  layer: Layer,
  candidates: readonly Candidate[],
  options: LowerGroupedOptions,
): Promise<Partial<Record<Form, number>> | undefined> {
  if (!layer.inputDims || candidates.length < 2) return undefined;
  const models = candidates.map((c) => layerModel(model, layer.node, layer.inputDims!, c.plan, c.outOrder, c.inOrder));
  const latencies = await options.tune!(models);
  if (latencies.length !== models.length)
    throw new RegroupError(
      'usage',
      `the tune hook returned ${latencies.length} latencies for ${models.length} candidates of '${layer.label}'`,
    );
  return Object.fromEntries(candidates.map((c, i) => [c.form, latencies[i]!]));
}

/** Decisions for one model: candidates, claims, and the final emission. */
class Lowering {
  readonly layers: Layer[];
  readonly #folder: PermutationFolder;
  /** Layers whose input selection was folded into their producer, and why the others' were not. */
  readonly #duplicated: ReadonlySet<Node>;
  readonly #notDuplicated: ReadonlyMap<Node, string>;
  readonly #cost: CostModelOptions;
  readonly #decided = new Map<Layer, { choice: LayerChoice; candidate: Candidate }>();
  readonly #fc: (readonly [Node, LayerChoice])[] = [];
  /** Layer node → position in the graph before lowering, to report choices in model order. */
  readonly #position: Map<Node, number>;
  readonly #labels: Map<Node, string>;

  constructor(
    readonly model: Model,
    connectivity: ReadonlyMap<Node, Connectivity>,
    readonly options: Omit<LowerGroupedOptions, 'tune'>,
    /** The caller's node for each layer node of `model`, when `model` is a copy (identity otherwise). */
    readonly callerNode: ReadonlyMap<Node, Node> = new Map(),
  ) {
    const shapes = inferShapes(model, { inputShapes: options.inputShapes });
    this.#position = new Map(model.graph.nodeList().map((n, i) => [n, i]));
    this.#labels = nodeLabels(model.graph);
    const analysis = analyzeChannels(model, shapes);
    this.#folder = new PermutationFolder(analysis);
    const folds =
      options.fold === false
        ? {
            connectivity,
            folded: new Set<Node>(),
            refusals: new Map([...connectivity.keys()].map((n) => [n, 'fold = false'])),
          }
        : foldDuplications(model, analysis, connectivity);
    [this.#duplicated, this.#notDuplicated] = [folds.folded, folds.refusals];
    // The selections re-indexed these channel groups: no permutation may move them afterwards.
    for (const node of folds.folded) this.#folder.claim(node, 'in', identity(connectivity.get(node)!.inChannels));
    this.#cost = { simdBlock: options.simdBlock ?? 8, batch: options.batch ?? 1 };
    this.layers = this.#collect(folds.connectivity, shapes).sort((a, b) => b.denseMacs - a.denseMacs);
  }

  /** Every form that applies to the layer, planned with the folds still available. */
  candidates(layer: Layer): Candidate[] {
    const { conn, node } = layer;
    if (isDense(conn)) return [this.#candidate(layer, 'masked-dense', conn, undefined, undefined)];
    const outOrder = this.#foldable(node, 'out', Int32Array.from(conn.clusters.flatMap((c) => [...c.filters])));
    const allInputs = conn.clusters.flatMap((c) => [...c.inputs]);
    const inOrder =
      allInputs.length === conn.inChannels ? this.#foldable(node, 'in', Int32Array.from(allInputs)) : undefined;
    const found: Candidate[] = [];
    const grouped = this.#duplicated.has(node) ? 'duplicated' : 'grouped';
    if (!groupedRefusal(conn)) found.push(this.#candidate(layer, grouped, conn, outOrder, inOrder));
    found.push(this.#cheapestPadding(layer, outOrder));
    found.push(this.#candidate(layer, 'per-group', conn, outOrder, undefined));
    found.push(this.#candidate(layer, 'masked-dense', conn, undefined, undefined));
    return found;
  }

  /** Pick a candidate (forced form, tuned latency or modelled cost) and claim its folds. */
  decide(layer: Layer, candidates: readonly Candidate[], measured: Partial<Record<Form, number>> | undefined): void {
    const { candidate, reason } = this.#pick(layer, candidates, measured);
    if (candidate.outOrder) this.#folder.claim(layer.node, 'out', candidate.outOrder);
    if (candidate.inOrder) this.#folder.claim(layer.node, 'in', candidate.inOrder);
    const positions = layer.denseMacs / (layer.conn.outChannels * layer.conn.inChannels * layer.geometry.kernelArea);
    const choice: LayerChoice = {
      node: this.callerNode.get(layer.node) ?? layer.node,
      label: layer.label,
      form: candidate.form,
      reason,
      clusters: layer.conn.clusters.length,
      modelled: Object.fromEntries(candidates.map((c) => [c.form, Math.round(c.cost)])),
      ...(measured ? { measured } : {}),
      folded: { output: candidate.outOrder !== undefined, input: candidate.inOrder !== undefined },
      ...(candidate.plan.form !== 'masked-dense' && candidate.plan.form !== 'per-group'
        ? {
            groups: candidate.plan.clusters.length,
            width: candidate.plan.width,
            filtersPerGroup: candidate.plan.filtersPerGroup,
          }
        : {}),
      macs: Math.round(planMacsPerPosition(candidate.plan, layer.geometry.kernelArea) * positions),
      denseMacs: layer.denseMacs,
      emitted: {},
      params: 0,
    };
    this.#decided.set(layer, { choice, candidate });
  }

  /** Apply the claimed permutations, emit every layer, remove unused weights; the choices in model order. */
  finish(): LayerChoice[] {
    const orders = this.#folder.apply(this.model);
    for (const [layer, { candidate, choice }] of this.#decided) {
      const conn = this.#folder.renumber(layer.node, layer.conn, orders);
      const emitted = emitPlan(this.model, layer.node, replan(candidate, conn));
      for (const node of emitted) choice.emitted[node.opType] = (choice.emitted[node.opType] ?? 0) + 1;
      choice.params = storedParams(emitted.length > 0 ? emitted : [layer.node]);
    }
    runPasses(this.model, [cleanup], {}, { fixpoint: true });
    const entries = [...[...this.#decided].map(([layer, d]) => [layer.node, d.choice] as const), ...this.#fc];
    return entries.sort(([a], [b]) => this.#position.get(a)! - this.#position.get(b)!).map(([, choice]) => choice);
  }

  #pick(
    layer: Layer,
    candidates: readonly Candidate[],
    measured: Partial<Record<Form, number>> | undefined,
  ): { candidate: Candidate; reason: string } {
    const score = (c: Candidate) => measured?.[c.form] ?? c.cost;
    const best = candidates.reduce((a, b) => (score(b) < score(a) ? b : a));
    const forced = this.options.form ?? 'auto';
    if (forced !== 'auto') {
      // A duplicated layer is a grouped conv whose selection was folded: forcing 'grouped' takes it.
      const match = candidates.find((c) => c.form === forced || (forced === 'grouped' && c.form === 'duplicated'));
      if (match) return { candidate: match, reason: `forced '${forced}'` };
      return {
        candidate: best,
        reason: `forced '${forced}' does not apply (${this.#whyNot(layer, forced)}); cheapest modelled form instead`,
      };
    }
    if (candidates.length === 1)
      return {
        candidate: best,
        reason: isDense(layer.conn) ? 'connectivity is dense: nothing to group' : 'only form that applies',
      };
    const scores = candidates
      .map((c) => `${c.form} ${measured ? score(c).toPrecision(3) : formatCost(c.cost)}`)
      .join(', ');
    return {
      candidate: best,
      reason: `${measured ? 'tuned latency' : 'modelled latency (MAC-equivalents)'}: ${scores}`,
    };
  }

  #whyNot(layer: Layer, form: Form): string {
    if (isDense(layer.conn)) return 'connectivity is dense';
    if (form === 'grouped') return groupedRefusal(layer.conn) ?? 'not applicable';
    if (form === 'duplicated')
      return this.#notDuplicated.get(layer.node) ?? groupedRefusal(layer.conn) ?? 'not applicable';
    return 'not applicable';
  }

  /** `order` when folding it is allowed and needed, undefined otherwise (identity needs no fold). */
  #foldable(node: Node, side: 'out' | 'in', order: Int32Array): Int32Array | undefined {
    if (this.options.fold === false || order.every((v, i) => v === i)) return undefined;
    return this.#folder.refusal(node, side, order) ? undefined : order;
  }

  #candidate(
    layer: Layer,
    form: Form,
    conn: Connectivity,
    outOrder: Int32Array | undefined,
    inOrder: Int32Array | undefined,
    padding?: Padding,
  ): Candidate {
    const virtual = renumberConnectivity(conn, outOrder, inOrder);
    const plan = planFor(form, virtual, padding);
    return { form, plan, outOrder, inOrder, cost: opsCost(planOps(plan), layer.geometry, this.#cost) };
  }

  /**
   * The cheapest padded form the model sees: filters per group m = the largest cluster, or a
   * multiple S·2^k below it (big clusters split); width max |I_c|, or rounded up to S.
   */
  #cheapestPadding(layer: Layer, outOrder: Int32Array | undefined): Candidate {
    const block = this.#cost.simdBlock;
    const largest = Math.max(...layer.conn.clusters.map((c) => c.filters.length));
    const widest = Math.max(...layer.conn.clusters.map((c) => c.inputs.length));
    const sizes = [largest];
    for (let m = block; m < largest; m *= 2) sizes.push(m);
    const widths = [...new Set([widest, Math.ceil(widest / block) * block])];
    // Folding the output order removes the last Gather only when no group holds padding filters.
    const fold = (m: number) => (layer.conn.clusters.every((c) => c.filters.length % m === 0) ? outOrder : undefined);
    const options = sizes.flatMap((m) =>
      widths.map((width) =>
        this.#candidate(layer, 'padded', layer.conn, fold(m), undefined, { width, filtersPerGroup: m }),
      ),
    );
    return options.reduce((a, b) => (b.cost < a.cost ? b : a));
  }

  #collect(connectivity: ReadonlyMap<Node, Connectivity>, shapes: ShapeResult): Layer[] {
    const cost = computeCost(this.model, shapes, { batch: 1 });
    const byNode = new Map(cost.layers.map((l) => [l.node, l] as const));
    const layers: Layer[] = [];
    for (const [node, conn] of connectivity) {
      const entry = byNode.get(node);
      if (!entry)
        throw new RegroupError(
          'usage',
          `connectivity names node ${node}, which is not a layer of the model being lowered; lower the model selfGroup returned`,
        );
      const label = this.#labels.get(node) ?? node.name;
      if (entry.node.opType !== 'Conv') {
        this.#fc.push([node, fcChoice(this.callerNode.get(node) ?? node, label, conn, entry.macs)]);
        continue;
      }
      layers.push(this.#layer(entry.node, label, conn, entry.macs, shapes));
    }
    return layers;
  }

  #layer(node: Node, label: string, conn: Connectivity, macs: number, shapes: ShapeResult): Layer {
    const weight = constantOf(node.inputs[1]);
    if (
      !weight ||
      node.getInt('group', 1) !== 1 ||
      weight.dims[0] !== conn.outChannels ||
      weight.dims[1] !== conn.inChannels
    ) {
      throw new RegroupError(
        'usage',
        `'${label}' does not match its connectivity (${conn.outChannels}×${conn.inChannels}, group 1 expected); lower the model selfGroup returned`,
      );
    }
    const kernelArea = weight.size / (conn.outChannels * conn.inChannels);
    const outputPositions = macs / (conn.outChannels * conn.inChannels * kernelArea) || 1;
    const inShape = shapes.typeOf(node.input(0))?.shape;
    const spatial = inShape?.slice(2).every((d) => typeof d === 'number') ? (inShape.slice(2) as number[]) : undefined;
    const inputPositions = spatial ? spatial.reduce((a, b) => a * b, 1) : outputPositions;
    const inputDims = spatial ? [this.options.batch ?? 1, conn.inChannels, ...spatial] : undefined;
    return { node, label, conn, geometry: { kernelArea, inputPositions, outputPositions }, denseMacs: macs, inputDims };
  }
}

/** Group width and filters per group of the padded form. */
interface Padding {
  readonly width: number;
  readonly filtersPerGroup: number;
}

function planFor(form: Form, conn: Connectivity, padding?: Padding): FormPlan {
  switch (form) {
    case 'grouped':
    case 'duplicated':
      return planGrouped(conn, conn.clusters[0]!.inputs.length, form);
    case 'padded':
      return planGrouped(splitClusters(conn, padding!.filtersPerGroup), padding!.width, 'padded');
    case 'per-group':
      return planPerGroup(conn);
    case 'masked-dense':
      return { form, conn };
  }
}

/** The chosen form planned again on the connectivity as the applied permutations left it. */
function replan(candidate: Candidate, conn: Connectivity): FormPlan {
  const plan = candidate.plan;
  return planFor(
    candidate.form,
    conn,
    plan.form === 'padded' ? { width: plan.width, filtersPerGroup: plan.filtersPerGroup } : undefined,
  );
}

function fcChoice(node: Node, label: string, conn: Connectivity, denseMacs: number): LayerChoice {
  const macs = Math.round((denseMacs * connectivityPairs(conn)) / (conn.outChannels * conn.inChannels));
  const folded = { output: false, input: false };
  return {
    node,
    label,
    form: 'masked-dense',
    reason: `${node.opType} layers stay masked dense`,
    clusters: conn.clusters.length,
    modelled: {},
    folded,
    macs,
    denseMacs,
    emitted: {},
    params: storedParams([node]),
  };
}

/** Elements of the float initializers the nodes read (each counted once). */
function storedParams(nodes: readonly Node[]): number {
  const read = new Set(
    nodes.flatMap((n) => n.inputs.filter((v): v is Value => !!v?.isInitializer() && isFloat(v.constValue!.dtype))),
  );
  return [...read].reduce((sum, v) => sum + v.constValue!.size, 0);
}

function identity(length: number): Int32Array {
  return Int32Array.from({ length }, (_, i) => i);
}

function formatCost(cost: number): string {
  return cost >= 1e6 ? `${(cost / 1e6).toFixed(2)}M` : `${Math.round(cost / 1e3)}k`;
}
