/**
 * The common end of the channel-pruning methods: remove a planned set of coupled channels from
 * a model in place through the channel map (every member of a channel group alike), drop what
 * became dead, check the IR, and measure the MACs that remain.
 */
import type { ChannelAnalysis } from '../../compiler/analysis/channel-groups.js';
import { computeCost, type CostReport } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import type { Model } from '../../compiler/ir/model.js';
import { applyChannelMap } from '../channel-map.js';
import { TIDY } from '../index.js';
import { runPasses } from '../manager.js';
import { LatencyPricing } from '../latency-pricing.js';
import type { PlanOptions } from '../plan-pruning.js';
import type { StructureContext } from './method.js';

/** Remove `removed` (coupled channels of `analysis`) from `model` in place; the MACs left. */
export function removeChannels(model: Model, analysis: ChannelAnalysis, removed: ReadonlySet<number>): number {
  applyChannelMap(model, analysis, removed);
  runPasses(model, TIDY, {}, { fixpoint: true });
  model.graph.verify();
  return computeCost(model, inferShapes(model)).totals.macs;
}

/**
 * The planner's target for a channel-pruning method: `keep` of the MACs, or — when the
 * pipeline measured layer latencies (a latency target) — `keep` of the predicted latency,
 * priced by passes/latency-pricing.ts.
 */
export function budget(
  keep: number,
  analysis: ChannelAnalysis,
  cost: CostReport,
  ctx: StructureContext,
): Pick<PlanOptions, 'keepMacs' | 'keepLatency' | 'latency'> {
  if (!ctx.latency) return { keepMacs: keep };
  return { keepLatency: keep, latency: new LatencyPricing(analysis, cost, ctx.latency) };
}
