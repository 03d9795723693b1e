/**
 * `uniform`: equal ResNeXt-style groups (passes/uniform-group.ts), the structure-blind
 * baseline that self-grouping is compared with at the same MACs.
 */
import { uniformGroup } from '../uniform-group.js';
import type { Method, Structured } from './method.js';

export const uniform: Method<Record<string, never>> = {
  name: 'uniform',
  description: 'equal ResNeXt-style groups (baseline)',
  flags: [],
  options: () => ({}),
  async structure(dense, _options, keepMacs, ctx): Promise<Structured> {
    const r = uniformGroup(dense, { keepMacs });
    const layers =
      r.stats.layers
        .filter((l) => l.groups > 1)
        .map((l) => `${l.label}×${l.groups}`)
        .join(', ') || 'none';
    ctx.note(`uniform groups: ${layers}${r.stats.targetMet ? '' : ' (target not reachable with equal groups)'}`);
    return { model: r.model, connectivity: r.connectivity, macsRatio: r.stats.macsRatio };
  },
};
