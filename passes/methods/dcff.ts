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
import { constantOf } from '../../compiler/ir/constants.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node, Value } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { Random } from '../../compiler/util/random.js';
import { applyChannelMap, gather } from '../channel-map.js';
import { fusionCode, fusionTemperature, selectRows, topChannels } from '../filter-fusion.js';
import { planPruning, type PruningPlan } from '../plan-pruning.js';
import { ROUND_TO_FLAG, roundToOf, type Method, type StructureContext, type Structured } from './method.js';
import { fusionHooks, groupFilters, type FusedGroup, type FusedTensor } from './dcff-training.js';

export {
  adoptRefit,
  bakeFusion,
  fusionHooks,
  refreshCodes,
  type FusedGroup,
  type FusedTensor,
} from './dcff-training.js';

export interface DcffOptions {
  /** Re-initialise the weights (He-normal, seeded) before fusing, as the paper trains from scratch. */
  readonly fromScratch: boolean;
  /** Kept channel counts are multiples of this. */
  readonly roundTo: number;
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
