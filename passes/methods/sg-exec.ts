/**
 * `sg-exec`: learned self-groups with overlapping inputs that run as Conv(group = g)
 * (passes/self-group-executable.ts). A layer whose input channels only one producing layer
 * computes picks its groups' inputs by importance, sharing allowed; the producer emits the
 * channels each group needs (shared ones twice, unused ones not at all) at unchanged width.
 * Layers reading a residual stream or another shared value keep fixed input blocks. Group
 * counts are powers of two whose groups stay multiples of the SIMD block. Without data they
 * are doubled where the cost model (passes/lower-cost.ts) saves most latency per MAC; with
 * data each layer is first grouped alone at every count and the KL divergence of the output
 * from the dense model's measured, and doublings that save modelled latency are taken by least
 * divergence per MAC saved, until the target is met. The structure is handed on unfolded
 * (overlapping masked convs, channels in the dense order: local reconstruction matches
 * channels by position); lowering folds the selections into the producers
 * (passes/fold-selection.ts, the 'duplicated' form).
 */
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node, Value } from '../../compiler/ir/node.js';
import { executableGroupCounts, executableSelfGroup } from '../self-group-executable.js';
import { convInputActivity } from './activity.js';
import type { Method, StructureContext, Structured } from './method.js';

/** MACs one scan evaluation may spend (as sg-cnn's scan): 256 images for small models, down to 32. */
const SCAN_MACS = 2e10;

export const sgExec: Method<Record<string, never>> = {
  name: 'sg-exec',
  description: 'learned overlapping groups that run as Conv(group): shared inputs duplicated by the producing layer',
  flags: [],
  options: () => ({}),
  async structure(dense, _options, keepMacs, ctx): Promise<Structured> {
    const channelMeanAbs = ctx.measure ? await convInputActivity(dense, ctx.measure) : undefined;
    const simdBlock = ctx.common.channelMultiple ?? 8;
    const base = { keepMacs, seed: ctx.common.seed, simdBlock, fold: false };
    const sensitivity = ctx.measure ? await sensitivityScan(dense, base, channelMeanAbs, ctx) : undefined;
    const r = executableSelfGroup(dense, { ...base, sensitivity }, { channelMeanAbs });
    const grouped = r.stats.layers.filter((l) => l.groups > 1);
    const text = (l: (typeof grouped)[number]) => `${l.label}×${l.groups}${l.inputs === 'selected' ? '*' : ''}`;
    const shared = grouped.reduce((n, l) => n + l.shared, 0);
    const reach = r.stats.targetMet ? '' : ` (target not reachable with groups of ${simdBlock}·k channels)`;
    const by = sensitivity ? 'by KL sensitivity' : 'by modelled latency';
    ctx.note(
      `executable self-grouping ${by}: ${grouped.map(text).join(', ') || 'none'} (* inputs selected, ${shared} ` +
        `shared input channels duplicated by their producers; ${channelMeanAbs ? 'data' : 'weight'} importance)${reach}`,
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

/** KL divergence from the dense output of every layer grouped alone at every count it may take. */
async function sensitivityScan(
  dense: Model,
  base: { keepMacs: number; seed: number; simdBlock: number },
  channelMeanAbs: ReadonlyMap<Value, Float64Array> | undefined,
  ctx: StructureContext,
): Promise<Map<Node, Map<number, number>>> {
  const counts = executableGroupCounts(dense, base);
  const macs = computeCost(dense, inferShapes(dense)).totals.macs;
  const samples = Math.max(32, Math.min(256, Math.floor(SCAN_MACS / macs)));
  const probe = await ctx.measure!.divergenceProbe(dense, samples);
  const table = new Map<Node, Map<number, number>>();
  for (const [node, list] of counts) {
    const byGroups = new Map<number, number>();
    for (const groups of list) {
      const alone = executableSelfGroup(
        dense,
        { ...base, keepMacs: 1, fold: false, only: { node, groups } },
        { channelMeanAbs },
      );
      byGroups.set(groups, await probe.divergence(alone.model));
    }
    table.set(node, byGroups);
    ctx.log(
      `sensitivity ${table.size}/${counts.size}: ${node.name} ${[...byGroups].map(([g, kl]) => `×${g} ${kl.toExponential(2)}`).join(', ')}`,
    );
  }
  ctx.note(
    `group counts by sensitivity: each layer grouped alone, KL divergence from the dense output on ${samples} training images`,
  );
  return table;
}
