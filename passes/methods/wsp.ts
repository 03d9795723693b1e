/**
 * WSP — weak sub-network pruning (Guo, Wu, Kittler & Feng, Neural Networks 2021; official code
 * QingbeiGuo/WSP). Stage one, here: score every prunable channel of every layer — convolutions
 * and hidden fully-connected layers (Gemm/MatMul after Flatten) alike — choose the weakest
 * sub-network across all layers at once with one global threshold that reaches the MACs
 * target, and remove it in one shot with the channel map (every channel group — residual
 * Adds, Concats, a conv flattened into a Gemm — pruned consistently). Stage two, global
 * fine-tuning of the strong sub-network, is the pipeline's ordinary fine-tuning.
 *
 *   --criterion saliency      (default) activation and loss-gradient sparsity and magnitude on
 *                             labelled images; needs --data (passes/importance/saliency.ts)
 *   --criterion weight-proxy  the official code's rule: filter and next-layer column l1 both
 *                             below the p-th percentile of their layer, p bisected to the target
 *                             (passes/importance/weight-proxy.ts)
 *
 * The threshold is planPruning's global mode (round-to 1, at least one channel per group);
 * cost after pruning is exact (PruningCost).
 */
import { analyzeChannels, type ChannelAnalysis } from '../../compiler/analysis/channel-groups.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { RegroupError } from '../../compiler/errors.js';
import type { Model } from '../../compiler/ir/model.js';
import { channelImportance, criterionNamed, type ImportanceMeasurements } from '../importance.js';
import { planPruning, removalSet, type PruningPlan } from '../plan-pruning.js';
import { budget, removeChannels } from './removal.js';
import { ROUND_TO_FLAG, roundToOf, type Method, type StructureContext } from './method.js';

export type WspCriterion = 'saliency' | 'weight-proxy';
export const WSP_CRITERIA: readonly WspCriterion[] = ['saliency', 'weight-proxy'];

export interface WspOptions {
  readonly criterion: WspCriterion;
  /** Kept channel counts are multiples of this. */
  readonly roundTo: number;
}

export const WSP_USAGE_WITHOUT_DATA =
  '--method wsp ranks channels by activation and gradient sparsity on labelled images: pass --data, or use --criterion weight-proxy, which needs none';

/** How far the realised MACs fraction may be from the target before a note says why. */
const TARGET_TOLERANCE = 0.03;

export const wsp: Method<WspOptions> = {
  name: 'wsp',
  pricesLatency: true,
  description: 'weak sub-network pruning (Guo et al. 2021): one-shot global channel pruning of conv and FC layers',
  flags: [
    ROUND_TO_FLAG,
    {
      flags: '--criterion <name>',
      key: 'criterion',
      kind: 'choice',
      choices: WSP_CRITERIA,
      description: 'wsp: saliency (activation and gradient sparsity on --data, default) or weight-proxy (weights only)',
    },
  ],
  options(raw, common) {
    const criterion = (raw.criterion ?? 'saliency') as string;
    if (!WSP_CRITERIA.includes(criterion as WspCriterion)) {
      throw new RegroupError(
        'usage',
        `--criterion '${criterion}' is not a wsp criterion; choose one of: ${WSP_CRITERIA.join(', ')}`,
      );
    }
    if (criterion === 'saliency' && !common.hasData) throw new RegroupError('usage', WSP_USAGE_WITHOUT_DATA);
    return { criterion: criterion as WspCriterion, roundTo: roundToOf(raw, common) };
  },
  async structure(dense, options, keepMacs, ctx) {
    const model = dense.clone().model;
    const shapes = inferShapes(model);
    const analysis = analyzeChannels(model, shapes);
    if (analysis.unsupported) throw new RegroupError('unsupported', `wsp: ${analysis.unsupported}`);
    const before = computeCost(model, shapes);
    const measurements = await measure(model, analysis, options.criterion, ctx);
    const scores = channelImportance(analysis, { criterion: options.criterion, measurements });
    const { ceiling } = criterionNamed(options.criterion);
    const plan = planPruning(
      analysis,
      before,
      scores,
      { ...budget(keepMacs, analysis, before, ctx), roundTo: options.roundTo, minChannels: 1, ceiling },
      `wsp ${options.criterion}`,
    );
    const removed = removalSet(plan, analysis, 'wsp plan');
    const summary = prunedLayers(analysis, removed);
    const macsRatio = removeChannels(model, analysis, removed) / before.totals.macs;
    ctx.note(
      `wsp (${options.criterion}): ${summary}; ${plan.groups.filter((g) => g.removed.length > 0).length} of ${plan.groups.length} prunable groups pruned; MACs ${(100 * macsRatio).toFixed(1)}% of dense`,
    );
    if (options.criterion === 'weight-proxy') ctx.note(percentileNote(analysis, scores, removed));
    if (options.criterion === 'saliency') unmeasuredNote(analysis, scores, ctx);
    if (!ctx.latency && Math.abs(macsRatio - keepMacs) > TARGET_TOLERANCE)
      ctx.note(shortfallNote(options.criterion, macsRatio, keepMacs, plan));
    return { model, connectivity: new Map(), macsRatio };
  },
};

async function measure(
  model: Model,
  analysis: ChannelAnalysis,
  criterion: WspCriterion,
  ctx: StructureContext,
): Promise<ImportanceMeasurements> {
  const scorer = criterionNamed(criterion);
  if (!scorer.measuredValues) return {};
  if (!ctx.measure) throw new RegroupError('usage', WSP_USAGE_WITHOUT_DATA);
  const values = scorer.measuredValues(analysis);
  ctx.log(`wsp: measuring activation and gradient sparsity of ${values.length} values on labelled images`);
  const saliency = await ctx.measure.channelSaliency(model, values);
  const samples = [...saliency.values()][0]?.samples ?? 0;
  ctx.note(
    `wsp saliency: ${values.length} activations and their loss gradients measured on ${samples} labelled images`,
  );
  return { saliency };
}

/** "pruned 40 of 96 conv channels (2 layers) and 60 of 128 FC channels (1 layer)": prunable output channels of producer layers. */
export function prunedLayers(analysis: ChannelAnalysis, removed: ReadonlySet<number>): string {
  const tally = { conv: { channels: 0, removed: 0, layers: 0 }, fc: { channels: 0, removed: 0, layers: 0 } };
  for (const t of analysis.touches) {
    if (t.role !== 'out-channels' || t.inputIndex !== 1) continue;
    const kind =
      t.node.opType === 'Conv' || t.node.opType === 'ConvTranspose'
        ? 'conv'
        : t.node.opType === 'Gemm' || t.node.opType === 'MatMul'
          ? 'fc'
          : undefined;
    if (!kind) continue;
    const prunable = Array.from(t.elems).filter((e) => analysis.pinReasons(e).length === 0);
    const gone = prunable.filter((e) => removed.has(analysis.root(e))).length;
    tally[kind].channels += prunable.length;
    tally[kind].removed += gone;
    if (gone > 0) tally[kind].layers++;
  }
  const part = (name: string, x: { channels: number; removed: number; layers: number }) =>
    `${x.removed} of ${x.channels} ${name} channels (${x.layers} layer${x.layers === 1 ? '' : 's'})`;
  return `pruned ${part('conv', tally.conv)} and ${part('FC', tally.fc)}`;
}

/** The percentile p the weight-proxy plan corresponds to: any p in (max removed rank, min kept rank] · 100. */
function percentileNote(
  analysis: ChannelAnalysis,
  scores: ReadonlyMap<number, number>,
  removed: ReadonlySet<number>,
): string {
  let [lastRemoved, firstKept] = [0, 1];
  for (const g of analysis.groups) {
    if (!g.prunable) continue;
    for (const r of g.roots) {
      if (analysis.pinReasons(r).length) continue;
      const s = scores.get(r) ?? 0;
      if (removed.has(r)) lastRemoved = Math.max(lastRemoved, s);
      else firstKept = Math.min(firstKept, s);
    }
  }
  if (removed.size === 0)
    return 'wsp weight-proxy: no channel is below the percentile in both its filter and its next-layer column at this target';
  return `wsp weight-proxy: channels whose filter and next-layer column l1 are both below the p-th percentile of their layer, p ≈ ${(100 * lastRemoved).toFixed(1)}–${(100 * Math.max(firstKept, lastRemoved)).toFixed(1)}`;
}

function unmeasuredNote(analysis: ChannelAnalysis, scores: ReadonlyMap<number, number>, ctx: StructureContext): void {
  const unmeasured = analysis.groups
    .filter((g) => g.prunable)
    .flatMap((g) => [...g.roots])
    .filter((r) => scores.get(r) === Infinity).length;
  if (unmeasured > 0)
    ctx.note(
      `wsp saliency: ${unmeasured} prunable channels have no measurable activation (channels not on axis 1) and were kept`,
    );
}

function shortfallNote(criterion: WspCriterion, achieved: number, target: number, plan: PruningPlan): string {
  const why =
    criterion === 'weight-proxy'
      ? 'the intersection rule cannot remove a channel whose filter or next-layer column is the largest of its layer, and steps in whole channels'
      : 'pinned channels and groups that must keep one channel limit it';
  return `wsp: kept ${(100 * achieved).toFixed(1)}% of MACs instead of ${(100 * target).toFixed(1)}% (${plan.groups.length} prunable groups): ${why}`;
}
