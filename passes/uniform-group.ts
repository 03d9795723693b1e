/**
 * uniform-group: the ResNeXt-style baseline for self-grouping — every grouped layer reads
 * block-diagonal input subsets (g equal groups, filter block c reads input block c), the
 * structure `Conv(group = g)` expresses directly.
 *
 * To reach a MACs target F with uniform groups: layers are taken largest-MACs first and
 * their group count doubled (1 → 2 → 4 → …, only where g divides both channel counts) one
 * layer at a time, sweep after sweep, until total MACs ≤ F · MACs_total. A layer's MACs
 * under g groups are MACs_dense / g. Which layers are groupable follows self-group's rules
 * (depthwise convs, stems with fewer than `minInputChannels` inputs and shared or
 * non-initializer weights stay dense), so both methods compete on the same layers.
 *
 * Output, as self-group: the masked model (zeros outside the blocks) and the connectivity
 * table for the lowering, keyed by the returned model's nodes (never by name).
 */
import { uniformConnectivity, type Connectivity } from '../compiler/analysis/connectivity.js';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import { nodeLabels } from '../compiler/ir/label.js';
import type { Model } from '../compiler/ir/model.js';
import type { Node } from '../compiler/ir/node.js';
import { maskLayer } from './self-group.js';

export interface UniformGroupOptions {
  /** Target fraction of the model's total MACs. */
  keepMacs: number;
  /** Largest group count a layer may get (default 64). */
  maxGroups?: number;
  /** Convs with fewer input channels stay dense (default 4, as self-group). */
  minInputChannels?: number;
}

/** One groupable layer's outcome (groups 1: left dense). */
export interface GroupedLayerStats {
  /** A node of the result's model. */
  node: Node;
  /** Display label (compiler/ir/label.ts). */
  label: string;
  groups: number;
  macsBefore: number;
  macsAfter: number;
}

export interface UniformGroupResult {
  /** The masked copy; connectivity and stats name its nodes. */
  model: Model;
  connectivity: Map<Node, Connectivity>;
  stats: { macsBefore: number; macsAfter: number; macsRatio: number; targetMet: boolean; layers: GroupedLayerStats[] };
  /** Input model's node → the copy's. */
  nodes: ReadonlyMap<Node, Node>;
}

/** A conv that may be split into groups, and the group count chosen for it. */
export interface GroupableLayer {
  readonly node: Node;
  readonly outChannels: number;
  readonly inChannels: number;
  readonly macs: number;
  groups: number;
}

/** Uniformly group a copy of `model` to about `keepMacs` of its MACs; the input is not changed. */
export function uniformGroup(model: Model, options: UniformGroupOptions): UniformGroupResult {
  const { model: copy, nodes } = model.clone();
  const cost = computeCost(copy, inferShapes(copy));
  const layers = groupableConvs(cost.layers, options.minInputChannels ?? 4);
  const budget = options.keepMacs * cost.totals.macs;
  const total = doubleGroups(layers, cost.totals.macs, budget, { maxGroups: options.maxGroups ?? 64 });
  const connectivity = new Map<Node, Connectivity>();
  for (const layer of layers.filter((l) => l.groups > 1)) {
    const conn = uniformConnectivity(layer.outChannels, layer.inChannels, layer.groups);
    maskLayer(layer.node, conn);
    connectivity.set(layer.node, conn);
  }
  const stats = layerStats(copy, layers);
  return {
    model: copy,
    connectivity,
    stats: {
      macsBefore: cost.totals.macs,
      macsAfter: total,
      macsRatio: total / cost.totals.macs,
      targetMet: total <= budget * (1 + 1e-9),
      layers: stats,
    },
    nodes,
  };
}

/** Per-layer outcome with display labels. */
export function layerStats(model: Model, layers: readonly GroupableLayer[]): GroupedLayerStats[] {
  const labels = nodeLabels(model.graph);
  return layers.map((l) => ({
    node: l.node,
    label: labels.get(l.node) ?? l.node.name,
    groups: l.groups,
    macsBefore: l.macs,
    macsAfter: l.macs / l.groups,
  }));
}

/** Plain Convs (group = 1) whose weight is an unshared initializer with ≥ minInputChannels inputs, group count 1. */
export function groupableConvs(
  layers: readonly { node: Node; macs: number }[],
  minInputChannels: number,
): GroupableLayer[] {
  return layers.flatMap(({ node, macs }) => {
    if (node.opType !== 'Conv' || node.domain !== '' || node.getInt('group', 1) !== 1) return [];
    const w = node.inputs[1];
    if (!w?.isInitializer() || w.useCount > 1 || w.isGraphOutput() || !(macs > 0)) return [];
    const [outChannels, inChannels] = w.constValue!.dims as [number, number];
    return inChannels < minInputChannels ? [] : [{ node, outChannels, inChannels, macs, groups: 1 }];
  });
}

/**
 * Double group counts, largest layers first, sweep after sweep, until total MACs ≤ budget or
 * nothing can double (g must divide both channel counts, stay ≤ maxGroups and leave ≥ minWidth
 * inputs per group); returns the MACs left. A layer's MACs under g groups are MACs_dense / g.
 * The doubling that reaches the budget is the one that saves least among those that reach
 * it, so the result lands as close under the target as one doubling allows (taking the next
 * large layer instead could overshoot by half of it).
 */
export function doubleGroups(
  layers: GroupableLayer[],
  total: number,
  budget: number,
  limits: { maxGroups?: number; minWidth?: number },
): number {
  const [maxGroups, minWidth] = [limits.maxGroups ?? Infinity, limits.minWidth ?? 1];
  const saving = (layer: GroupableLayer) => {
    const next = layer.groups * 2;
    if (
      next > maxGroups ||
      layer.outChannels % next !== 0 ||
      layer.inChannels % next !== 0 ||
      layer.inChannels / next < minWidth
    )
      return undefined;
    return layer.macs / layer.groups - layer.macs / next;
  };
  const double = (layer: GroupableLayer) => {
    total -= saving(layer)!;
    layer.groups *= 2;
  };
  /** Among the doublings that reach the budget, the one that saves least (`reaching` is one of them). */
  const finisher = (reaching: GroupableLayer) =>
    layers.reduce((best, other) => {
      const o = saving(other);
      return o !== undefined && total - o <= budget && o < saving(best)! ? other : best;
    }, reaching);
  layers.sort((a, b) => b.macs - a.macs);
  for (let progress = true; total > budget && progress; ) {
    progress = false;
    for (const layer of layers) {
      if (total <= budget) break;
      const s = saving(layer);
      if (s === undefined) continue;
      double(total - s <= budget ? finisher(layer) : layer);
      progress = true;
    }
  }
  return total;
}
