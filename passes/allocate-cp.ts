/**
 * allocate-cp: per-layer SG-CNN percentiles under one MACs budget, from measured costs.
 *
 * Each layer offers levels (cp, MACs at that cp, cost — e.g. the output divergence when that
 * layer alone is grouped at cp). Starting from every layer's lowest cp, the allocation
 * repeatedly takes the step with the least cost per MAC saved,
 *     argmin over layers l and levels j above l's current level i of
 *         (cost_l,j − cost_l,i) / (MACs_l,i − MACs_l,j),
 * (looking past the next level, so that a layer whose curve is flat after a bump still
 * gets cut — the lower convex hull of each layer's cost curve), until the total fits. The
 * last step usually overshoots; when the layer can be thresholded at any cp, its cp is then
 * bisected between the two levels to the largest MACs that still fit. Costs are assumed to
 * add up across layers (the usual sensitivity-analysis approximation, Li et al. 2017).
 * Layers are keyed by whatever identifies them to the caller — a Node, never a node name
 * (exported models have empty and repeated names).
 */
import type { Node } from '../compiler/ir/node.js';

export interface AllocationLevel {
  readonly cp: number;
  readonly macs: number;
  readonly cost: number;
}

export interface AllocationLayer<K = Node> {
  readonly node: K;
  /** Levels by rising cp (falling MACs); the first is where the layer starts. */
  readonly levels: readonly AllocationLevel[];
  /** MACs at any cp in [0, 100], for the final refinement (optional). */
  readonly macsAt?: (cp: number) => number;
}

export interface Allocation<K = Node> {
  /** cp per layer. */
  readonly cps: Map<K, number>;
  /** Total MACs: the fixed part plus every layer at its cp. */
  readonly macs: number;
  /** Summed cost of the chosen levels (before refinement). */
  readonly cost: number;
  /** False when every layer at its highest level still exceeds the budget. */
  readonly targetMet: boolean;
}

const REFINE_STEPS = 30;

/** Choose a cp per layer so that fixedMacs + Σ MACs ≤ budget at the least summed cost. */
export function allocateCps<K = Node>(
  layers: readonly AllocationLayer<K>[],
  fixedMacs: number,
  budget: number,
): Allocation<K> {
  const at = layers.map(() => 0);
  let total = fixedMacs + layers.reduce((sum, l) => sum + l.levels[0]!.macs, 0);
  let last: { layer: number; from: number } | undefined;
  while (total > budget) {
    let best: { layer: number; level: number; saved: number; rate: number } | undefined;
    layers.forEach((layer, l) => {
      const here = layer.levels[at[l]!]!;
      for (let j = at[l]! + 1; j < layer.levels.length; j++) {
        const there = layer.levels[j]!;
        const saved = here.macs - there.macs;
        if (!(saved > 0)) continue;
        const rate = (there.cost - here.cost) / saved;
        if (!best || rate < best.rate) best = { layer: l, level: j, saved, rate };
      }
    });
    if (!best) break;
    last = { layer: best.layer, from: at[best.layer]! };
    total -= best.saved;
    at[best.layer] = best.level;
  }
  const cps = new Map(layers.map((layer, l) => [layer.node, layer.levels[at[l]!]!.cp]));
  const cost = layers.reduce((sum, layer, l) => sum + layer.levels[at[l]!]!.cost, 0);
  if (total > budget) return { cps, macs: total, cost, targetMet: false };
  if (last && layers[last.layer]!.macsAt)
    total = refine(layers[last.layer]!, last.from, at[last.layer]!, total, budget, cps);
  return { cps, macs: total, cost, targetMet: true };
}

/** Raise the overshooting layer's cp only as far as the budget needs (bisection between its two levels). */
function refine<K>(
  layer: AllocationLayer<K>,
  from: number,
  to: number,
  total: number,
  budget: number,
  cps: Map<K, number>,
): number {
  const macsAt = layer.macsAt!;
  const rest = total - macsAt(layer.levels[to]!.cp);
  let [lo, hi] = [layer.levels[from]!.cp, layer.levels[to]!.cp];
  for (let step = 0; step < REFINE_STEPS; step++) {
    const mid = (lo + hi) / 2;
    if (rest + macsAt(mid) <= budget) hi = mid;
    else lo = mid;
  }
  cps.set(layer.node, hi);
  return rest + macsAt(hi);
}
