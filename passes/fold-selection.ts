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
  /** For each position of the consumer's input, the producer's output channel it holds. */
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
