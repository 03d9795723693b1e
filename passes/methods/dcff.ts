/**
 * DCFF, dynamic-coded filter fusion (Lin et al. 2021, arXiv 2107.06916; math in
 * passes/filter-fusion.ts): the MACs planner decides how many channels m each channel group
 * keeps (planPruning with keepMacs on mean-normalised L1 scores); DCFF decides which, by the
 * KL score of the fusion code P, and fuses instead of selecting:
 *
 *   producer p of a group with C channels:  W̃_p = P_top · W_p,  b̃_p = P_top · b_p,  P_top = P[top-m, :]
 *
 * Coupled producers (residual Adds, Concat partners) share one P, computed on the concatenation
 * of their flattened filters for each channel. Everything else in the group follows selection
 * of the top-m channels (the limit T → ∞ of fusion): BatchNormalization keeps the top-m
 * channels' parameters, the next layer's input side starts from their slices.
 *
 * Training (the hooks): the training model keeps every producer's full filter bank W_p
 * (C rows; its input side already pruned) as the trainable tensor and computes the compact
 * weight in the graph, Reshape(MatMul(P_top, Reshape(W_p, [C, −1])), [m, …]) — so gradients
 * reach every filter — while the layers after it are sized m. P_top is a fed tensor, refreshed
 * from the current W before every epoch with T(e); rows keep their channel across refreshes
 * where the new top-m still holds it (row r's channel is argmax_k P_top[r, k]: D_jj = 0 is the
 * row minimum), so nothing but the current tensors decides the refresh and a resumed run
 * repeats it. `finish` bakes W̃ = P_top · W into ordinary, narrower Conv/Gemm weights.
 *
 * The kept set is chosen by the KL scores of the dense filters; P_top is computed on the full
 * banks (input side already pruned), and the first epoch's refresh recomputes both from them.
 *
 * A group is fused only when every producer is a plain Conv (group 1) or a Gemm with transB,
 * no channel is pinned, and its members are weights, per-channel parameters, consumers and
 * Concat inputs; other planned groups are pruned by L1 selection, and pinned groups stay —
 * each named with the reason (ctx.note).
 * `fromScratch` (the paper's setting) re-initialises weights He-normal (seeded) first.
 */
import type { ChannelAnalysis, ChannelGroup, Touch } from '../../compiler/analysis/channel-groups.js';
import { analyzeChannels } from '../../compiler/analysis/channel-groups.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { RegroupError } from '../../compiler/errors.js';
import { cholesky, choleskySolve } from '../../compiler/util/linalg.js';
import { constantOf } from '../../compiler/ir/constants.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node, Value } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { Random } from '../../compiler/util/random.js';
import { applyChannelMap, gather } from '../channel-map.js';
import {
  finiteScores,
  fuseRows,
  fusionCode,
  fusionTemperature,
  selectRows,
  topChannels,
  type FilterRows,
} from '../filter-fusion.js';
import { planPruning, type PruningPlan } from '../plan-pruning.js';
import {
  ROUND_TO_FLAG,
  roundToOf,
  type Method,
  type StructureContext,
  type Structured,
  type TrainingHooks,
} from './method.js';

export interface DcffOptions {
  /** Re-initialise the weights (He-normal, seeded) before fusing, as the paper trains from scratch. */
  readonly fromScratch: boolean;
  /** Kept channel counts are multiples of this. */
  readonly roundTo: number;
}

/** One fused producer tensor in the training model: full bank `full` → compact `m` rows through `pTop`. */
export interface FusedTensor {
  /** Initializer holding the full C-row tensor (trainable). */
  readonly full: string;
  /** Initializer holding P_top [m, C] (fed). */
  readonly pTop: string;
  /** Shape of the compact tensor the producer reads ([m, …]). */
  readonly compactDims: readonly number[];
}

/** A fused channel group: its producers' full banks (weights first, in producer order) and its P_top. */
export interface FusedGroup {
  readonly pTop: string;
  readonly channels: number;
  readonly keep: number;
  /** Full weight banks whose rows (flattened, concatenated) are the filters P is computed on. */
  readonly weights: readonly string[];
  readonly tensors: readonly FusedTensor[];
}

const FUSABLE_ROLES = new Set(['out-channels', 'in-channels', 'per-channel', 'concat']);
const FUSION_TEMPERATURE_TEXT = 'from 1 to 1e4 over the fine-tuning epochs';

/** The DCFF method (see the file header). */
export const dcff: Method<DcffOptions> = {
  name: 'dcff',
  description:
    "DCFF filter fusion (Lin et al. 2021): keep each layer's m most distinct filters by KL score and fuse all filters into them",
  flags: [
    ROUND_TO_FLAG,
    {
      flags: '--from-scratch',
      key: 'fromScratch',
      kind: 'boolean',
      description: 'dcff: re-initialise the weights (He-normal, seeded) before fusing, as in the paper',
    },
  ],
  options: (raw, common) => ({ fromScratch: raw.fromScratch === true, roundTo: roundToOf(raw, common) }),
  structure: async (dense, options, keepMacs, ctx) => structureDcff(dense, options, keepMacs, ctx),
};

/** Plan, fuse and build the training model and hooks (see the file header). */
export function structureDcff(dense: Model, options: DcffOptions, keepMacs: number, ctx: StructureContext): Structured {
  const model = dense.clone().model;
  if (options.fromScratch) heInitialize(model, ctx.common.seed);
  const shapes = inferShapes(model);
  const analysis = analyzeChannels(model, shapes);
  if (analysis.unsupported) throw new RegroupError('unsupported', `dcff: ${analysis.unsupported}`);
  const cost = computeCost(model, shapes);
  const plan = planPruning(analysis, cost, l1Scores(analysis), { keepMacs, roundTo: options.roundTo }, 'dcff');
  const layout = chooseChannels(plan, analysis, ctx);
  const fullBanks = collectFullBanks(layout.fused, analysis, layout.removed);
  applyChannelMap(model, analysis, layout.removed);
  const groups = layout.fused.map((f) => insertFusion(model, f, fullBanks));
  model.graph.sort();
  const hooks = fusionHooks(model, groups);
  const structured = hooks.finish!(model);
  const macsAfter = computeCost(structured, inferShapes(structured)).totals.macs;
  const tensors = groups.reduce((n, g) => n + g.tensors.length, 0);
  ctx.note(
    `dcff: ${groups.length} channel group(s) fused (${tensors} tensors), ${layout.selected} pruned by L1 selection; T ${FUSION_TEMPERATURE_TEXT}`,
  );
  const result = { model: structured, connectivity: new Map(), macsRatio: macsAfter / cost.totals.macs };
  return groups.length > 0 ? { ...result, hooks } : result;
}

/** A group to fuse: its producers (with their positions of each group channel) and the kept channels. */
interface GroupFusion {
  readonly group: ChannelGroup;
  readonly producers: readonly Node[];
  /** For each producer, the position on its output axis of each group channel (g.roots order). */
  readonly positions: readonly (readonly number[])[];
  /** Group channel indices kept, in the order the channel map leaves them (row r of P_top). */
  readonly rows: readonly number[];
}

/** Which root elements go: KL top-m for fusable groups, the plan's L1 choice for the others. */
function chooseChannels(
  plan: PruningPlan,
  analysis: ChannelAnalysis,
  ctx: StructureContext,
): { removed: Set<number>; fused: GroupFusion[]; selected: number } {
  const removed = new Set<number>();
  const fused: GroupFusion[] = [];
  let selected = 0;
  for (const group of analysis.groups) {
    if (group.prunable) continue;
    ctx.note(
      `dcff: group of ${group.producers[0]} (${group.channels} channels) stays: pinned (${group.reasons[0] ?? 'no prunable channel'})`,
    );
  }
  for (const pg of plan.groups) {
    if (pg.keep >= pg.channels) continue;
    const group = analysis.groups[pg.id]!;
    const fusable = fusableProducers(group, analysis);
    if (typeof fusable === 'string') {
      ctx.note(
        `dcff: group of ${group.producers[0]} (${pg.channels} → ${pg.keep} channels) pruned by L1 selection, not fused: ${fusable}`,
      );
      for (const position of pg.removed) removed.add(group.roots[position]!);
      selected++;
      continue;
    }
    const code = fusionCode(
      groupFilters(
        fusable.map((p) => constantOf(p.node.inputs[1])!),
        fusable.map((p) => p.positions),
      ),
      fusionTemperature(0, 1),
    );
    const top = new Set(topChannels(code.scores, pg.keep));
    group.roots.forEach((root, channel) => {
      if (!top.has(channel)) removed.add(root);
    });
    const rows = channelsByPosition(fusable[0]!.positions).filter((channel) => top.has(channel));
    fused.push({ group, producers: fusable.map((p) => p.node), positions: fusable.map((p) => p.positions), rows });
  }
  return { removed, fused, selected };
}

/** The group's producers with the position of each group channel, or why the group cannot be fused. */
function fusableProducers(
  group: ChannelGroup,
  analysis: ChannelAnalysis,
): { node: Node; positions: number[] }[] | string {
  if (group.prunableChannels < group.channels)
    return `${group.channels - group.prunableChannels} channel(s) pinned (${group.reasons[0]})`;
  const touches = analysis.touches.filter((t) => t.elems.some((e) => analysis.groupOf(e) === group));
  const odd = touches.find((t) => !FUSABLE_ROLES.has(t.role));
  if (odd)
    return `${odd.node.opType} '${odd.node.name}' (${odd.role}) is not a plain conv/gemm producer, weight or per-channel member`;
  const producers: { node: Node; positions: number[] }[] = [];
  const rootIndex = new Map(Array.from(group.roots, (r, channel) => [r, channel] as const));
  for (const t of touches.filter((t) => t.role === 'out-channels' && t.inputIndex === 1)) {
    const why = producerProblem(t);
    if (why) return why;
    if (t.elems.length !== group.channels)
      return `'${t.node.name}' produces ${t.elems.length} of the group's ${group.channels} channels`;
    const positions = new Array<number>(group.channels);
    t.elems.forEach((e, position) => (positions[rootIndex.get(analysis.root(e))!] = position));
    producers.push({ node: t.node, positions });
  }
  if (producers.length === 0) return 'no producer weight';
  const order = (positions: readonly number[]) => channelsByPosition(positions).join(',');
  if (producers.some((p) => order(p.positions) !== order(producers[0]!.positions)))
    return 'its producers order the coupled channels differently';
  return producers;
}

/** Group channels in the order of their positions on a producer's output axis. */
function channelsByPosition(positions: readonly number[]): number[] {
  return positions
    .map((position, channel) => [position, channel] as const)
    .sort((a, b) => a[0] - b[0])
    .map(([, channel]) => channel);
}

function producerProblem(t: Touch): string | undefined {
  const { node } = t;
  if (node.opType === 'Conv' && node.getInt('group', 1) === 1 && t.axis === 0) return undefined;
  if (node.opType === 'Gemm' && t.axis === 0) return undefined;
  return `${node.opType} '${node.name}' is not a plain conv (group 1) or a Gemm with transB`;
}

/** The rows P is computed on: for each group channel, every producer's filter concatenated. */
function groupFilters(weights: readonly Tensor[], positions: readonly (readonly number[])[]): FilterRows {
  const channels = positions[0]!.length;
  const sizes = weights.map((w) => w.size / w.dims[0]!);
  const dim = sizes.reduce((a, b) => a + b, 0);
  const data = new Float64Array(channels * dim);
  weights.forEach((w, p) => {
    const values = w.toFloat64();
    const offset = sizes.slice(0, p).reduce((a, b) => a + b, 0);
    for (let channel = 0; channel < channels; channel++) {
      const from = positions[p]![channel]! * sizes[p]!;
      data.set(values.subarray(from, from + sizes[p]!), channel * dim + offset);
    }
  });
  return { rows: channels, dim, data };
}

/** Mean-normalised L1 of each coupled channel's producer filters (the planner's scores, by root element). */
export function l1Scores(analysis: ChannelAnalysis): Map<number, number> {
  const sums = new Map<number, number>();
  for (const t of analysis.touches) {
    if (t.role !== 'out-channels' || t.inputIndex !== 1) continue;
    const w = constantOf(t.node.inputs[1]);
    if (!w) continue;
    const values = w.toFloat64();
    const rows = slicesAlong(w.dims, t.axis, t.elems.length);
    t.elems.forEach((e, position) => {
      let sum = 0;
      for (const k of rows(position)) sum += Math.abs(values[k]!);
      sums.set(analysis.root(e), (sums.get(analysis.root(e)) ?? 0) + sum);
    });
  }
  const scores = new Map<number, number>();
  for (const g of analysis.groups) {
    const mean = Array.from(g.roots, (r) => sums.get(r) ?? 0).reduce((a, b) => a + b, 0) / Math.max(1, g.channels);
    for (const r of g.roots) scores.set(r, mean > 0 ? (sums.get(r) ?? 0) / mean : 0);
  }
  return scores;
}

/** Flat indices of slice `position` along `axis` (`count` positions on that axis, possibly a group's share). */
function slicesAlong(dims: readonly number[], axis: number, count: number): (position: number) => Generator<number> {
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const axisSize = dims[axis]!;
  return function* (position: number) {
    if (position >= axisSize || count > axisSize) return;
    for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) yield (o * axisSize + position) * inner + i;
  };
}

/** A producer input's full bank: its name before the channel map and its C rows in group channel order. */
interface Bank {
  readonly name: string;
  readonly tensor: Tensor;
}

/** The full banks (weight, bias) of every fused producer: input side pruned, rows in group channel order. */
function collectFullBanks(
  fused: readonly GroupFusion[],
  analysis: ChannelAnalysis,
  removed: ReadonlySet<number>,
): Map<Node, Map<number, Bank>> {
  const banks = new Map<Node, Map<number, Bank>>();
  for (const f of fused) {
    f.producers.forEach((node, p) => {
      const byInput = new Map<number, Bank>();
      for (const inputIndex of [1, 2]) {
        const tensor = constantOf(node.inputs[inputIndex]);
        if (!tensor) continue;
        let full = tensor;
        for (const t of analysis.touches) {
          if (t.node !== node || t.inputIndex !== inputIndex || t.role === 'out-channels') continue;
          const keep = [...t.elems.keys()].filter((position) => !removed.has(analysis.root(t.elems[position]!)));
          if (keep.length < t.elems.length) full = gather(full, t.axis, keep);
        }
        byInput.set(inputIndex, { name: node.inputs[inputIndex]!.name, tensor: gather(full, 0, f.positions[p]!) });
      }
      banks.set(node, byInput);
    });
  }
  return banks;
}

/** Insert the Reshape(MatMul(P_top, Reshape(W, [C, −1])), [m, …]) chains of one group (after the channel map). */
function insertFusion(model: Model, f: GroupFusion, banks: ReadonlyMap<Node, ReadonlyMap<number, Bank>>): FusedGroup {
  const graph = model.graph;
  const channels = f.group.channels;
  const identity = Array.from({ length: channels }, (_, c) => c);
  const code = fusionCode(
    groupFilters(
      f.producers.map((node) => banks.get(node)!.get(1)!.tensor),
      f.producers.map(() => identity),
    ),
    fusionTemperature(0, 1),
  );
  const pTop = Tensor.fromArray(DataType.FLOAT, [f.rows.length, channels], Float32Array.from(selectRows(code, f.rows)));
  const pValue = graph.addInitializer(`${banks.get(f.producers[0]!)!.get(1)!.name}.p_top`, pTop, { fresh: true });
  const tensors: FusedTensor[] = [];
  const weights: string[] = [];
  for (const node of f.producers) {
    for (const [inputIndex, bank] of banks.get(node)!) {
      const compact = node.inputs[inputIndex]!;
      const fullValue = graph.addInitializer(`${bank.name}.full`, bank.tensor, { fresh: true });
      const compactDims = [...compact.constValue!.dims];
      node.setInput(inputIndex, fusionChain(model, node, fullValue, pValue, compactDims));
      if (compact.useCount === 0 && compact.isInitializer()) graph.removeInitializer(compact);
      tensors.push({ full: fullValue.name, pTop: pValue.name, compactDims });
      if (inputIndex === 1) weights.push(fullValue.name);
    }
  }
  return { pTop: pValue.name, channels, keep: f.rows.length, weights, tensors };
}

/** Nodes computing the compact tensor from the full bank; returns its value. */
function fusionChain(model: Model, consumer: Node, full: Value, pTop: Value, compactDims: readonly number[]): Value {
  const graph = model.graph;
  const channels = full.constValue!.dims[0]!;
  const shape = (name: string, dims: readonly number[]) =>
    graph.addInitializer(name, Tensor.int64([dims.length], dims), { fresh: true });
  const add = (opType: string, inputs: Value[], suffix: string, dims: readonly number[]) => {
    const node = graph.createNode(opType, inputs, { name: graph.names.fresh(`${full.name}/${suffix}`) });
    graph.insertBefore(consumer, node);
    node.output(0).type = { dtype: DataType.FLOAT, shape: [...dims] };
    return node.output(0);
  };
  const rowSize = full.constValue!.size / channels;
  const flat = add('Reshape', [full, shape(`${full.name}.rows_shape`, [channels, rowSize])], 'rows', [
    channels,
    rowSize,
  ]);
  const fused = add('MatMul', [pTop, flat], 'fuse', [compactDims[0]!, rowSize]);
  return add('Reshape', [fused, shape(`${full.name}.compact_shape`, compactDims)], 'compact', compactDims);
}

/** The training hooks of a fused model (see the file header). */
export function fusionHooks(model: Model, groups: readonly FusedGroup[]): TrainingHooks {
  return {
    model,
    frozen: groups.map((g) => g.pTop),
    trainable: groups.flatMap((g) => g.tensors.map((t) => t.full)),
    // Epoch 0's codes are the ones the structure was built with (T(0) on the starting filters);
    // keeping them keeps a refit adopted before training (hooks.adopt) exact for that epoch.
    beforeEpoch: (epoch, epochs, current) =>
      epoch === 0 ? undefined : refreshCodes(groups, fusionTemperature(epoch, epochs), current),
    finish: (trained) => bakeFusion(trained, groups),
    adopt: (refitted) => adoptRefit(model, groups, refitted),
  };
}

/**
 * The training model carrying a refit of its baked form (the local phase's least squares):
 * every other initializer is copied by name, and each full bank W moves by the least change
 * (minimum Frobenius norm) that makes its fusion equal the refitted compact tensor W̃':
 *
 *   W ← W + P_topᵀ (P_top P_topᵀ)⁻¹ (W̃' − P_top W)
 *
 * so the training graph's forward equals the refitted model's and the filters keep their
 * part of W that the fusion does not see.
 */
export function adoptRefit(training: Model, groups: readonly FusedGroup[], refitted: Model): Model {
  const compactNames = bakedNames(training, groups);
  const model = training.clone().model;
  const [graph, source] = [model.graph, refitted.graph];
  const fusion = new Set(groups.flatMap((g) => [g.pTop, ...g.tensors.map((t) => t.full)]));
  for (const [name, value] of graph.initializers) {
    const refit = source.initializers.get(name)?.constValue;
    if (fusion.has(name) || !refit || refit.dims.join(',') !== value.constValue?.dims.join(',')) continue;
    graph.setInitializer(value, Tensor.fromArray(refit.dtype, refit.dims, refit.data.slice(), { name }));
  }
  for (const g of groups) {
    const pTop = graph.initializers.get(g.pTop)!.constValue!.toFloat64();
    for (const t of g.tensors) {
      const target = source.initializers.get(compactNames.get(t.full)!)?.constValue;
      if (!target)
        throw new RegroupError(
          'invalid-ir',
          `dcff: the refitted model has no '${compactNames.get(t.full)}'; it is not this structure's baked model`,
        );
      const full = graph.initializers.get(t.full)!;
      const moved = leastChange(pTop, g.keep, full.constValue!.toFloat64(), g.channels, target.toFloat64());
      graph.setInitializer(
        full,
        Tensor.fromArray(DataType.FLOAT, full.constValue!.dims, Float32Array.from(moved), { name: t.full }),
      );
    }
  }
  return model;
}

/** W + Pᵀ(PPᵀ)⁻¹(target − P·W) for P [m, C], W [C, K], target [m, K]. */
function leastChange(
  p: Float64Array,
  m: number,
  w: Float64Array,
  channels: number,
  target: Float64Array,
): Float64Array {
  const rowSize = w.length / channels;
  const residual = fuseRows(p, m, w, channels).map((v, i) => target[i]! - v);
  const gram = new Float64Array(m * m);
  for (let a = 0; a < m; a++) {
    for (let b = 0; b < m; b++) {
      let dot = 0;
      for (let c = 0; c < channels; c++) dot += p[a * channels + c]! * p[b * channels + c]!;
      gram[a * m + b] = dot;
    }
  }
  const x = choleskySolve(cholesky(gram, m, 'P_top·P_topᵀ'), m, residual, rowSize);
  const out = Float64Array.from(w);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < channels; c++) {
      const coefficient = p[r * channels + c]!;
      if (coefficient === 0) continue;
      for (let d = 0; d < rowSize; d++)
        out[c * rowSize + d] = out[c * rowSize + d]! + coefficient * x[r * rowSize + d]!;
    }
  }
  return out;
}

/** Full bank name → the name of its compact tensor in the baked model (as bakeFusion names it). */
function bakedNames(training: Model, groups: readonly FusedGroup[]): Map<string, string> {
  const baked = bakeFusion(training, groups).graph;
  const names = new Map<string, string>();
  for (const t of groups.flatMap((g) => g.tensors)) {
    const base = t.full.endsWith('.full') ? t.full.slice(0, -'.full'.length) : t.full;
    const keys = [...baked.initializers.keys()];
    const match = keys.find((n) => n.startsWith(`${base}.fused`)) ?? keys.find((n) => n === base);
    if (!match) throw new RegroupError('invalid-ir', `dcff: no baked tensor for '${t.full}'`);
    names.set(t.full, match);
  }
  return names;
}

/** New P_top of every group from the current banks at temperature T; rows keep their channel where they can. */
export function refreshCodes(
  groups: readonly FusedGroup[],
  temperature: number,
  current: (name: string) => Tensor,
): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const g of groups) {
    const identity = Array.from({ length: g.channels }, (_, c) => c);
    const code = fusionCode(
      groupFilters(
        g.weights.map(current),
        g.weights.map(() => identity),
      ),
      temperature,
    );
    const previous = rowChannels(current(g.pTop), g.channels);
    const rows = finiteScores(code.scores) ? assignRows(previous, topChannels(code.scores, g.keep)) : previous;
    const pTop = selectRows(code, rows);
    if (pTop.every(Number.isFinite))
      out.set(g.pTop, Tensor.fromArray(DataType.FLOAT, [g.keep, g.channels], Float32Array.from(pTop)));
  }
  return out;
}

/** Row r's channel: argmax_k P_top[r, k] (the diagonal of P is its row maximum). */
function rowChannels(pTop: Tensor, channels: number): number[] {
  const values = pTop.toFloat64();
  return Array.from({ length: values.length / channels }, (_, r) => {
    let best = 0;
    for (let c = 1; c < channels; c++) if (values[r * channels + c]! > values[r * channels + best]!) best = c;
    return best;
  });
}

/** Rows whose channel stays in `top` keep it; the new channels fill the other rows in ascending order. */
function assignRows(previous: readonly number[], top: readonly number[]): number[] {
  const wanted = new Set(top);
  const kept = new Set(previous.filter((c) => wanted.has(c)));
  const incoming = top.filter((c) => !kept.has(c)).sort((a, b) => a - b);
  return previous.map((c) => (kept.has(c) && wanted.delete(c) ? c : incoming.shift()!));
}

/** The inference model: every fusion chain replaced by W̃ = P_top · W as a plain initializer. */
export function bakeFusion(trained: Model, groups: readonly FusedGroup[]): Model {
  const model = trained.clone().model;
  const graph = model.graph;
  for (const g of groups) {
    for (const t of g.tensors) {
      const full = graph.initializers.get(t.full);
      const pTop = graph.initializers.get(t.pTop)?.constValue;
      if (!full?.constValue || !pTop) {
        throw new RegroupError(
          'invalid-ir',
          `dcff: the trained model has no '${t.full}' or '${t.pTop}'; it is not the model the hooks built`,
        );
      }
      const baked = fuseRows(pTop.toFloat64(), g.keep, full.constValue.toFloat64(), g.channels);
      replaceChain(model, full, Tensor.fromArray(DataType.FLOAT, t.compactDims, Float32Array.from(baked)));
    }
    const p = graph.initializers.get(g.pTop);
    if (p && p.useCount === 0) graph.removeInitializer(p);
  }
  return model;
}

/** Replace full → Reshape → MatMul → Reshape by one initializer holding `baked`, named after the full bank. */
function replaceChain(model: Model, full: Value, baked: Tensor): void {
  const graph = model.graph;
  const rows = full.uses()[0]?.node;
  const fuse = rows?.output(0).uses()[0]?.node;
  const compact = fuse?.output(0).uses()[0]?.node;
  if (!rows || !fuse || !compact || full.useCount !== 1 || compact.opType !== 'Reshape') {
    throw new RegroupError(
      'invalid-ir',
      `dcff: '${full.name}' does not feed a Reshape → MatMul → Reshape fusion chain`,
    );
  }
  const name = full.name.endsWith('.full') ? full.name.slice(0, -'.full'.length) : full.name;
  const value = graph.addInitializer(graph.names.has(name) ? `${name}.fused` : name, baked, {
    fresh: graph.names.has(name),
  });
  compact.output(0).replaceAllUsesWith(value);
  for (const node of [compact, fuse, rows]) {
    const shapes = node.inputs.slice(1).filter((v): v is Value => !!v && v.isInitializer() && v !== full);
    graph.remove(node);
    for (const v of shapes) if (v.useCount === 0 && v.constValue?.dtype === DataType.INT64) graph.removeInitializer(v);
  }
  graph.removeInitializer(full);
}

/** He-normal weights (std √(2 / fan_in)), zero biases, identity BatchNormalization — seeded. */
function heInitialize(model: Model, seed: number): void {
  const random = new Random(seed);
  const graph = model.graph;
  const set = (value: Value | undefined, make: (t: Tensor) => Float32Array) => {
    const tensor = constantOf(value);
    if (value?.isInitializer() && tensor?.dtype === DataType.FLOAT)
      graph.setInitializer(value, Tensor.fromArray(DataType.FLOAT, tensor.dims, make(tensor)));
  };
  const fill = (v: number) => (t: Tensor) => new Float32Array(t.size).fill(v);
  for (const node of graph.nodes()) {
    if (node.opType === 'Conv' || node.opType === 'Gemm') {
      set(node.inputs[1], (t) => random.normals(t.size, Math.sqrt(2 / fanIn(node, t))));
      set(node.inputs[2], fill(0));
    } else if (node.opType === 'BatchNormalization') {
      [1, 2, 3, 4].forEach((inputIndex) =>
        set(node.inputs[inputIndex], fill(inputIndex === 1 || inputIndex === 4 ? 1 : 0)),
      );
    }
  }
}

function fanIn(node: Node, weight: Tensor): number {
  if (node.opType === 'Gemm') return weight.dims[node.getInt('transB', 0) === 1 ? 1 : 0]!;
  return weight.size / weight.dims[0]!;
}
