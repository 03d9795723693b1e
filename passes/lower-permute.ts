/**
 * Folding channel permutations into channel groups instead of emitting Gathers.
 *
 * A lowering wants a conv's filters (or inputs) in cluster order: new position q holds old
 * position order[q]. On coupled channels (union-find roots, compiler/analysis/channel-groups)
 * that is a map ρ: the root that sat at position q is replaced by the root of position
 * order[q]. Applied to every member of the channel group — producers' weight rows and
 * biases, BatchNormalization and other per-channel parameters, consumers' weight columns,
 * Flatten → Gemm columns — position p holding root a (its k-th occurrence along that axis)
 * takes the k-th occurrence of ρ(a):
 *
 *   W'[…, p, …] = W[…, occ_k(ρ(a)), …]     along each member's channel axis.
 *
 * Reordering a whole group computes the same function, with the permuted channels inside.
 * A group is free to reorder when nothing pins it (graph outputs, unknown ops, shared or
 * computed weights) and no member needs equal counts in fixed places: Split, Slice and
 * Reshape members, and grouped (non-depthwise) convs, make it not free. Each group is
 * permuted at most once: the first claim wins. All claims are applied together at the end,
 * and connectivity tables are renumbered through each conv's own touches.
 */
import type { ChannelAnalysis, Touch } from '../compiler/analysis/channel-groups.js';
import type { Connectivity } from '../compiler/analysis/connectivity.js';
import { constantOf } from '../compiler/ir/constants.js';
import type { Model } from '../compiler/ir/model.js';
import type { Node } from '../compiler/ir/node.js';
import { gather, replaceInput } from './channel-map.js';

/** Which side of a conv a permutation reorders. */
export type Side = 'out' | 'in';

const TENSOR_ROLES = new Set(['out-channels', 'in-channels', 'per-channel']);

/** Claims of channel-group permutations, applied together by `apply`. */
export class PermutationFolder {
  /** ρ over roots, for every claimed root. */
  readonly #rho = new Map<number, number>();
  readonly #claimedGroups = new Set<number>();
  readonly #notFree = new Map<number, string>();
  readonly #touchesByGroup = new Map<number, Touch[]>();

  constructor(readonly analysis: ChannelAnalysis) {
    for (const touch of analysis.touches) {
      for (const id of this.#groupsOf(touch.elems))
        (this.#touchesByGroup.get(id) ?? this.#touchesByGroup.set(id, []).get(id)!).push(touch);
    }
    for (const group of analysis.groups) {
      const reason = group.reasons[0] ?? this.#structuralReason(this.#touchesByGroup.get(group.id) ?? []);
      if (reason) this.#notFree.set(group.id, reason);
    }
  }

  /** The touch that holds a conv's filters (out) or input columns (in) of its weight. */
  touchOf(node: Node, side: Side): Touch | undefined {
    const role = side === 'out' ? 'out-channels' : 'in-channels';
    return this.analysis.touches.find((t) => t.node === node && t.role === role && t.inputIndex === 1);
  }

  /** Why reordering `side` of `node` by `order` cannot be folded, or undefined when it can. */
  refusal(node: Node, side: Side, order: Int32Array): string | undefined {
    const touch = this.touchOf(node, side);
    if (!touch)
      return `the ${side === 'out' ? 'output' : 'input'} channels of '${node.name}' are not followed by the channel analysis`;
    const roots = Array.from(touch.elems, (e) => this.analysis.root(e));
    if (new Set(roots).size !== roots.length)
      return `'${node.name}' sees a channel twice along its ${side === 'out' ? 'output' : 'input'} axis`;
    for (const id of this.#groupsOf(touch.elems)) {
      if (this.#claimedGroups.has(id)) return `channel group ${id} is already reordered for another layer`;
      const reason = this.#notFree.get(id);
      if (reason) return `channel group ${id} is not free to reorder: ${reason}`;
    }
    const rho = this.#rhoFor(roots, order);
    if (typeof rho === 'string') return rho;
    for (const id of this.#groupsOf(touch.elems))
      for (const t of this.#touchesByGroup.get(id) ?? [])
        if (!touchOrder(t, rho, this.analysis))
          return `member ${t.node} of channel group ${id} cannot follow the reordering`;
    return undefined;
  }

  /** Claim a reordering (check `refusal` first). */
  claim(node: Node, side: Side, order: Int32Array): void {
    const touch = this.touchOf(node, side)!;
    const roots = Array.from(touch.elems, (e) => this.analysis.root(e));
    const rho = this.#rhoFor(roots, order) as Map<number, number>;
    for (const [from, to] of rho) this.#rho.set(from, to);
    for (const id of this.#groupsOf(touch.elems)) this.#claimedGroups.add(id);
  }

  get claims(): number {
    return this.#claimedGroups.size;
  }

  /** Rewrite every member of every claimed group; returns the order applied to each touch. */
  apply(model: Model): Map<Touch, Int32Array> {
    const orders = new Map<Touch, Int32Array>();
    if (this.#rho.size === 0) return orders;
    for (const touch of this.analysis.touches) {
      const order = touchOrder(touch, this.#rho, this.analysis);
      if (!order || isIdentity(order)) continue;
      orders.set(touch, order);
      if (!TENSOR_ROLES.has(touch.role)) continue;
      const tensor = constantOf(touch.node.input(touch.inputIndex))!;
      replaceInput(model, touch.node, touch.inputIndex, gather(tensor, touch.axis, Array.from(order)));
    }
    return orders;
  }

  /** A connectivity renumbered through the orders `apply` used on its node's weight. */
  renumber(node: Node, conn: Connectivity, orders: Map<Touch, Int32Array>): Connectivity {
    const outOrder = orders.get(this.touchOf(node, 'out')!);
    const inTouch = this.touchOf(node, 'in');
    return renumberConnectivity(conn, outOrder, inTouch ? orders.get(inTouch) : undefined);
  }

  #groupsOf(elems: Int32Array): Set<number> {
    const ids = new Set<number>();
    for (const e of elems) {
      const g = this.analysis.groupOf(this.analysis.root(e));
      if (g) ids.add(g.id);
    }
    return ids;
  }

  #structuralReason(touches: readonly Touch[]): string | undefined {
    for (const t of touches) {
      if (t.role === 'split' || t.role === 'slice' || t.role === 'reshape')
        return `${t.node} (${t.role}) fixes where channels sit`;
      const grouped =
        t.node.opType === 'Conv' && t.node.getInt('group', 1) > 1 && constantOf(t.node.inputs[1])?.dims[1] !== 1;
      if (grouped) return `grouped conv ${t.node} needs equal channel blocks`;
    }
    return undefined;
  }

  /** ρ(roots[q]) = roots[order[q]], merged with earlier claims (which never share roots). */
  #rhoFor(roots: number[], order: Int32Array): Map<number, number> | string {
    if (order.length !== roots.length) return `reordering has ${order.length} entries for ${roots.length} channels`;
    const rho = new Map<number, number>(this.#rho);
    roots.forEach((root, q) => rho.set(root, roots[order[q]!]!));
    return rho;
  }
}

/** For each position of a touch, the old position whose content moves there (undefined when counts differ). */
function touchOrder(touch: Touch, rho: ReadonlyMap<number, number>, analysis: ChannelAnalysis): Int32Array | undefined {
  const roots = Array.from(touch.elems, (e) => analysis.root(e));
  const occurrences = new Map<number, number[]>();
  roots.forEach((r, p) => (occurrences.get(r) ?? occurrences.set(r, []).get(r)!).push(p));
  const seen = new Map<number, number>();
  const order = new Int32Array(roots.length);
  for (let p = 0; p < roots.length; p++) {
    const a = roots[p]!;
    const k = seen.get(a) ?? 0;
    seen.set(a, k + 1);
    const target = occurrences.get(rho.get(a) ?? a);
    if (!target || target.length !== occurrences.get(a)!.length) return undefined;
    order[p] = target[k]!;
  }
  return order;
}

function isIdentity(order: Int32Array): boolean {
  return order.every((v, i) => v === i);
}

/** Renumber filters and inputs: an order maps new position q ← old position order[q]. */
export function renumberConnectivity(conn: Connectivity, outOrder?: Int32Array, inOrder?: Int32Array): Connectivity {
  const inverse = (order: Int32Array | undefined) => {
    if (!order) return undefined;
    const inv = new Int32Array(order.length);
    order.forEach((old, q) => (inv[old] = q));
    return inv;
  };
  const [outInv, inInv] = [inverse(outOrder), inverse(inOrder)];
  const map = (list: Int32Array, inv: Int32Array | undefined) =>
    inv ? Int32Array.from(list, (i) => inv[i]!).sort() : list;
  return {
    ...conn,
    clusters: conn.clusters.map((c) => ({ filters: map(c.filters, outInv), inputs: map(c.inputs, inInv) })),
  };
}
