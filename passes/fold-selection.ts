/**
 * Folding a channel *selection* into the layer that produces a conv's input: the
 * generalisation of lower-permute.ts's permutation folding to index lists with repeats and
 * omissions, which lets overlapping input groups run as one `Conv(group = g)` without a
 * Gather.
 *
 * A conv L reads x (C channels). A selection sel of length C says which channel of x each
 * position of the new x holds: x'[:, p] = x[:, sel[p]]. When x's channel group is free —
 * one producer P (a Conv or Gemm with constant weights), followed only by per-channel ops
 * (BatchNormalization, activations, per-channel constants), read by L alone — x' is computed
 * by re-indexing every member along its channel axis:
 *
 *   W_P'[p, …] = W_P[sel[p], …]     b_P'[p] = b_P[sel[p]]     θ'[p] = θ[sel[p]]  (BN and others)
 *   W_L'[:, p, …] = W_L[:, sel[p], …]
 *
 * A channel sel repeats is computed twice, one sel omits is not computed at all; P keeps
 * its width and MACs. L then computes Σ_p W_L'[f, p]·x'_p, which is its old output when
 * every channel L reads appears once among the positions f keeps (the caller masks W_L' so).
 * Positions are matched through channel elements (compiler/analysis/channel-groups), so
 * members whose channel axis holds the channels in another order are followed correctly.
 *
 * Refused (with the reason) when x is a graph input, when its channels are pinned, coupled
 * with other channels (a residual Add: several producers), reach a Concat, Split, Slice,
 * Reshape or depthwise conv, or are read by anything but L (a value on the way with several
 * readers, another consumer's columns).
 */
import type { ChannelAnalysis, Touch } from '../compiler/analysis/channel-groups.js';
import type { Connectivity } from '../compiler/analysis/connectivity.js';
import { RegroupError } from '../compiler/errors.js';
import { constantOf } from '../compiler/ir/constants.js';
import type { Model } from '../compiler/ir/model.js';
import type { Node } from '../compiler/ir/node.js';
import { gather, replaceInput } from './channel-map.js';

/** Where a selection on a conv's input can be folded: the producer and every member to rewrite. */
export interface SelectionSite {
  /** The conv reading the selected channels. */
  readonly consumer: Node;
  /** The node whose output rows are re-indexed (its weight rows and bias). */
  readonly producer: Node;
  /** For each position of the consumer's input, the producer's output channel it holds (the identity: other orders are refused). */
  readonly producerChannel: Int32Array;
  /** Members to rewrite (producer rows, per-channel parameters, the consumer's columns). */
  readonly touches: readonly Touch[];
  /** Element behind each position of the consumer's input. */
  readonly elems: Int32Array;
}

const MEMBER_ROLES = new Set(['out-channels', 'per-channel', 'in-channels']);

/** The site where a selection on `consumer`'s input folds, or the reason it cannot. */
export function selectionSite(analysis: ChannelAnalysis, consumer: Node): SelectionSite | string {
  const x = consumer.inputs[0];
  if (consumer.opType !== 'Conv' || consumer.getInt('group', 1) !== 1 || !x)
    return `'${consumer.name}' is not a dense Conv`;
  if (x.isGraphInput()) return `'${x.name}' is a graph input: no layer computes its channels`;
  const layout = analysis.layouts.get(x);
  if (layout?.axis !== 1 || layout.span !== 1)
    return `the channels of '${x.name}' are not followed by the channel analysis`;
  const roots = Array.from(layout.elems, (e) => analysis.root(e));
  const rootSet = new Set(roots);
  if (rootSet.size !== roots.length) return `'${x.name}' carries one channel at several positions`;
  const pinned = layout.elems.find((e) => analysis.pinReasons(e).length > 0);
  if (pinned !== undefined) return `the channels of '${x.name}' are pinned: ${analysis.pinReasons(pinned)[0]}`;
  const touches = analysis.touches.filter((t) => t.elems.some((e) => rootSet.has(analysis.root(e))));
  const problem = memberProblem(analysis, touches, rootSet, consumer, x.name) ?? fanOut(analysis, rootSet);
  if (problem) return problem;
  const producerTouch = touches.find((t) => t.role === 'out-channels' && t.inputIndex === 1)!;
  const position = new Map(Array.from(producerTouch.elems, (e, f) => [analysis.root(e), f] as const));
  const producerChannel = Int32Array.from(roots, (r) => position.get(r)!);
  if (producerChannel.some((f, q) => f !== q))
    return `the channels of ${producerTouch.node} reach '${consumer.name}' in another order`;
  return { consumer, producer: producerTouch.node, producerChannel, touches, elems: layout.elems };
}

/** Why the group's members do not allow a selection (several producers or readers, structural ops). */
function memberProblem(
  analysis: ChannelAnalysis,
  touches: readonly Touch[],
  rootSet: ReadonlySet<number>,
  consumer: Node,
  name: string,
): string | undefined {
  for (const t of touches) {
    if (!MEMBER_ROLES.has(t.role)) return `${t.node} (${t.role}) fixes where the channels of '${name}' sit`;
    if (t.elems.length !== rootSet.size || t.elems.some((e) => !rootSet.has(analysis.root(e))))
      return `${t.node} also carries channels other than those of '${name}'`;
  }
  const producers = [...new Set(touches.filter((t) => t.role === 'out-channels').map((t) => t.node))];
  if (producers.length !== 1)
    return `the channels of '${name}' are written by ${producers.length} producers (${producers.join(', ')}): a residual stream or merge`;
  const producer = producers[0]!;
  if (producer.opType === 'Conv' && producer.getInt('group', 1) !== 1)
    return `producer ${producer} is a grouped conv: its rows cannot move between groups`;
  const readers = touches.filter((t) => t.role === 'in-channels');
  const other = readers.find((t) => t.node !== consumer);
  if (other) return `the channels of '${name}' are also read by ${other.node}`;
  if (readers.length !== 1 || readers[0]!.inputIndex !== 1)
    return `'${consumer.name}' does not read '${name}' by its weight`;
  return undefined;
}

/** A value carrying the channels that several nodes read (or that is a graph output). */
function fanOut(analysis: ChannelAnalysis, rootSet: ReadonlySet<number>): string | undefined {
  for (const [value, layout] of analysis.layouts) {
    if (!layout.elems.some((e) => rootSet.has(analysis.root(e)))) continue;
    if (value.useCount > 1) return `'${value.name}' carries these channels to ${value.useCount} readers`;
  }
  return undefined;
}

/**
 * Re-index every member of the site by `selection` (x'[:, p] = x[:, selection[p]], positions of
 * the consumer's input): the producer's rows and per-channel parameters, and the consumer's
 * columns. The consumer's weight is otherwise untouched: mask it for the groups it now has.
 */
export function foldSelection(
  model: Model,
  analysis: ChannelAnalysis,
  site: SelectionSite,
  selection: Int32Array,
): void {
  const width = site.elems.length;
  if (selection.length !== width || selection.some((q) => !(q >= 0 && q < width)))
    throw new RegroupError(
      'invalid-ir',
      `internal: a selection for '${site.consumer.name}' must list ${width} positions in [0, ${width})`,
    );
  const rootAt = Array.from(site.elems, (e) => analysis.root(e));
  for (const touch of site.touches) {
    const position = new Map(Array.from(touch.elems, (e, p) => [analysis.root(e), p] as const));
    const keep = Array.from(selection, (q) => position.get(rootAt[q]!)!);
    const tensor = constantOf(touch.node.input(touch.inputIndex));
    if (!tensor)
      throw new RegroupError('invalid-ir', `internal: ${touch.node} input ${touch.inputIndex} is no longer a constant`);
    replaceInput(model, touch.node, touch.inputIndex, gather(tensor, touch.axis, keep));
  }
}

// ---------------------------------------------------------------------------------------------
// Planning the selections of a whole connectivity table

/** The table after folding: every folded conv reads blocks, its grouped producer writes blocks. */
export interface DuplicationResult {
  /** Connectivity of every layer after the folds (the others as given). */
  readonly connectivity: Map<Node, Connectivity>;
  /** Convs whose input selection was folded into their producer. */
  readonly folded: Set<Node>;
  /** Why a conv's selection was not folded. */
  readonly refusals: Map<Node, string>;
}

/**
 * Fold the input selection of every conv of `connectivity` that needs one — equal filter
 * counts, g·|I_c| = C, and either shared inputs or a producer that is itself grouped in the
 * table (whose rows a permutation of the consumer's alone could not put in block order) —
 * into its producer, and renumber both: the conv's cluster k reads [k·w, (k+1)·w), a grouped
 * producer's cluster a writes [a·m_P, (a+1)·m_P). With a grouped producer, slot p is in its
 * block ⌊p/m_P⌋ and in the conv's group ⌊p/w⌋, so group k must read exactly
 * n(a, k) = |[a·m_P, (a+1)·m_P) ∩ [k·w, (k+1)·w)| channels of producer cluster a; when the
 * counts do not line up the conv is refused. The model computes what it computed, provided
 * the weights are masked by the connectivities (before: as given; after: as returned).
 */
export function foldDuplications(
  model: Model,
  analysis: ChannelAnalysis,
  connectivity: ReadonlyMap<Node, Connectivity>,
): DuplicationResult {
  const result: DuplicationResult = { connectivity: new Map(connectivity), folded: new Set(), refusals: new Map() };
  const plans: { site: SelectionSite; selection: Int32Array; producer?: Connectivity }[] = [];
  for (const [node, conn] of connectivity) {
    if (node.opType !== 'Conv') continue;
    const plan = planDuplication(analysis, node, conn, connectivity);
    if (typeof plan === 'string') result.refusals.set(node, plan);
    else plans.push(plan);
  }
  for (const { site, selection, producer } of plans) {
    foldSelection(model, analysis, site, selection);
    // A conv can be both a consumer and a grouped producer: each fold renumbers its own side.
    const table = result.connectivity;
    table.set(site.consumer, selectedConnectivity(table.get(site.consumer)!));
    if (producer) table.set(site.producer, blockFilters(table.get(site.producer)!));
    result.folded.add(site.consumer);
  }
  return result;
}

function planDuplication(
  analysis: ChannelAnalysis,
  node: Node,
  conn: Connectivity,
  table: ReadonlyMap<Node, Connectivity>,
): { site: SelectionSite; selection: Int32Array; producer?: Connectivity } | string {
  const shape = equalGroupsRefusal(conn);
  if (shape) return shape;
  const site = selectionSite(analysis, node);
  if (typeof site === 'string') return site;
  const given = table.get(site.producer);
  const producer = given && given.clusters.length > 1 ? given : undefined;
  if (!producer && !sharesInputs(conn)) return 'clusters share no input: the grouped form applies';
  const blocks = producerBlocks(site, producer);
  if (typeof blocks === 'string') return blocks;
  const selection = blockSelection(conn, blocks);
  if (typeof selection === 'string') return selection;
  const inBlocks = blocks.every((members, a) => members.every((q, r) => q === a * members.length + r));
  if (inBlocks && selection.every((q, p) => q === p))
    return 'the inputs are already in blocks: the grouped form applies';
  return { site, selection, ...(producer ? { producer } : {}) };
}

/** Why the groups are not equal with g·|I_c| = C, or undefined. */
export function equalGroupsRefusal(conn: Connectivity): string | undefined {
  const [first] = conn.clusters;
  if (conn.clusters.some((c) => c.filters.length !== first!.filters.length))
    return `clusters have unequal filter counts (${conn.clusters.map((c) => c.filters.length).join(', ')})`;
  if (conn.clusters.some((c) => c.inputs.length * conn.clusters.length !== conn.inChannels))
    return `clusters do not each read ${conn.inChannels}/${conn.clusters.length} inputs (${conn.clusters.map((c) => c.inputs.length).join(', ')})`;
  return undefined;
}

function sharesInputs(conn: Connectivity): boolean {
  const read = conn.clusters.reduce((n, c) => n + c.inputs.length, 0);
  return new Set(conn.clusters.flatMap((c) => [...c.inputs])).size < read;
}

/**
 * The positions of the consumer's input that each producer cluster writes, in cluster order
 * (one block of every position for a producer that is not grouped); a reason when the
 * producer's clusters are unequal or its channels reach the consumer reordered.
 */
export function producerBlocks(site: SelectionSite, producer: Connectivity | undefined): Int32Array[] | string {
  const width = site.producerChannel.length;
  if (!producer) return [Int32Array.from({ length: width }, (_, q) => q)];
  const m = producer.clusters[0]!.filters.length;
  if (producer.clusters.some((c) => c.filters.length !== m) || m * producer.clusters.length !== width)
    return `its grouped producer ${site.producer} has unequal clusters`;
  return producer.clusters.map((c) => c.filters);
}

/**
 * sel[p] = the next input (ascending) of group ⌊p/w⌋ that lies in producer block ⌊p/m_P⌋; a
 * reason when a group reads more or fewer channels of a block than its slots there.
 */
export function blockSelection(conn: Connectivity, blocks: readonly Int32Array[]): Int32Array | string {
  const [w, m] = [conn.inChannels / conn.clusters.length, blocks[0]!.length];
  const blockOf = new Int32Array(conn.inChannels);
  blocks.forEach((members, a) => members.forEach((q) => (blockOf[q] = a)));
  const queues = conn.clusters.map(() => blocks.map(() => [] as number[]));
  conn.clusters.forEach((c, k) => c.inputs.forEach((j) => queues[k]![blockOf[j]!]!.push(j)));
  const selection = new Int32Array(conn.inChannels);
  for (let p = 0; p < selection.length; p++) {
    const next = queues[Math.floor(p / w)]![Math.floor(p / m)]!.shift();
    if (next === undefined) return `its groups do not line up with the blocks of its grouped producer`;
    selection[p] = next;
  }
  return selection;
}

/** The consumer after the fold: cluster k reads positions [k·w, (k+1)·w). */
export function selectedConnectivity(conn: Connectivity): Connectivity {
  const w = conn.inChannels / conn.clusters.length;
  return {
    ...conn,
    clusters: conn.clusters.map((c, k) => ({ filters: c.filters, inputs: range(k * w, (k + 1) * w) })),
  };
}

/** The producer after the fold: cluster a writes rows [a·m, (a+1)·m). */
function blockFilters(conn: Connectivity): Connectivity {
  const m = conn.outChannels / conn.clusters.length;
  return { ...conn, clusters: conn.clusters.map((c, a) => ({ filters: range(a * m, (a + 1) * m), inputs: c.inputs })) };
}

const range = (from: number, to: number) => Int32Array.from({ length: to - from }, (_, i) => from + i);
