/**
 * Channel groups (after DepGraph, Fang et al. 2023): which tensor axes must be pruned or
 * permuted together.
 *
 * Every channel a producer creates (a Conv's filters, a Gemm's output features) is one
 * *element*. Graph inputs carry none: which of their axes holds channels (NCHW or NHWC) is
 * the consumer's business, and their channels can never be pruned anyway. Each value that carries channels gets a *layout*: the
 * element behind each position along its channel axis (or along a run of axes, after a
 * Reshape). Ops move layouts: elementwise ops keep them, Concat concatenates them,
 * Split/Slice cut them, Flatten repeats each element H·W times. Ops that make two values
 * meet position by position (residual Add, SE's Mul) unite their elements in a union-find:
 * a *coupled channel* is a union-find class, and it is pruned or moved as one.
 * A *group* is a set of producers whose coupled channels are linked.
 *
 * Every place a channel map must rewrite (weight rows and columns, per-channel parameters,
 * Split sizes, Slice bounds, Reshape targets, the `group` of a depthwise conv) is recorded
 * as a *touch*: node, which input or attribute, tensor axis, and the layout along that axis.
 * Anything regroup cannot follow — a graph output, an op without a rule, a weight shared by
 * two nodes, a Reshape it cannot map — pins the channels it sees, with the reason. Nothing
 * is ever guessed to be elementwise.
 */
import { constantOf } from '../ir/constants.js';
import { nodeLabels } from '../ir/label.js';
import type { Model } from '../ir/model.js';
import type { Node, Value } from '../ir/node.js';
import { CHANNEL_RULES, QUANTIZED_OPS } from './channel-rules.js';
import { inferShapes, type ShapeResult } from './shape-inference.js';
import type { Dim } from './shape-values.js';

/** The element behind each position of a value's channel axis run [axis, axis + span). */
export interface Layout {
  readonly axis: number;
  readonly span: number;
  readonly elems: Int32Array;
}

export type TouchRole =
  /** Producer rows: weight output axis and bias of Conv/ConvTranspose/Gemm/MatMul. */
  | 'out-channels'
  /** Consumer columns: weight input axis of Conv/ConvTranspose/Gemm/MatMul. */
  | 'in-channels'
  /** Per-channel parameters: BatchNormalization, InstanceNormalization, broadcast constants, PRelu. */
  | 'per-channel'
  /** The `group` attribute of a depthwise conv follows its channel count. */
  | 'depthwise-group'
  /** Split sizes on the channel axis. */
  | 'split'
  /** Slice bounds on the channel axis. */
  | 'slice'
  /** A Reshape target's entries over the channel run. */
  | 'reshape'
  /** A Concat input: nothing to rewrite, recorded for offsets. */
  | 'concat';

export interface Touch {
  readonly node: Node;
  readonly role: TouchRole;
  /** Input slot of the tensor to rewrite (weights, parameters, Split sizes, Reshape target). */
  readonly inputIndex: number;
  /** Axis of that tensor (or of the data, for structural touches) the layout runs along. */
  readonly axis: number;
  readonly elems: Int32Array;
  /** Number of groups for grouped convs (elems covers one group's slice). */
  readonly groups?: number;
  /** Split: the original size of each output. Slice: [begin, end) on the channel axis and the index of that axis in `axes`. Reshape: the run's span. */
  readonly extent?: readonly number[];
}

/** Where a member's channels of a group sit in its axis. */
export interface GroupMember {
  readonly node: Node;
  readonly role: TouchRole | 'value';
  readonly offset: number;
  readonly count: number;
}

export interface ChannelGroup {
  readonly id: number;
  /** Coupled channels (union-find classes) in the group. */
  readonly channels: number;
  /** Coupled channels that may be pruned. */
  readonly prunableChannels: number;
  readonly prunable: boolean;
  /** Why channels are pinned (deduplicated). */
  readonly reasons: string[];
  readonly members: GroupMember[];
  /** The producers (spaces) whose channels form the group. */
  readonly producers: string[];
  /** Root element of each coupled channel, in the order of the first producer. */
  readonly roots: Int32Array;
}

export interface ChannelAnalysis {
  readonly shapes: ShapeResult;
  readonly layouts: Map<Value, Layout>;
  readonly touches: Touch[];
  readonly groups: ChannelGroup[];
  /** Union-find root of an element. */
  root(elem: number): number;
  /** Group of a coupled channel (by root element). */
  groupOf(root: number): ChannelGroup | undefined;
  /** Why an element's class is pinned; empty when prunable. */
  pinReasons(elem: number): string[];
  /** Set when the model cannot be analysed at all (e.g. quantized). */
  readonly unsupported?: string;
}

/** A source of elements: one producer's channels. */
interface Space {
  readonly id: number;
  readonly label: string;
  readonly base: number;
  readonly size: number;
}

/** The mutable state rules work on. */
export class ChannelContext {
  readonly layouts = new Map<Value, Layout>();
  readonly touches: Touch[] = [];
  readonly spaces: Space[] = [];
  readonly #parent: number[] = [];
  readonly #pins = new Map<number, string[]>();
  readonly #spaceOf: number[] = [];

  #labels: Map<Node, string> | undefined;

  constructor(
    readonly model: Model,
    readonly shapes: ShapeResult,
  ) {}

  /** A node's display label for messages (compiler/ir/label.ts: its name, or op#k (→ output) when empty or repeated). */
  label(node: Node): string {
    this.#labels ??= nodeLabels(this.model.graph);
    return this.#labels.get(node) ?? node.name;
  }

  /** Static dims of a value (symbols and unknowns as null). */
  dims(value: Value | undefined): Dim[] | undefined {
    if (!value) return undefined;
    const shape = this.shapes.typeOf(value)?.shape;
    return shape ? [...shape] : undefined;
  }

  /** A fresh space of `size` elements laid along `axis` of `value`. */
  newSpace(value: Value, axis: number, size: number, label: string): Layout {
    const space: Space = { id: this.spaces.length, label, base: this.#parent.length, size };
    this.spaces.push(space);
    const elems = new Int32Array(size);
    for (let i = 0; i < size; i++) {
      elems[i] = space.base + i;
      this.#parent.push(space.base + i);
      this.#spaceOf.push(space.id);
    }
    const layout = { axis, span: 1, elems };
    this.layouts.set(value, layout);
    return layout;
  }

  root(elem: number): number {
    let r = elem;
    while (this.#parent[r] !== r) r = this.#parent[r]!;
    for (let e = elem; this.#parent[e] !== r; ) {
      const next = this.#parent[e]!;
      this.#parent[e] = r;
      e = next;
    }
    return r;
  }

  /** Couple two layouts position by position (they must be the same length). */
  unite(a: Int32Array, b: Int32Array): void {
    for (let i = 0; i < a.length; i++) {
      const ra = this.root(a[i]!);
      const rb = this.root(b[i]!);
      if (ra === rb) continue;
      const [keep, drop] = ra < rb ? [ra, rb] : [rb, ra];
      this.#parent[drop] = keep;
      const moved = this.#pins.get(drop);
      if (moved) {
        this.#pins.set(keep, [...(this.#pins.get(keep) ?? []), ...moved]);
        this.#pins.delete(drop);
      }
    }
  }

  pin(elems: Int32Array, reason: string): void {
    for (const e of elems) {
      const r = this.root(e);
      const list = this.#pins.get(r) ?? [];
      if (!list.includes(reason)) list.push(reason);
      this.#pins.set(r, list);
    }
  }

  /** Pin whatever layout the value carries. */
  pinValue(value: Value | undefined, reason: string): void {
    const layout = value && this.layouts.get(value);
    if (layout) this.pin(layout.elems, reason);
  }

  pinReasons(elem: number): string[] {
    return this.#pins.get(this.root(elem)) ?? [];
  }

  spaceOf(elem: number): number {
    return this.#spaceOf[elem]!;
  }

  touch(t: Touch): void {
    this.touches.push(t);
  }

  setLayout(value: Value | undefined, layout: Layout | undefined): void {
    if (value && layout) this.layouts.set(value, layout);
  }
}

/** Analyse the channel groups of a model's main graph. */
export function analyzeChannels(model: Model, shapes: ShapeResult = inferShapes(model)): ChannelAnalysis {
  const ctx = new ChannelContext(model, shapes);
  const graph = model.graph;
  const quantized = graph.nodeList().find((n) => QUANTIZED_OPS.has(n.opType));
  for (const node of graph.nodes()) visit(node, ctx);
  for (const out of graph.outputs) ctx.pinValue(out, `graph output '${out.name}'`);
  const groups = collectGroups(ctx);
  const byRoot = new Map<number, ChannelGroup>();
  for (const g of groups) for (const r of g.roots) byRoot.set(r, g);
  return {
    shapes,
    layouts: ctx.layouts,
    touches: ctx.touches,
    groups,
    root: (e) => ctx.root(e),
    groupOf: (r) => byRoot.get(ctx.root(r)),
    pinReasons: (e) => ctx.pinReasons(e),
    ...(quantized
      ? {
          unsupported: `quantized models (${quantized.opType} at node '${ctx.label(quantized)}') are not supported yet`,
        }
      : {}),
  };
}

function visit(node: Node, ctx: ChannelContext): void {
  const rule = node.domain === '' || node.domain === 'ai.onnx' ? CHANNEL_RULES[node.opType] : undefined;
  if (node.subgraphs().length > 0) {
    for (const v of node.inputs)
      ctx.pinValue(v, `read by ${node.opType} '${ctx.label(node)}', whose subgraphs regroup does not follow`);
    for (const sub of node.subgraphs())
      for (const inner of sub.nodes())
        for (const v of inner.inputs)
          if (v && v.graph !== sub) ctx.pinValue(v, `captured by a subgraph of '${ctx.label(node)}'`);
    return;
  }
  if (!rule) {
    for (const v of node.inputs)
      ctx.pinValue(
        v,
        `read by ${node.domain ? `${node.domain}.` : ''}${node.opType} '${ctx.label(node)}', which regroup does not know how to follow`,
      );
    return;
  }
  const refusal = rule(node, ctx);
  if (typeof refusal === 'string')
    for (const v of node.inputs) ctx.pinValue(v, `${node.opType} '${ctx.label(node)}': ${refusal}`);
}

/** Spaces linked through shared classes form groups. */
function collectGroups(ctx: ChannelContext): ChannelGroup[] {
  const spaceParent = ctx.spaces.map((s) => s.id);
  const find = (s: number): number => (spaceParent[s] === s ? s : (spaceParent[s] = find(spaceParent[s]!)));
  const firstSpaceOfRoot = new Map<number, number>();
  for (const space of ctx.spaces) {
    for (let i = 0; i < space.size; i++) {
      const r = ctx.root(space.base + i);
      const other = firstSpaceOfRoot.get(r);
      if (other === undefined) firstSpaceOfRoot.set(r, space.id);
      else spaceParent[find(space.id)] = find(other);
    }
  }
  const bySet = new Map<number, Space[]>();
  for (const space of ctx.spaces) {
    const key = find(space.id);
    (bySet.get(key) ?? bySet.set(key, []).get(key)!).push(space);
  }
  const members = membersBySet(ctx, find);
  const groups: ChannelGroup[] = [];
  for (const [key, spaces] of bySet) {
    const roots: number[] = [];
    const seen = new Set<number>();
    for (const space of spaces) {
      for (let i = 0; i < space.size; i++) {
        const r = ctx.root(space.base + i);
        if (!seen.has(r)) seen.add(r), roots.push(r);
      }
    }
    const reasons = [...new Set(roots.flatMap((r) => ctx.pinReasons(r)))];
    const prunableChannels = roots.filter((r) => ctx.pinReasons(r).length === 0).length;
    groups.push({
      id: groups.length,
      channels: roots.length,
      prunableChannels,
      prunable: prunableChannels > 0,
      reasons,
      members: members.get(key) ?? [],
      producers: spaces.map((s) => s.label),
      roots: Int32Array.from(roots),
    });
  }
  return groups;
}

/** Members (touches and values) of each space set, with the offset of the set's channels. */
function membersBySet(ctx: ChannelContext, find: (s: number) => number): Map<number, GroupMember[]> {
  const out = new Map<number, GroupMember[]>();
  const add = (node: Node, role: GroupMember['role'], elems: Int32Array) => {
    const firstBySet = new Map<number, { offset: number; count: number }>();
    elems.forEach((e, position) => {
      const key = find(ctx.spaceOf(ctx.root(e)));
      const entry = firstBySet.get(key);
      if (entry) entry.count++;
      else firstBySet.set(key, { offset: position, count: 1 });
    });
    for (const [key, { offset, count }] of firstBySet)
      (out.get(key) ?? out.set(key, []).get(key)!).push({ node, role, offset, count });
  };
  for (const t of ctx.touches) add(t.node, t.role, t.elems);
  return out;
}

/**
 * Why a weight input cannot be rewritten, or undefined. A constant shared with other uses is
 * fine: the channel map gives the rewritten node its own copy. An initializer that is also
 * listed as a graph input (IR < 4 files) is treated as the model's weight.
 */
export function weightProblem(node: Node, inputIndex: number): string | undefined {
  const value = node.inputs[inputIndex];
  if (!value) return undefined;
  if (!constantOf(value)) return `input ${inputIndex} ('${value.name}') is not a constant weight`;
  if (value.isGraphOutput()) return `weight '${value.name}' is a graph output`;
  return undefined;
}
