/**
 * The four ONNX forms of a conv with a given connectivity (clusters c with filters F_c and
 * inputs I_c), as plans (index lists, used both to cost and to emit) and as graph rewrites:
 *
 *   grouped       x[:, concat I_c] → Conv(group = g) → y   (equal |F_c|, equal disjoint
 *                 |I_c|; the Gathers vanish when the indices are the identity, which is
 *                 what folding the permutations into the channel groups achieves)
 *   padded        x[:, concat pad(I_c, w)] → Conv(group = g) over g·m filters → y[:, pos]
 *                 every group padded to width w (repeated indices with zero weights) and
 *                 m filters (zero filters); a cluster with more than m filters becomes
 *                 several groups reading the same inputs; pos(f) = c·m + r for the r-th filter
 *                 of group c, so the last Gather both drops the padding and restores order
 *   duplicated    the grouped form after x' = x[:, I_1 | … | I_g] was folded into x's producer
 *                 (passes/fold-selection.ts foldDuplications: equal |F_c| and |I_c| = C/g that
 *                 may overlap; shared channels are computed twice, unused ones not at all), so
 *                 the conv reads x' in blocks and no Gather runs
 *   per-group     Concat_c Conv(x[:, I_c], W[F_c][:, I_c]) → y[:, pos]  (Slice for a
 *                 contiguous I_c, nothing when I_c is every input)
 *   masked-dense  the conv itself with W ⊙ mask (the exact reference)
 *
 * Each is exact: group c's conv computes Σ_{j ∈ I_c} W[f, j] * x_j for f ∈ F_c, which is the
 * masked dense conv because W[f, j] = 0 for j ∉ I_c; padded slots hold zeros.
 */
import { isDense, maskWeight, type Cluster, type Connectivity } from '../compiler/analysis/connectivity.js';
import { RegroupError } from '../compiler/errors.js';
import { attr, type Attribute } from '../compiler/ir/attribute.js';
import { constantOf } from '../compiler/ir/constants.js';
import type { Model } from '../compiler/ir/model.js';
import type { Node, Value } from '../compiler/ir/node.js';
import { Tensor } from '../compiler/ir/tensor.js';
import { removeNode } from './edit.js';
import type { CostOp } from './lower-cost.js';

export type Form = 'grouped' | 'duplicated' | 'padded' | 'per-group' | 'masked-dense';
export const FORMS: readonly Form[] = ['grouped', 'duplicated', 'padded', 'per-group', 'masked-dense'];

/** One Conv(group = g) over equal groups, with optional Gathers around it. */
export interface GroupedPlan {
  readonly form: 'grouped' | 'duplicated' | 'padded';
  readonly clusters: readonly Cluster[];
  /** Filters per group (m) and input channels per group (w) of the grouped conv. */
  readonly filtersPerGroup: number;
  readonly width: number;
  /** Gather indices of the input; undefined when they are the identity. */
  readonly inputIndices: Int32Array | undefined;
  /** Gather indices of the output; undefined when they are the identity. */
  readonly outputIndices: Int32Array | undefined;
}

/** One Conv per cluster, concatenated. */
export interface PerGroupPlan {
  readonly form: 'per-group';
  readonly clusters: readonly Cluster[];
  readonly inChannels: number;
  readonly outputIndices: Int32Array | undefined;
}

export interface DensePlan {
  readonly form: 'masked-dense';
  readonly conn: Connectivity;
}

export type FormPlan = GroupedPlan | PerGroupPlan | DensePlan;

const identityOrUndefined = (indices: Int32Array, length: number) =>
  indices.length === length && indices.every((v, i) => v === i) ? undefined : indices;

/** Why the grouped form does not apply, or undefined: needs equal |F_c| and equal, disjoint |I_c|. */
export function groupedRefusal(conn: Connectivity): string | undefined {
  const [first] = conn.clusters;
  if (conn.clusters.some((c) => c.filters.length !== first!.filters.length))
    return `clusters have unequal filter counts (${conn.clusters.map((c) => c.filters.length).join(', ')})`;
  if (conn.clusters.some((c) => c.inputs.length !== first!.inputs.length))
    return `clusters read unequal input counts (${conn.clusters.map((c) => c.inputs.length).join(', ')})`;
  const seen = new Set<number>();
  for (const c of conn.clusters) {
    for (const j of c.inputs) {
      if (seen.has(j)) return `clusters share input channel ${j}`;
      seen.add(j);
    }
  }
  return undefined;
}

/** Plan a single grouped conv of group width `width` (≥ every |I_c|); the grouped form must not need padding. */
export function planGrouped(conn: Connectivity, width: number, form: GroupedPlan['form']): GroupedPlan {
  const m = Math.max(...conn.clusters.map((c) => c.filters.length));
  if (form !== 'padded' && conn.clusters.some((c) => c.filters.length !== m || c.inputs.length !== width)) {
    throw new RegroupError(
      'invalid-ir',
      `internal: the grouped form was planned for unequal clusters (${groupedRefusal(conn) ?? `width ${width}`})`,
    );
  }
  const inputIndices = new Int32Array(conn.clusters.length * width);
  const outputIndices = new Int32Array(conn.outChannels);
  conn.clusters.forEach((c, g) => {
    for (let s = 0; s < width; s++) inputIndices[g * width + s] = c.inputs[Math.min(s, c.inputs.length - 1)]!;
    c.filters.forEach((f, r) => (outputIndices[f] = g * m + r));
  });
  return {
    form,
    clusters: conn.clusters,
    filtersPerGroup: m,
    width,
    inputIndices: identityOrUndefined(inputIndices, conn.inChannels),
    outputIndices: identityOrUndefined(outputIndices, conn.clusters.length * m),
  };
}

/**
 * Clusters with more than `m` filters split into chunks of at most m filters that share the
 * cluster's inputs (so the padded form pads filter counts to m, not to the largest cluster).
 */
export function splitClusters(conn: Connectivity, m: number): Connectivity {
  const clusters: Cluster[] = [];
  for (const c of conn.clusters)
    for (let at = 0; at < c.filters.length; at += m)
      clusters.push({ filters: c.filters.subarray(at, at + m), inputs: c.inputs });
  return { ...conn, clusters };
}

/** Plan one conv per cluster; the output Gather restores filter order after the Concat. */
export function planPerGroup(conn: Connectivity): PerGroupPlan {
  const outputIndices = new Int32Array(conn.outChannels);
  let offset = 0;
  for (const c of conn.clusters) c.filters.forEach((f) => (outputIndices[f] = offset++));
  return {
    form: 'per-group',
    clusters: conn.clusters,
    inChannels: conn.inChannels,
    outputIndices: identityOrUndefined(outputIndices, conn.outChannels),
  };
}

/** The ops a plan emits, for the cost model. */
export function planOps(plan: FormPlan): CostOp[] {
  if (plan.form === 'masked-dense')
    return [{ kind: 'conv', groups: [{ filters: plan.conn.outChannels, width: plan.conn.inChannels }] }];
  const ops: CostOp[] = [];
  const outChannels = plan.clusters.reduce((n, c) => n + c.filters.length, 0);
  if (plan.form === 'per-group') {
    for (const c of plan.clusters) {
      if (c.inputs.length !== plan.inChannels) ops.push({ kind: 'copy', channels: c.inputs.length, at: 'input' });
      ops.push({ kind: 'conv', groups: [{ filters: c.filters.length, width: c.inputs.length }] });
    }
    if (plan.clusters.length > 1) ops.push({ kind: 'copy', channels: outChannels, at: 'output' });
  } else {
    if (plan.inputIndices) ops.push({ kind: 'copy', channels: plan.inputIndices.length, at: 'input' });
    ops.push({ kind: 'conv', groups: plan.clusters.map(() => ({ filters: plan.filtersPerGroup, width: plan.width })) });
  }
  if (plan.outputIndices) ops.push({ kind: 'copy', channels: outChannels, at: 'output' });
  return ops;
}

/** MACs the emitted convs execute per output position (padding included). */
export function planMacsPerPosition(plan: FormPlan, kernelArea: number): number {
  return planOps(plan).reduce(
    (sum, op) => sum + (op.kind === 'conv' ? op.groups.reduce((s, g) => s + g.filters * g.width, 0) * kernelArea : 0),
    0,
  );
}

// ---------------------------------------------------------------------------------------------
// Emission

/**
 * Replace a dense Conv (group = 1, weight [Cout, Cin, …]) by the plan's ops, in place; the
 * output value keeps its name, the single grouped conv the conv's name. Returns the new nodes.
 */
export function emitPlan(model: Model, conv: Node, plan: FormPlan): Node[] {
  const weight = constantOf(conv.inputs[1]);
  if (!weight || conv.getInt('group', 1) !== 1)
    throw new RegroupError(
      'invalid-ir',
      `cannot lower '${conv.name}': it needs a constant weight and group = 1 (self-group writes grouped convs out densely)`,
    );
  if (plan.form === 'masked-dense') {
    if (!isDense(plan.conn)) model.graph.setInitializer(ownWeight(model, conv), maskWeight(weight, plan.conn));
    return [];
  }
  const emitter = new Emitter(model, conv, weight, constantOf(conv.inputs[2]));
  const out = plan.form === 'per-group' ? emitter.perGroup(plan) : emitter.grouped(plan);
  emitter.replaceOutput(plan.outputIndices ? emitter.gather(out, plan.outputIndices, 'gather_out') : out);
  return emitter.created;
}

/** The conv's weight as an initializer only it reads (copied when shared). */
function ownWeight(model: Model, conv: Node): Value {
  const w = conv.input(1);
  if (w.isInitializer() && w.useCount === 1) return w;
  const copy = model.graph.addInitializer(`${nameBase(conv)}.weight`, constantOf(w)!, { fresh: true });
  conv.setInput(1, copy);
  return copy;
}

/** The stem of names made for a conv's replacement: its name, or its output's when it has none. */
function nameBase(conv: Node): string {
  return conv.name || conv.output(0).name;
}

/** Builds the replacement nodes in front of the conv. */
class Emitter {
  readonly created: Node[] = [];
  readonly #x: Value;
  readonly #area: number;
  /** Stem of new value and node names (see nameBase). */
  readonly #base: string;

  constructor(
    readonly model: Model,
    readonly conv: Node,
    readonly weight: Tensor,
    readonly bias: Tensor | undefined,
  ) {
    this.#x = conv.input(0);
    this.#base = nameBase(conv);
    this.#area = weight.size / (weight.dims[0]! * weight.dims[1]!);
  }

  grouped(plan: GroupedPlan): Value {
    const x = plan.inputIndices ? this.gather(this.#x, plan.inputIndices, 'gather_in') : this.#x;
    const rows = plan.clusters.map((c) => c.filters);
    const cols = plan.clusters.map((c) => c.inputs);
    return this.convNode(x, rows, cols, plan.filtersPerGroup, plan.width, plan.clusters.length, this.conv.name, true);
  }

  perGroup(plan: PerGroupPlan): Value {
    const parts = plan.clusters.map((c, g) => {
      const x = this.inputSubset(c.inputs, plan.inChannels, g);
      return this.convNode(x, [c.filters], [c.inputs], c.filters.length, c.inputs.length, 1, `${this.#base}.group${g}`);
    });
    return parts.length === 1 ? parts[0]! : this.node('Concat', parts, [attr.int('axis', 1)], `${this.#base}.concat`);
  }

  /** Gather(value, indices, axis = 1). */
  gather(value: Value, indices: Int32Array, suffix: string): Value {
    const index = this.model.graph.addInitializer(
      `${this.#base}.${suffix}.indices`,
      Tensor.int64([indices.length], Array.from(indices)),
      { fresh: true },
    );
    return this.node('Gather', [value, index], [attr.int('axis', 1)], `${this.#base}.${suffix}`);
  }

  /** Point every reader of the conv's output at `out`, remove the conv, and give `out` its name and type. */
  replaceOutput(out: Value): void {
    const graph = this.model.graph;
    const y = this.conv.output(0);
    const [name, type, infoAt] = [y.name, y.type, graph.valueInfo.indexOf(y)];
    y.replaceAllUsesWith(out);
    removeNode(graph, this.conv);
    out.name = name;
    out.type = type;
    if (infoAt >= 0) graph.valueInfo.splice(infoAt, 0, out);
  }

  /** The input channels of one cluster: x itself, a Slice when contiguous, else a Gather. */
  inputSubset(inputs: Int32Array, inChannels: number, g: number): Value {
    if (inputs.length === inChannels) return this.#x;
    const [first, last] = [inputs[0]!, inputs[inputs.length - 1]!];
    if (last - first + 1 !== inputs.length) return this.gather(this.#x, inputs, `group${g}.gather_in`);
    const graph = this.model.graph;
    const name = `${this.#base}.group${g}.slice_in`;
    if ((this.model.opset('') ?? 1) < 10)
      return this.node(
        'Slice',
        [this.#x],
        [attr.ints('starts', [first]), attr.ints('ends', [last + 1]), attr.ints('axes', [1])],
        name,
      );
    const ints = (suffix: string, v: number) =>
      graph.addInitializer(`${name}.${suffix}`, Tensor.int64([1], [v]), { fresh: true });
    return this.node('Slice', [this.#x, ints('starts', first), ints('ends', last + 1), ints('axes', 1)], [], name);
  }

  /**
   * Conv(group = groups) whose group c has filters rows[c] (padded to m) reading columns cols[c]
   * (padded to width). `name` may be empty with keepName (an unnamed conv's replacement stays unnamed).
   */
  convNode(
    x: Value,
    rows: readonly Int32Array[],
    cols: readonly Int32Array[],
    m: number,
    width: number,
    groups: number,
    name: string,
    keepName = false,
  ): Value {
    const graph = this.model.graph;
    const stem = name || this.#base;
    const w = graph.addInitializer(`${stem}.weight`, this.#blockWeight(rows, cols, m, width), { fresh: true });
    const b = this.bias ? graph.addInitializer(`${stem}.bias`, this.#blockBias(rows, m), { fresh: true }) : undefined;
    const attributes: Attribute[] = [...this.conv.attributes.values()].filter((a) => a.name !== 'group');
    attributes.push(attr.int('group', groups));
    return this.node('Conv', b ? [x, w, b] : [x, w], attributes, name, keepName);
  }

  /** A node placed before the conv; `keepName` reuses `name` as is (the conv it replaces is removed). */
  node(opType: string, inputs: Value[], attributes: Attribute[], name: string, keepName = false): Value {
    const graph = this.model.graph;
    const node = graph.createNode(opType, inputs, { name: keepName ? name : graph.names.fresh(name), attributes });
    graph.insertBefore(this.conv, node);
    this.created.push(node);
    return node.output(0);
  }

  /** Weight [groups·m, width, …k]: block (c, r, s) = W[rows[c][r], cols[c][s]], zero in padded slots. */
  #blockWeight(rows: readonly Int32Array[], cols: readonly Int32Array[], m: number, width: number): Tensor {
    const inChannels = this.weight.dims[1]!;
    const area = this.#area;
    const src = this.weight.data as Float32Array;
    const out = new (src.constructor as Float32ArrayConstructor)(rows.length * m * width * area);
    rows.forEach((filters, c) => {
      filters.forEach((f, r) => {
        cols[c]!.forEach((j, s) => {
          const from = (f * inChannels + j) * area;
          out.set(src.subarray(from, from + area), ((c * m + r) * width + s) * area);
        });
      });
    });
    return this.weight.withData([rows.length * m, width, ...this.weight.dims.slice(2)], out);
  }

  #blockBias(rows: readonly Int32Array[], m: number): Tensor {
    const src = this.bias!.data as Float32Array;
    const out = new (src.constructor as Float32ArrayConstructor)(rows.length * m);
    rows.forEach((filters, c) => filters.forEach((f, r) => (out[c * m + r] = src[f]!)));
    return this.bias!.withData([rows.length * m], out);
  }
}
