/**
 * `sg-balanced`: SG-CNN's learned clustering made equal and disjoint, so that every grouped
 * layer lowers to one Conv(group = g) (passes/self-group-balanced.ts). Group counts double on
 * the layers that save the most MACs until the target is met.
 */
import { balancedSelfGroup } from '../self-group-balanced.js';
import { convInputActivity } from './activity.js';
import type { Method, Structured } from './method.js';

export const sgBalanced: Method<Record<string, never>> = {
  name: 'sg-balanced',
  description: 'learned groups made equal and disjoint, so they run as Conv(group)',
  flags: [],
  options: () => ({}),
  async structure(dense, _options, keepMacs, ctx): Promise<Structured> {
    const channelMeanAbs = ctx.measure ? await convInputActivity(dense, ctx.measure) : undefined;
    const b = balancedSelfGroup(dense, { keepMacs, seed: ctx.common.seed }, { channelMeanAbs });
    const layers =
      b.stats.layers
        .filter((l) => l.groups > 1)
        .map((l) => `${l.label}×${l.groups}`)
        .join(', ') || 'none';
    const reach = b.stats.targetMet ? '' : ' (target not reachable with equal groups)';
    ctx.note(`balanced self-grouping: ${layers} (${channelMeanAbs ? 'data' : 'weight'} importance)${reach}`);
    return { model: b.model, connectivity: b.connectivity, macsRatio: b.stats.macsRatio };
  },
};
