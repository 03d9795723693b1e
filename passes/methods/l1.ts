/**
 * `l1` and `l1-uniform`: channel pruning by filter L1 norm (Li et al. 2017), the pruning
 * baselines. `l1` removes the weakest coupled channels under one global threshold until the
 * MACs target is met; `l1-uniform` narrows every prunable channel group by the same fraction.
 * Channel groups (residual Adds, Concat, Flatten → Gemm) are pruned consistently through the
 * channel map (passes/channel-map.ts); the result is a narrower dense model, nothing to lower.
 */
import { analyzeChannels } from '../../compiler/analysis/channel-groups.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import type { Model } from '../../compiler/ir/model.js';
import { channelImportance } from '../importance.js';
import { planPruning, removalSet } from '../plan-pruning.js';
import { budget, removeChannels } from './removal.js';
import { ROUND_TO_FLAG, roundToOf, type Method, type StructureContext, type Structured } from './method.js';

/** Prune a copy of `dense` to `keepMacs` by L1 norm; `uniform` narrows every group alike. */
function pruneL1(
  dense: Model,
  keepMacs: number,
  uniform: boolean,
  roundTo: number,
  ctx: StructureContext,
): { model: Model; macsRatio: number; pruned: number; prunable: number } {
  const model = dense.clone().model;
  const shapes = inferShapes(model);
  const analysis = analyzeChannels(model, shapes);
  const cost = computeCost(model, shapes);
  const prunable = analysis.groups.filter((g) => g.prunable).length;
  if (prunable === 0) return { model, macsRatio: 1, pruned: 0, prunable };
  const options = { ...budget(keepMacs, analysis, cost, ctx), criterion: 'l1' as const, uniform, roundTo };
  const plan = planPruning(analysis, cost, channelImportance(analysis, options), options, 'l1');
  const after = removeChannels(model, analysis, removalSet(plan, analysis, 'plan'));
  return {
    model,
    macsRatio: after / cost.totals.macs,
    pruned: plan.groups.filter((g) => g.removed.length > 0).length,
    prunable,
  };
}

function l1Method(name: 'l1' | 'l1-uniform', description: string): Method<{ roundTo: number }> {
  const uniform = name === 'l1-uniform';
  return {
    name,
    pricesLatency: true,
    description,
    flags: [ROUND_TO_FLAG],
    options: (raw, common) => ({ roundTo: roundToOf(raw, common) }),
    async structure(dense, options, keepMacs, ctx): Promise<Structured> {
      const r = pruneL1(dense, keepMacs, uniform, options.roundTo, ctx);
      const how = uniform ? ' (every group by the same fraction)' : ' (one global threshold)';
      ctx.note(`l1 channel pruning${how}: ${r.pruned} of ${r.prunable} prunable groups narrowed`);
      return { model: r.model, connectivity: new Map(), macsRatio: r.macsRatio };
    },
  };
}

export const l1 = l1Method('l1', 'channel pruning by one global L1 threshold (baseline)');
export const l1Uniform = l1Method(
  'l1-uniform',
  'every channel group pruned by the same fraction of L1-weakest channels (baseline)',
);
