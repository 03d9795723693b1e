/**
 * The pruning planner: which coupled channels to remove so the model keeps a target
 * fraction of its MACs (or parameters).
 *
 * Cost after pruning is exact, not estimated: a Conv/Gemm/MatMul's MACs scale with the
 * product, over the touches on its weight, of the fraction of positions kept
 * (MACs' = MACs · ∏ kept_t / size_t; a depthwise conv has only its output touch), and a
 * touched parameter tensor's size scales the same way.
 *
 * Global mode: one threshold τ over the normalised importance of all prunable channels;
 * each group drops its channels scoring below τ, then rounds its kept count up to a
 * multiple of `roundTo` (never below `minChannels`, never dropping a pinned channel).
 * Uniform mode: every group keeps the same fraction ρ. τ (or ρ) is found by bisection
 * and the plan closest to the target is returned.
 *
 * Latency mode (`keepLatency` with a `LatencyPricing` from measured layer latencies,
 * passes/latency-pricing.ts): the kept fraction is the predicted latency's, and the threshold
 * runs over importance per millisecond saved — score / (s_g / s̄), with s_g the group's
 * marginal saving per channel and s̄ the mean over prunable groups — the Lagrangian of
 * "lose the least importance for the latency budget" when latency is locally linear in each
 * group's width (HALP, Shen et al. 2022, solves the same knapsack with a latency table).
 */
import type { ChannelAnalysis, ChannelGroup, Touch } from '../compiler/analysis/channel-groups.js';
import { countsAsParams, type CostReport } from '../compiler/analysis/cost.js';
import { RegroupError } from '../compiler/errors.js';
import { constantOf } from '../compiler/ir/constants.js';
import type { Node, Value } from '../compiler/ir/node.js';
import type { LatencyPricing } from './latency-pricing.js';

export interface PlanOptions {
  /** Fraction of MACs to keep (0..1]. */
  keepMacs?: number;
  /** Fraction of parameters to keep (0..1]. */
  keepParams?: number;
  /** Fraction of the predicted latency to keep (0..1]; needs `latency`. */
  keepLatency?: number;
  /** Predicted latency from measured layer latencies, for `keepLatency`. */
  latency?: LatencyPricing;
  uniform?: boolean;
  /** Kept channel counts are multiples of this (default 1). */
  roundTo?: number;
  /** Fewest channels a group keeps (default 1). */
  minChannels?: number;
  /**
   * Global mode: channels scoring at or above this are never removed, however far the target
   * (a criterion's rule can forbid them, e.g. weight-proxy's percentile rank 1). Default +∞.
   */
  ceiling?: number;
}

export interface PlanGroup {
  id: number;
  /** The first producer, to check a saved plan against the model it is applied to. */
  producer: string;
  channels: number;
  keep: number;
  /** Positions in the group's channel order (ChannelGroup.roots) to remove. */
  removed: number[];
}

export interface PruningPlan {
  format: 'regroup-prune-plan';
  version: 1;
  criterion: string;
  target: { metric: 'macs' | 'params' | 'latency'; keep: number };
  roundTo: number;
  minChannels: number;
  uniform: boolean;
  predicted: { macsBefore: number; macsAfter: number; paramsBefore: number; paramsAfter: number };
  groups: PlanGroup[];
}

/** One reader of a constant: its slot, and the touches that rewrite the constant there. */
interface TensorUse {
  readonly node: Node;
  readonly inputIndex: number;
  readonly touches: readonly Touch[];
}

/**
 * Exact MACs and parameters for any removal set, from the analysis's touches. Parameters
 * are counted as computeCost counts them (countsAsParams: a Mul/Add constant pruned to one
 * element is no longer per-channel) after the channel map's copy-on-write: a constant read
 * by several nodes leaves one rewritten tensor per reader whose slice changes, plus the
 * original while some reader keeps it whole, each counted once.
 */
export class PruningCost {
  readonly macsBefore: number;
  readonly paramsBefore: number;
  /** A layer's MACs scale with the kept fraction of its weight. */
  readonly #layers: { macs: number; touches: Touch[] }[] = [];
  /** Every constant some touch rewrites, with all of its readers. */
  readonly #tensors: { size: number; uses: TensorUse[] }[] = [];

  constructor(
    private readonly analysis: ChannelAnalysis,
    cost: CostReport,
  ) {
    this.macsBefore = cost.totals.macs;
    this.paramsBefore = cost.totals.params;
    const touchesAt = new Map<Node, Map<number, Touch[]>>();
    for (const t of analysis.touches) {
      if (t.inputIndex < 0 || !['out-channels', 'in-channels', 'per-channel'].includes(t.role)) continue;
      const slots = touchesAt.get(t.node) ?? touchesAt.set(t.node, new Map()).get(t.node)!;
      (slots.get(t.inputIndex) ?? slots.set(t.inputIndex, []).get(t.inputIndex)!).push(t);
    }
    const macsByNode = new Map(cost.layers.map((l) => [l.node, l.macs] as const));
    const seen = new Set<Value>();
    for (const [node, slots] of touchesAt)
      for (const [inputIndex, touches] of slots) {
        if (inputIndex === 1 && (macsByNode.get(node) ?? 0) > 0)
          this.#layers.push({ macs: macsByNode.get(node)!, touches });
        const value = node.inputs[inputIndex];
        if (!value || seen.has(value)) continue;
        seen.add(value);
        const uses = value.uses().map((u) => ({ ...u, touches: touchesAt.get(u.node)?.get(u.inputIndex) ?? [] }));
        this.#tensors.push({ size: constantOf(value)?.size ?? 0, uses });
      }
  }

  /** MACs and parameters after removing the coupled channels in `removed` (root elements); exact integers. */
  evaluate(removed: ReadonlySet<number>): { macs: number; params: number } {
    let macs = this.macsBefore;
    for (const layer of this.#layers) macs += this.#kept(layer.macs, layer.touches, removed) - layer.macs;
    let params = this.paramsBefore;
    for (const { size, uses } of this.#tensors) {
      const counts = (use: TensorUse, elements: number) => countsAsParams(use.node, use.inputIndex, elements);
      let copies = 0;
      let original = false;
      for (const use of uses) {
        const kept = this.#kept(size, use.touches, removed);
        if (kept === size) original ||= counts(use, size);
        else if (counts(use, kept)) copies += kept;
      }
      const before = uses.some((use) => counts(use, size)) ? size : 0;
      params += copies + (original ? size : 0) - before;
    }
    return { macs, params };
  }

  /** base · ∏kept / ∏size over the touches: a whole number of MACs or elements (rounding away float error). */
  #kept(base: number, touches: readonly Touch[], removed: ReadonlySet<number>): number {
    let kept = 1;
    let size = 1;
    for (const t of touches) {
      kept *= keptCount(t.elems, removed, this.analysis);
      size *= t.elems.length;
    }
    return Math.round((base * kept) / size);
  }
}

function keptCount(elems: Int32Array, removed: ReadonlySet<number>, analysis: ChannelAnalysis): number {
  if (removed.size === 0) return elems.length;
  let kept = 0;
  for (const e of elems) if (!removed.has(analysis.root(e))) kept++;
  return kept;
}

/** Plan a pruning that reaches the target as closely as the constraints allow. */
export function planPruning(
  analysis: ChannelAnalysis,
  cost: CostReport,
  importance: ReadonlyMap<number, number>,
  options: PlanOptions,
  criterion = 'l1',
): PruningPlan {
  const metric = options.keepLatency !== undefined ? 'latency' : options.keepParams !== undefined ? 'params' : 'macs';
  const keep = options.keepLatency ?? options.keepParams ?? options.keepMacs;
  const latency = options.latency;
  if (metric === 'latency' && !latency)
    throw new RegroupError('usage', 'a latency target needs measured layer latencies (LatencyPricing)');
  if (keep === undefined || !(keep > 0 && keep <= 1))
    throw new RegroupError('usage', `the kept fraction must be in (0, 1], got ${keep}`);
  let scores = importance;
  const roundTo = Math.max(1, Math.floor(options.roundTo ?? 1));
  const minChannels = Math.max(1, Math.floor(options.minChannels ?? 1));
  const pricing = new PruningCost(analysis, cost);
  const groups = analysis.groups.filter((g) => g.prunable);
  const measure = (removed: Set<number>) => {
    if (metric === 'latency') return latency!.evaluate(removed) / latency!.before;
    const { macs, params } = pricing.evaluate(removed);
    return metric === 'macs' ? macs / pricing.macsBefore : params / pricing.paramsBefore;
  };
  if (metric === 'latency' && !options.uniform) scores = perMillisecond(scores, groups, latency!, roundTo);
  const ceiling = options.uniform ? Infinity : (options.ceiling ?? Infinity);
  const build = (level: number) => {
    const removed = removalAt(
      groups,
      analysis,
      scores,
      Math.min(level, ceiling),
      options.uniform ?? false,
      roundTo,
      minChannels,
    );
    return keepEveryValueAlive(removed, analysis, scores, roundTo);
  };
  // Bisection over the level (threshold τ, or uniform pruned fraction): more level, less kept.
  const levels = options.uniform
    ? undefined
    : [...new Set(groups.flatMap((g) => [...g.roots].map((r) => scores.get(r) ?? 0)))].sort((a, b) => a - b);
  let lo = 0;
  let hi = levels ? levels.length : 1;
  const at = (i: number) => (levels ? (i >= levels.length ? Infinity : levels[i]!) : i);
  for (let step = 0; step < 40 && (levels ? hi - lo > 1 : hi - lo > 1e-4); step++) {
    const mid = levels ? Math.floor((lo + hi) / 2) : (lo + hi) / 2;
    if (measure(build(at(mid))) > keep) lo = mid;
    else hi = mid;
  }
  const candidates = [build(at(lo)), build(at(hi))];
  const best = candidates.reduce((a, b) => (Math.abs(measure(a) - keep) <= Math.abs(measure(b) - keep) ? a : b));
  const predicted = pricing.evaluate(best);
  return {
    format: 'regroup-prune-plan',
    version: 1,
    criterion: options.uniform ? `${criterion} (uniform)` : criterion,
    target: { metric, keep },
    roundTo,
    minChannels,
    uniform: options.uniform ?? false,
    predicted: {
      macsBefore: pricing.macsBefore,
      macsAfter: predicted.macs,
      paramsBefore: pricing.paramsBefore,
      paramsAfter: predicted.params,
    },
    groups: groups.map((g) => planGroup(g, best, analysis)),
  };
}

/** Scores per millisecond saved: each group's scores over its marginal saving relative to the mean (floored at 5% of it). */
function perMillisecond(
  scores: ReadonlyMap<number, number>,
  groups: readonly ChannelGroup[],
  latency: LatencyPricing,
  block: number,
): Map<number, number> {
  const savings = new Map(groups.map((g) => [g, latency.savingPerChannel(g, block)] as const));
  const mean = [...savings.values()].reduce((a, b) => a + b, 0) / Math.max(1, savings.size);
  const weighted = new Map(scores);
  if (!(mean > 0)) return weighted;
  for (const [g, saving] of savings) {
    const weight = Math.max(0.05, saving / mean);
    for (const r of g.roots) weighted.set(r, (scores.get(r) ?? 0) / weight);
  }
  return weighted;
}

/** The removal set at one level: a score threshold (global) or a pruned fraction (uniform). */
function removalAt(
  groups: ChannelGroup[],
  analysis: ChannelAnalysis,
  scores: ReadonlyMap<number, number>,
  level: number,
  uniform: boolean,
  roundTo: number,
  minChannels: number,
): Set<number> {
  const removed = new Set<number>();
  for (const g of groups) {
    const free = [...g.roots]
      .filter((r) => analysis.pinReasons(r).length === 0)
      .sort((a, b) => (scores.get(a) ?? 0) - (scores.get(b) ?? 0));
    const pinned = g.channels - free.length;
    const wanted = uniform
      ? Math.round(g.channels * (1 - level))
      : g.channels - free.filter((r) => (scores.get(r) ?? 0) < level).length;
    let kept = Math.min(g.channels, Math.ceil(Math.max(wanted, minChannels, pinned, 1) / roundTo) * roundTo);
    if (kept > g.channels) kept = g.channels;
    for (const r of free.slice(0, g.channels - kept)) removed.add(r);
  }
  return removed;
}

/**
 * A removal may not empty any value: a Split output, a Concat segment or a branch whose
 * channels all scored low would become zero-sized. Restore the best-scoring channels
 * (up to roundTo of them) of every value that would lose all of its channels.
 */
function keepEveryValueAlive(
  removed: Set<number>,
  analysis: ChannelAnalysis,
  scores: ReadonlyMap<number, number>,
  roundTo: number,
): Set<number> {
  for (const layout of analysis.layouts.values()) {
    const roots = [...new Set(Array.from(layout.elems, (e) => analysis.root(e)))];
    if (roots.length === 0 || roots.some((r) => !removed.has(r))) continue;
    roots.sort((a, b) => (scores.get(b) ?? 0) - (scores.get(a) ?? 0));
    for (const r of roots.slice(0, Math.min(roundTo, roots.length))) removed.delete(r);
  }
  return removed;
}

function planGroup(g: ChannelGroup, removed: ReadonlySet<number>, analysis: ChannelAnalysis): PlanGroup {
  const positions: number[] = [];
  g.roots.forEach((r, i) => {
    if (removed.has(analysis.root(r))) positions.push(i);
  });
  return {
    id: g.id,
    producer: g.producers[0] ?? '',
    channels: g.channels,
    keep: g.channels - positions.length,
    removed: positions,
  };
}

/** Root elements a plan removes, after checking it fits this model's groups. */
export function removalSet(plan: PruningPlan, analysis: ChannelAnalysis, source = 'plan'): Set<number> {
  if (plan.format !== 'regroup-prune-plan' || plan.version !== 1)
    throw new RegroupError('usage', `${source} is not a regroup pruning plan (format/version missing)`);
  const removed = new Set<number>();
  for (const pg of plan.groups) {
    const g = analysis.groups[pg.id];
    if (!g || g.producers[0] !== pg.producer || g.channels !== pg.channels) {
      throw new RegroupError(
        'usage',
        `${source}: group ${pg.id} ('${pg.producer}', ${pg.channels} channels) does not match this model${g ? ` (it has '${g.producers[0]}', ${g.channels} channels)` : ''}; make the plan from this model with --save-plan`,
      );
    }
    for (const position of pg.removed) {
      const r = g.roots[position];
      if (r === undefined) throw new RegroupError('usage', `${source}: group ${pg.id} has no channel ${position}`);
      if (analysis.pinReasons(r).length)
        throw new RegroupError(
          'usage',
          `${source}: channel ${position} of group ${pg.id} is pinned (${analysis.pinReasons(r)[0]})`,
        );
      removed.add(r);
    }
    if (pg.removed.length >= g.channels)
      throw new RegroupError('usage', `${source}: group ${pg.id} would lose every channel`);
  }
  return removed;
}
