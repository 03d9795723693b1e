/**
 * `sg-exec`: learned self-groups with overlapping inputs that run as Conv(group = g)
 * (passes/self-group-executable.ts). A layer whose input channels only one producing layer
 * computes picks its groups' inputs by importance, sharing allowed; the producer emits the
 * channels each group needs (shared ones twice, unused ones not at all) at unchanged width.
 * Layers reading a residual stream or another shared value keep fixed input blocks. Group
 * counts are powers of two whose groups stay multiples of the SIMD block, doubled where the
 * cost model (passes/lower-cost.ts) saves most latency per MAC until the target is met. The
 * structure is handed on unfolded (overlapping masked convs, channels in the dense order);
 * lowering folds the selections into the producers (passes/fold-selection.ts).
 */
import { executableSelfGroup } from '../self-group-executable.js';
import { convInputActivity } from './activity.js';
import type { Method, Structured } from './method.js';

export const sgExec: Method<Record<string, never>> = {
  name: 'sg-exec',
  description: 'learned overlapping groups that run as Conv(group): shared inputs duplicated by the producing layer',
  flags: [],
  options: () => ({}),
  async structure(dense, _options, keepMacs, ctx): Promise<Structured> {
    const channelMeanAbs = ctx.measure ? await convInputActivity(dense, ctx.measure) : undefined;
    const simdBlock = ctx.common.channelMultiple ?? 8;
    // Unfolded: fine-tuning (local reconstruction matches channels by position) sees the dense
    // model's channel order; the lowering folds the selections (its 'duplicated' form).
    const options = { keepMacs, seed: ctx.common.seed, simdBlock, fold: false };
    const r = executableSelfGroup(dense, options, { channelMeanAbs });
    const grouped = r.stats.layers.filter((l) => l.groups > 1);
    const text = (l: (typeof grouped)[number]) => `${l.label}×${l.groups}${l.inputs === 'selected' ? '*' : ''}`;
    const shared = grouped.reduce((n, l) => n + l.shared, 0);
    const reach = r.stats.targetMet ? '' : ` (target not reachable with groups of ${simdBlock}·k channels)`;
    ctx.note(
      `executable self-grouping: ${grouped.map(text).join(', ') || 'none'} (* inputs selected, ${shared} shared ` +
        `input channels duplicated by their producers; ${channelMeanAbs ? 'data' : 'weight'} importance)${reach}`,
    );
    for (const l of grouped.filter((g) => g.inputRefusal))
      ctx.note(`fixed input blocks: ${l.label} (${l.inputRefusal})`);
    const figures = {
      layersGrouped: grouped.length,
      layersSelected: grouped.filter((l) => l.inputs === 'selected').length,
      sharedInputs: shared,
    };
    return { model: r.model, connectivity: r.connectivity, macsRatio: r.stats.macsRatio, figures };
  },
};
