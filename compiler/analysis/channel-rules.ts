/**
 * How each op moves channel layouts (see channel-groups.ts). A rule reads its inputs'
 * layouts, sets its outputs' layouts, unites elements that meet position by position, and
 * records touches for what a channel map must rewrite. It returns a reason string when it
 * cannot follow the node; the walk then pins every channel the node reads.
 */
import { constantNumbers, constantOf } from '../ir/constants.js';
import type { Node, Value } from '../ir/node.js';
import { weightProblem, type ChannelContext, type Layout } from './channel-groups.js';
import type { Dim } from './shape-values.js';

type Rule = (node: Node, ctx: ChannelContext) => string | void;

/** Quantized ops: regroup refuses the model as a whole for now. */
export const QUANTIZED_OPS = new Set([
  'QLinearConv',
  'QLinearMatMul',
  'ConvInteger',
  'MatMulInteger',
  'QuantizeLinear',
  'DequantizeLinear',
  'DynamicQuantizeLinear',
  'QLinearAdd',
  'QLinearMul',
]);

const rank = (ctx: ChannelContext, v: Value | undefined) => ctx.dims(v)?.length;
const opset = (ctx: ChannelContext) => ctx.model.opset('') ?? 1;
const repeatEach = (elems: Int32Array, times: number) => {
  const out = new Int32Array(elems.length * times);
  elems.forEach((e, i) => out.fill(e, i * times, (i + 1) * times));
  return out;
};

/** Output 0 (and a Dropout mask) carries input 0's layout unchanged. */
const passthrough: Rule = (node, ctx) => {
  const layout = ctx.layouts.get(node.input(0));
  if (!layout) return;
  for (const out of node.outputs) if (out && rank(ctx, out) === rank(ctx, node.input(0))) ctx.setLayout(out, layout);
};

/** Output 0 carries input 0's layout with its axis moved by `shift(axis)` (undefined: refuse). */
function shifted(node: Node, ctx: ChannelContext, shift: (axis: number) => number | string): string | void {
  const layout = ctx.layouts.get(node.input(0));
  if (!layout) return;
  const axis = shift(layout.axis);
  if (typeof axis === 'string') return axis;
  ctx.setLayout(node.outputs[0], { ...layout, axis });
}

const conv: Rule = (node, ctx) => {
  const [x, w] = [node.input(0), node.input(1)];
  const weight = constantOf(w);
  const y = node.output(0);
  if (!weight) return `weight '${w.name}' is not a constant`;
  const groups = node.getInt('group', 1);
  const [outChannels, inPerGroup] = [weight.dims[0]!, weight.dims[1]!];
  const problem = weightProblem(node, 1) ?? weightProblem(node, 2);
  let input = ctx.layouts.get(x);
  if (input && (input.axis !== 1 || input.span !== 1 || input.elems.length !== inPerGroup * groups)) {
    // The input's followed channels are not the conv's: pin them, and still give the output its own space.
    ctx.pin(input.elems, `${node.opType} '${ctx.label(node)}' reads '${x.name}' along another axis`);
    input = undefined;
  }
  if (groups > 1 && inPerGroup === 1) return depthwise(node, ctx, input, outChannels / groups, problem);
  const out = ctx.newSpace(y, 1, outChannels, `${node.opType} '${ctx.label(node)}'`);
  if (groups > 1) {
    if (input) uniteGroupSlices(ctx, input.elems, groups);
    uniteGroupSlices(ctx, out.elems, groups);
  }
  if (input)
    ctx.touch({
      node,
      role: 'in-channels',
      inputIndex: 1,
      axis: 1,
      elems: input.elems.subarray(0, inPerGroup),
      groups,
    });
  ctx.touch({ node, role: 'out-channels', inputIndex: 1, axis: 0, elems: out.elems });
  if (node.inputs[2]) ctx.touch({ node, role: 'out-channels', inputIndex: 2, axis: 0, elems: out.elems });
  if (problem) {
    ctx.pin(out.elems, `${node.opType} '${ctx.label(node)}': ${problem}`);
    if (input) ctx.pin(input.elems, `${node.opType} '${ctx.label(node)}': ${problem}`);
  }
};

/** ResNeXt-style groups keep equal per-group counts: position i of every group moves together. */
function uniteGroupSlices(ctx: ChannelContext, elems: Int32Array, groups: number): void {
  const per = elems.length / groups;
  for (let g = 1; g < groups; g++) ctx.unite(elems.subarray(0, per), elems.subarray(g * per, (g + 1) * per));
}

/** Depthwise (one input channel per group): output channel j follows input channel ⌊j/m⌋. */
function depthwise(
  node: Node,
  ctx: ChannelContext,
  input: Layout | undefined,
  multiplier: number,
  problem: string | undefined,
): string | void {
  const y = node.output(0);
  if (!input) {
    const out = ctx.newSpace(y, 1, ctx.dims(y)?.[1] as number, `${node.opType} '${ctx.label(node)}'`);
    ctx.pin(out.elems, `depthwise ${node.opType} '${ctx.label(node)}' reads channels regroup cannot follow`);
    return;
  }
  const elems = repeatEach(input.elems, multiplier);
  ctx.setLayout(y, { axis: 1, span: 1, elems });
  ctx.touch({ node, role: 'out-channels', inputIndex: 1, axis: 0, elems });
  if (node.inputs[2]) ctx.touch({ node, role: 'out-channels', inputIndex: 2, axis: 0, elems });
  ctx.touch({ node, role: 'depthwise-group', inputIndex: -1, axis: 1, elems: input.elems });
  if (problem) ctx.pin(input.elems, `${node.opType} '${ctx.label(node)}': ${problem}`);
}

const convTranspose: Rule = (node, ctx) => {
  const weight = constantOf(node.input(1));
  if (!weight) return `weight '${node.input(1).name}' is not a constant`;
  if (node.getInt('group', 1) !== 1) return 'grouped ConvTranspose is not supported yet';
  const input = ctx.layouts.get(node.input(0));
  if (input && (input.axis !== 1 || input.span !== 1)) return 'input channels are not on axis 1';
  const out = ctx.newSpace(node.output(0), 1, weight.dims[1]!, `ConvTranspose '${ctx.label(node)}'`);
  if (input) ctx.touch({ node, role: 'in-channels', inputIndex: 1, axis: 0, elems: input.elems });
  ctx.touch({ node, role: 'out-channels', inputIndex: 1, axis: 1, elems: out.elems });
  if (node.inputs[2]) ctx.touch({ node, role: 'out-channels', inputIndex: 2, axis: 0, elems: out.elems });
  const problem = weightProblem(node, 1) ?? weightProblem(node, 2);
  if (problem) for (const l of [out, input]) if (l) ctx.pin(l.elems, `ConvTranspose '${ctx.label(node)}': ${problem}`);
};

/** Gemm / MatMul with a constant right operand: input features are columns, outputs a new space. */
function linear(node: Node, ctx: ChannelContext, transB: boolean): string | void {
  const weight = constantOf(node.input(1));
  const y = node.output(0);
  const xRank = rank(ctx, node.input(0));
  const yRank = rank(ctx, y);
  if (weight?.dims.length !== 2) return `weight '${node.input(1).name}' is not a constant matrix`;
  if (xRank === undefined || yRank === undefined) return 'ranks unknown';
  const input = ctx.layouts.get(node.input(0));
  if (input && (input.axis !== xRank - 1 || input.span !== 1))
    return `features of '${node.input(0).name}' are not on its last axis`;
  const out = ctx.newSpace(y, yRank - 1, weight.dims[transB ? 0 : 1]!, `${node.opType} '${ctx.label(node)}'`);
  if (input) ctx.touch({ node, role: 'in-channels', inputIndex: 1, axis: transB ? 1 : 0, elems: input.elems });
  ctx.touch({ node, role: 'out-channels', inputIndex: 1, axis: transB ? 0 : 1, elems: out.elems });
  const bias = node.inputs[2];
  const biasDims = constantOf(bias)?.dims;
  let problem = weightProblem(node, 1);
  if (bias && !biasDims) problem ??= `bias '${bias.name}' is not a constant`;
  if (biasDims && biasDims.length > 0 && biasDims[biasDims.length - 1] === out.elems.length) {
    ctx.touch({ node, role: 'out-channels', inputIndex: 2, axis: biasDims.length - 1, elems: out.elems });
    problem ??= weightProblem(node, 2);
  }
  if (problem) for (const l of [out, input]) if (l) ctx.pin(l.elems, `${node.opType} '${ctx.label(node)}': ${problem}`);
}

const gemm: Rule = (node, ctx) => {
  if (node.getInt('transA', 0) !== 0) return 'Gemm with transA is not followed';
  return linear(node, ctx, node.getInt('transB', 0) === 1);
};

const matmul: Rule = (node, ctx) => {
  if (!constantOf(node.input(1))) {
    const layouts = node.inputs.map((v) => v && ctx.layouts.get(v));
    return layouts.some(Boolean) ? 'MatMul of two computed values mixes channels' : undefined;
  }
  return linear(node, ctx, false);
};

/** BatchNormalization / InstanceNormalization: per-channel parameters follow the input's channels. */
function normalization(paramInputs: readonly number[]): Rule {
  return (node, ctx) => {
    const layout = ctx.layouts.get(node.input(0));
    if (!layout) return;
    if (layout.axis !== 1 || layout.span !== 1) return 'channels are not on axis 1';
    ctx.setLayout(node.outputs[0], layout);
    for (const index of paramInputs) {
      if (!node.inputs[index]) continue;
      const problem = weightProblem(node, index);
      if (problem) return problem;
      ctx.touch({ node, role: 'per-channel', inputIndex: index, axis: 0, elems: layout.elems });
    }
  };
}

/** Broadcasting elementwise ops: operands with channels meet position by position. */
const broadcast: Rule = (node, ctx) => {
  const outRank = rank(ctx, node.outputs[0]);
  if (outRank === undefined)
    return node.inputs.some((v) => v && ctx.layouts.has(v)) ? 'output rank unknown' : undefined;
  let chosen: Layout | undefined;
  for (const v of node.inputs) {
    const layout = v && ctx.layouts.get(v);
    if (!layout) continue;
    const axis = layout.axis + outRank - rank(ctx, v)!;
    if (!chosen) chosen = { ...layout, axis };
    else if (chosen.axis !== axis || chosen.elems.length !== layout.elems.length)
      return 'operands carry channels on different axes';
    else ctx.unite(chosen.elems, layout.elems);
  }
  if (!chosen) return;
  for (let index = 0; index < node.inputs.length; index++) {
    const v = node.inputs[index];
    if (!v || ctx.layouts.has(v)) continue;
    const reason = operandWithoutLayout(node, ctx, index, chosen, outRank);
    if (reason) return reason;
  }
  ctx.setLayout(node.outputs[0], chosen);
};

/** An operand without channels must broadcast over them, or be a per-channel constant. */
function operandWithoutLayout(
  node: Node,
  ctx: ChannelContext,
  index: number,
  chosen: Layout,
  outRank: number,
): string | undefined {
  const v = node.input(index);
  const dims = constantOf(v)?.dims ?? ctx.dims(v);
  if (!dims) return `operand '${v.name}' has unknown shape`;
  const axis = chosen.axis - (outRank - dims.length);
  const runDims = Array.from({ length: chosen.span }, (_, j) => (axis + j >= 0 ? dims[axis + j] : 1));
  if (runDims.every((d) => d === 1)) return undefined;
  if (!constantOf(v)) return `meets '${v.name}', whose channels regroup cannot follow`;
  if (chosen.span !== 1) return `per-channel constant '${v.name}' over a multi-axis channel run`;
  const problem = weightProblem(node, index);
  if (problem) return problem;
  ctx.touch({ node, role: 'per-channel', inputIndex: index, axis, elems: chosen.elems });
  return undefined;
}

const concat: Rule = (node, ctx) => {
  const outRank = rank(ctx, node.outputs[0]);
  const layouts = node.inputs.map((v) => v && ctx.layouts.get(v));
  if (!layouts.some(Boolean)) return;
  if (outRank === undefined) return 'rank unknown';
  const axis = (node.getInt('axis', 1) + outRank) % outRank;
  const onAxis = layouts.every((l) => !l || (l.axis === axis && l.span === 1));
  if (!onAxis) return sameLayouts(node, ctx);
  const parts: Int32Array[] = [];
  for (const v of node.inputs) {
    const size = ctx.dims(v)?.[axis];
    if (typeof size !== 'number') return `size of '${v?.name}' along the concat axis is unknown`;
    const layout = ctx.layouts.get(v!) ?? ctx.newSpace(v!, axis, size, `'${v!.name}' (not followed)`);
    if (!ctx.layouts.has(v!) || layout.elems.length !== size) return 'concat input layout mismatch';
    if (layouts[parts.length] === undefined)
      ctx.pin(layout.elems, `Concat '${ctx.label(node)}' input '${v!.name}' comes from an op regroup does not follow`);
    ctx.touch({ node, role: 'concat', inputIndex: parts.length, axis, elems: layout.elems });
    parts.push(layout.elems);
  }
  const elems = new Int32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) elems.set(p, offset), (offset += p.length);
  ctx.setLayout(node.outputs[0], { axis, span: 1, elems });
};

/** Concat on another axis: every input must carry the same channels. */
function sameLayouts(node: Node, ctx: ChannelContext): string | void {
  const layouts = node.inputs.map((v) => v && ctx.layouts.get(v));
  if (layouts.some((l) => !l)) return 'concatenates values with and without followed channels';
  const first = layouts[0]!;
  for (const l of layouts.slice(1)) {
    if (l!.axis !== first.axis || l!.elems.length !== first.elems.length)
      return 'inputs carry channels on different axes';
    ctx.unite(first.elems, l!.elems);
  }
  ctx.setLayout(node.outputs[0], first);
}

const split: Rule = (node, ctx) => {
  const layout = ctx.layouts.get(node.input(0));
  const r = rank(ctx, node.input(0));
  if (!layout || r === undefined) return;
  const axis = (node.getInt('axis', 0) + r) % r;
  if (axis < layout.axis || axis >= layout.axis + layout.span) {
    for (const out of node.outputs) ctx.setLayout(out, layout);
    return;
  }
  if (layout.span !== 1) return 'splits a multi-axis channel run';
  let offset = 0;
  const sizes: number[] = [];
  for (const out of node.outputs) {
    const size = ctx.dims(out)?.[axis];
    if (typeof size !== 'number') return 'split sizes unknown';
    ctx.setLayout(out, { axis, span: 1, elems: layout.elems.slice(offset, offset + size) });
    sizes.push(size);
    offset += size;
  }
  ctx.touch({ node, role: 'split', inputIndex: opset(ctx) >= 13 ? 1 : -1, axis, elems: layout.elems, extent: sizes });
};

const slice: Rule = (node, ctx) => {
  const layout = ctx.layouts.get(node.input(0));
  const dims = ctx.dims(node.input(0));
  if (!layout || !dims) return;
  const read = (attr: string, index: number) =>
    opset(ctx) < 10 ? node.getInts(attr) : node.inputs[index] ? constantNumbers(node.inputs[index]) : undefined;
  const starts = read('starts', 1);
  const ends = read('ends', 2);
  if (!starts || !ends) return 'slice bounds are not constants';
  const axes = (read('axes', 3) ?? starts.map((_, i) => i)).map((a) => (a + dims.length) % dims.length);
  const steps = read('steps', 4) ?? axes.map(() => 1);
  const at = axes.findIndex((a) => a >= layout.axis && a < layout.axis + layout.span);
  if (at < 0) return void ctx.setLayout(node.outputs[0], layout);
  if (layout.span !== 1) return 'slices a multi-axis channel run';
  if (steps[at] !== 1) return 'channel slice with a step other than 1';
  const size = layout.elems.length;
  const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + size : v, 0), size);
  const [begin, end] = [clamp(starts[at]!), clamp(ends[at]!)];
  ctx.setLayout(node.outputs[0], {
    axis: layout.axis,
    span: 1,
    elems: layout.elems.slice(begin, Math.max(begin, end)),
  });
  ctx.touch({
    node,
    role: 'slice',
    inputIndex: -1,
    axis: layout.axis,
    elems: layout.elems,
    extent: [begin, Math.max(begin, end), at],
  });
};

const transpose: Rule = (node, ctx) => {
  const layout = ctx.layouts.get(node.input(0));
  const dims = ctx.dims(node.input(0));
  if (!layout || !dims) return;
  const perm = node.getInts('perm') ?? dims.map((_, i) => dims.length - 1 - i);
  const positions = Array.from({ length: layout.span }, (_, j) => perm.indexOf(layout.axis + j));
  const start = Math.min(...positions);
  if (Math.max(...positions) - start !== layout.span - 1) return 'moves channel axes apart';
  const runDims = dims.slice(layout.axis, layout.axis + layout.span) as number[];
  const order = positions.map((p) => p - start);
  ctx.setLayout(node.output(0), { axis: start, span: layout.span, elems: permuteRun(layout.elems, runDims, order) });
};

/** Elements of a run viewed as a tensor of `dims`, with axis j moved to position order[j]. */
function permuteRun(elems: Int32Array, dims: readonly number[], order: readonly number[]): Int32Array {
  if (order.every((p, j) => p === j)) return elems;
  const outDims = dims.map((_, j) => dims[order.indexOf(j)]!);
  const out = new Int32Array(elems.length);
  const index = new Array<number>(dims.length).fill(0);
  for (let flat = 0; flat < elems.length; flat++) {
    let rest = flat;
    for (let j = dims.length - 1; j >= 0; j--) (index[j] = rest % dims[j]!), (rest = Math.floor(rest / dims[j]!));
    let target = 0;
    for (let p = 0; p < outDims.length; p++) target = target * outDims[p]! + index[order.indexOf(p)]!;
    out[target] = elems[flat]!;
  }
  return out;
}

/** Reshape and Flatten: follow the channel run through merged or split dims. */
function reshapeLike(node: Node, ctx: ChannelContext, rewriteTarget: boolean): string | void {
  const layout = ctx.layouts.get(node.input(0));
  const inDims = ctx.dims(node.input(0));
  const outDims = ctx.dims(node.output(0));
  if (!layout) return;
  if (!inDims || !outDims) return 'shapes unknown';
  const mapped = mapRun(inDims, outDims, layout);
  if (typeof mapped === 'string') return mapped;
  if (rewriteTarget) {
    const problem = reshapeTargetProblem(node, ctx, mapped);
    if (problem) return problem;
  }
  const elems = repeatEach(layout.elems, mapped.repeat);
  if (mapped.span > 1) {
    const last = outDims[mapped.axis + mapped.span - 1] as number;
    for (let row = 1; row < elems.length / last; row++)
      ctx.unite(elems.subarray(0, last), elems.subarray(row * last, (row + 1) * last));
  }
  ctx.setLayout(node.output(0), { axis: mapped.axis, span: mapped.span, elems });
  if (rewriteTarget)
    ctx.touch({ node, role: 'reshape', inputIndex: 1, axis: mapped.axis, elems, extent: [mapped.span] });
}

interface MappedRun {
  axis: number;
  span: number;
  /** Each channel element becomes this many consecutive positions (Flatten: H·W). */
  repeat: number;
}

/** Where the channel run [axis, axis+span) of inDims lands in outDims, or why it cannot be followed. */
function mapRun(inDims: readonly Dim[], outDims: readonly Dim[], layout: Layout): MappedRun | string {
  const product = (ds: readonly Dim[]) =>
    ds.reduce<number | null>((p, d) => (p === null || typeof d !== 'number' ? null : p * d), 1);
  const before = inDims.slice(0, layout.axis);
  const channels = product(inDims.slice(layout.axis, layout.axis + layout.span));
  const after = product(inDims.slice(layout.axis + layout.span));
  if (channels === null || after === null) return 'channel or spatial dims unknown';
  // Leading size-1 dims make the start ambiguous: try every start with the same prefix product, latest first.
  const starts = outDims
    .map((_, axis) => axis)
    .filter((axis) => sameProduct(outDims.slice(0, axis), before))
    .reverse();
  if (starts.length === 0) return 'Reshape mixes the channel axis with leading dims';
  let reason = 'Reshape moves channels across other dims';
  for (const axis of starts) {
    for (let end = axis + 1; end <= outDims.length; end++) {
      const run = product(outDims.slice(axis, end));
      if (run === null) return 'output dims unknown';
      if (run % channels === 0 && product(outDims.slice(end)) === after / (run / channels)) {
        const repeat = run / channels;
        if (repeat > 1 && end - axis > 1) reason = 'Reshape splits and merges the channel axis at once';
        else if (after % repeat !== 0) reason = 'Reshape mixes channels with spatial positions';
        else return { axis, span: end - axis, repeat };
        break;
      }
      if (run > channels * after) break;
    }
  }
  return reason;
}

function sameProduct(a: readonly Dim[], b: readonly Dim[]): boolean {
  const key = (ds: readonly Dim[]) => {
    let n = 1;
    const syms: string[] = [];
    for (const d of ds) {
      if (typeof d === 'number') n *= d;
      else if (d === null) return undefined;
      else syms.push(d);
    }
    return `${n}|${syms.sort().join('*')}`;
  };
  const [ka, kb] = [key(a), key(b)];
  return ka !== undefined && ka === kb;
}

/** A Reshape target must be a rewritable constant, or hold -1 over the channel run. */
function reshapeTargetProblem(node: Node, ctx: ChannelContext, mapped: MappedRun): string | undefined {
  const target = node.inputs[1];
  if (!target) return 'Reshape without a target';
  if (constantOf(target)) return undefined;
  const elements = ctx.shapes.values.get(target);
  const run = elements?.slice(mapped.axis, mapped.axis + mapped.span);
  if (mapped.span === 1 && run?.[0] === -1) return undefined;
  return 'Reshape target is computed at run time over the channel axis';
}

const flatten: Rule = (node, ctx) => reshapeLike(node, ctx, false);
const reshape: Rule = (node, ctx) => reshapeLike(node, ctx, true);

/** Reductions keep channels unless they reduce over them. */
const reduce: Rule = (node, ctx) => {
  const layout = ctx.layouts.get(node.input(0));
  const r = rank(ctx, node.input(0));
  if (!layout || r === undefined) return;
  const fromInput = opset(ctx) >= 18 || (node.opType === 'ReduceSum' && opset(ctx) >= 13);
  const given = fromInput ? (node.inputs[1] ? constantNumbers(node.inputs[1]) : []) : node.getInts('axes');
  if (fromInput && node.inputs[1] && !given) return 'reduction axes are not constant';
  const axes = (
    given?.length ? given : node.getInt('noop_with_empty_axes', 0) ? [] : Array.from({ length: r }, (_, i) => i)
  ).map((a) => (a + r) % r);
  if (axes.some((a) => a >= layout.axis && a < layout.axis + layout.span)) return 'reduces over channels';
  const keep = node.getInt('keepdims', 1) === 1;
  return shifted(node, ctx, (axis) => (keep ? axis : axis - axes.filter((a) => a < axis).length));
};

const squeezeLike =
  (sign: 1 | -1): Rule =>
  (node, ctx) => {
    const r = rank(ctx, node.input(0));
    const outRank = rank(ctx, node.outputs[0]);
    if (r === undefined || outRank === undefined) return ctx.layouts.has(node.input(0)) ? 'ranks unknown' : undefined;
    const given =
      opset(ctx) >= 13 ? (node.inputs[1] ? constantNumbers(node.inputs[1]) : undefined) : node.getInts('axes');
    const dims = ctx.dims(node.input(0))!;
    const axes = (given ?? dims.flatMap((d, i) => (d === 1 ? [i] : []))).map(
      (a) => (a + (sign > 0 ? outRank : r)) % (sign > 0 ? outRank : r),
    );
    return shifted(node, ctx, (axis) => {
      if (sign < 0)
        return axes.includes(axis) ? 'squeezes the channel axis' : axis - axes.filter((a) => a < axis).length;
      let at = axis;
      for (const a of [...axes].sort((p, q) => p - q)) if (a <= at) at++;
      return at;
    });
  };

const softmax: Rule = (node, ctx) => {
  const layout = ctx.layouts.get(node.input(0));
  const r = rank(ctx, node.input(0));
  if (!layout || r === undefined) return;
  const axis = (node.getInt('axis', opset(ctx) >= 13 ? -1 : 1) + r) % r;
  const normalised = opset(ctx) >= 13 ? [axis] : Array.from({ length: r - axis }, (_, i) => axis + i);
  if (normalised.some((a) => a >= layout.axis && a < layout.axis + layout.span)) return 'normalises across channels';
  return passthrough(node, ctx);
};

const pad: Rule = (node, ctx) => {
  const layout = ctx.layouts.get(node.input(0));
  const r = rank(ctx, node.input(0));
  if (!layout || r === undefined) return;
  const pads = opset(ctx) < 11 ? node.getInts('pads') : constantNumbers(node.inputs[1]);
  if (!pads) return 'pads are not constant';
  const axes =
    opset(ctx) >= 18 && node.inputs[3]
      ? constantNumbers(node.inputs[3])?.map((a) => (a + r) % r)
      : Array.from({ length: r }, (_, i) => i);
  if (!axes) return 'pad axes are not constant';
  const half = pads.length / 2;
  for (let i = 0; i < half; i++)
    if (axes[i] === layout.axis && (pads[i] !== 0 || pads[i + half] !== 0)) return 'pads the channel axis';
  return passthrough(node, ctx);
};

const resize: Rule = (node, ctx) => {
  const layout = ctx.layouts.get(node.input(0));
  if (!layout) return;
  const sizesIndex = node.opType === 'Resize' && opset(ctx) >= 11 ? 3 : -1;
  if (sizesIndex > 0 && node.inputs[sizesIndex]) return 'Resize with explicit sizes is not rewritten yet';
  return passthrough(node, ctx);
};

const maxPool: Rule = (node, ctx) => {
  if (node.outputs[1] && node.outputs[1].useCount > 0) return 'MaxPool indices encode channel positions';
  return passthrough(node, ctx);
};

const tile: Rule = (node, ctx) => {
  const layout = ctx.layouts.get(node.input(0));
  if (!layout) return;
  const repeats = constantNumbers(node.inputs[1]);
  if (repeats?.[layout.axis] !== 1) return 'tiles over channels';
  return passthrough(node, ctx);
};

const expand: Rule = (node, ctx) => {
  const outRank = rank(ctx, node.outputs[0]);
  const r = rank(ctx, node.input(0));
  if (outRank === undefined || r === undefined) return ctx.layouts.has(node.input(0)) ? 'ranks unknown' : undefined;
  return shifted(node, ctx, (axis) => axis + outRank - r);
};

const gather: Rule = (node, ctx) => {
  const layout = ctx.layouts.get(node.input(0));
  const r = rank(ctx, node.input(0));
  const indicesRank = rank(ctx, node.inputs[1]);
  if (!layout || r === undefined || indicesRank === undefined) return layout ? 'ranks unknown' : undefined;
  const axis = (node.getInt('axis', 0) + r) % r;
  if (axis >= layout.axis && axis < layout.axis + layout.span) return 'gathers along the channel axis';
  return shifted(node, ctx, (a) => (a < axis ? a : a + indicesRank - 1));
};

const noChannels: Rule = () => undefined;

const UNARY = [
  'Relu',
  'LeakyRelu',
  'Sigmoid',
  'HardSigmoid',
  'HardSwish',
  'Tanh',
  'Mish',
  'Softplus',
  'Softsign',
  'Erf',
  'Elu',
  'Selu',
  'Celu',
  'Gelu',
  'ThresholdedRelu',
  'Exp',
  'Log',
  'Sqrt',
  'Neg',
  'Abs',
  'Reciprocal',
  'Floor',
  'Ceil',
  'Round',
  'Sign',
  'Not',
  'Identity',
  'Dropout',
  'Cast',
  'Clip',
  'IsNaN',
  'IsInf',
  'Sin',
  'Cos',
  'AveragePool',
  'LpPool',
  'GlobalAveragePool',
  'GlobalMaxPool',
  'GlobalLpPool',
  'CastLike',
];
const BINARY = [
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Pow',
  'Max',
  'Min',
  'Sum',
  'Mean',
  'PRelu',
  'Equal',
  'Less',
  'Greater',
  'LessOrEqual',
  'GreaterOrEqual',
  'And',
  'Or',
  'Xor',
  'Where',
  'BitShift',
  'Mod',
];

/** Op → rule. An op that is not listed pins the channels it reads. */
export const CHANNEL_RULES: Readonly<Record<string, Rule>> = {
  ...Object.fromEntries(UNARY.map((op) => [op, passthrough])),
  ...Object.fromEntries(BINARY.map((op) => [op, broadcast])),
  Conv: conv,
  ConvTranspose: convTranspose,
  Gemm: gemm,
  MatMul: matmul,
  BatchNormalization: normalization([1, 2, 3, 4]),
  InstanceNormalization: normalization([1, 2]),
  Concat: concat,
  Split: split,
  Slice: slice,
  Transpose: transpose,
  Reshape: reshape,
  Flatten: flatten,
  ReduceMean: reduce,
  ReduceSum: reduce,
  ReduceMax: reduce,
  ReduceMin: reduce,
  ReduceL2: reduce,
  ReduceL1: reduce,
  ReduceProd: reduce,
  Squeeze: squeezeLike(-1),
  Unsqueeze: squeezeLike(1),
  Softmax: softmax,
  LogSoftmax: softmax,
  Hardmax: softmax,
  Pad: pad,
  Resize: resize,
  Upsample: resize,
  MaxPool: maxPool,
  Tile: tile,
  Expand: expand,
  Gather: gather,
  Shape: noChannels,
  Size: noChannels,
  Constant: noChannels,
  ConstantOfShape: noChannels,
  Range: noChannels,
};
