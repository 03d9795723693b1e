/**
 * Channel map: apply one decision — which coupled channels go — to every member of every
 * channel group at once (see compiler/analysis/channel-groups.ts). Each touch keeps the
 * positions of its axis whose coupled channel stays, in order:
 *   weights / biases / per-channel parameters  W' = W[..., kept, ...] along the touch's axis
 *   depthwise conv                             group' = |kept input channels|
 *   Split                                      sizes' = kept count per output
 *   Slice                                      [b', e') = kept positions before b, and within [b, e)
 *   Reshape target                             the channel run's entry = kept count
 * A constant shared with other uses is copied before it is rewritten, so other readers keep
 * the original. Declared value types follow the new channel counts.
 */
import type { ChannelAnalysis, Touch } from '../compiler/analysis/channel-groups.js';
import { RegroupError } from '../compiler/errors.js';
import { attr } from '../compiler/ir/attribute.js';
import { constantNumbers, constantOf } from '../compiler/ir/constants.js';
import { dtypeInfo, type TypedArray } from '../compiler/ir/dtype.js';
import type { Model } from '../compiler/ir/model.js';
import type { Node } from '../compiler/ir/node.js';
import { Tensor } from '../compiler/ir/tensor.js';

export interface ChannelMapStats {
  tensorsRewritten: number;
  structuralRewrites: number;
  valuesRetyped: number;
}

/** Remove the coupled channels whose root elements are in `removed`, everywhere they appear. */
export function applyChannelMap(
  model: Model,
  analysis: ChannelAnalysis,
  removed: ReadonlySet<number>,
): ChannelMapStats {
  for (const r of removed) {
    const reasons = analysis.pinReasons(r);
    if (reasons.length) throw new RegroupError('invalid-ir', `cannot remove a pinned channel: ${reasons[0]}`);
  }
  const kept = (elems: Int32Array): number[] => {
    const out: number[] = [];
    elems.forEach((e, position) => {
      if (!removed.has(analysis.root(e))) out.push(position);
    });
    return out;
  };
  const stats: ChannelMapStats = { tensorsRewritten: 0, structuralRewrites: 0, valuesRetyped: 0 };
  for (const touch of analysis.touches) {
    const keep = kept(touch.elems);
    if (keep.length === touch.elems.length) continue;
    if (keep.length === 0)
      throw new RegroupError('invalid-ir', `${touch.node}: the plan removes every channel of a ${touch.role} member`);
    if (applyTouch(model, touch, keep, analysis)) stats.tensorsRewritten++;
    else stats.structuralRewrites++;
  }
  for (const [value, layout] of analysis.layouts) {
    const shape = value.type?.shape;
    if (!shape) continue;
    const keep = kept(layout.elems);
    if (keep.length === layout.elems.length) continue;
    const run = shape.slice(layout.axis, layout.axis + layout.span);
    const dims = keptRunDims(run, keep, `${value.name}`);
    value.type = {
      ...value.type!,
      shape: [...shape.slice(0, layout.axis), ...dims, ...shape.slice(layout.axis + layout.span)],
    };
    stats.valuesRetyped++;
  }
  return stats;
}

/**
 * New sizes of a channel run's axes: the kept positions, as coordinates over the run's
 * dims, must form a product set (channel shuffles keep equal counts per group, which
 * makes them one), and each axis keeps its number of distinct coordinates.
 */
export function keptRunDims(run: readonly (number | string | null)[], keep: readonly number[], what: string): number[] {
  if (run.length === 1) return [keep.length];
  const dims = run.map((d) => {
    if (typeof d !== 'number')
      throw new RegroupError('invalid-ir', `'${what}': channel run dims [${run.join(',')}] are not static`);
    return d;
  });
  const distinct = dims.map(() => new Set<number>());
  for (const position of keep) {
    let rest = position;
    for (let j = dims.length - 1; j >= 0; j--) {
      distinct[j]!.add(rest % dims[j]!);
      rest = Math.floor(rest / dims[j]!);
    }
  }
  const sizes = distinct.map((set) => set.size);
  if (sizes.reduce((a, b) => a * b, 1) !== keep.length)
    throw new RegroupError('invalid-ir', `'${what}': kept channels do not form a grid over [${dims.join(',')}]`);
  return sizes;
}

/** Rewrite one member; true when a tensor was rewritten, false for structural edits. */
function applyTouch(model: Model, touch: Touch, keep: number[], analysis: ChannelAnalysis): boolean {
  const { node } = touch;
  switch (touch.role) {
    case 'out-channels':
    case 'in-channels':
    case 'per-channel':
      replaceInput(model, node, touch.inputIndex, gather(constantOf(node.input(touch.inputIndex))!, touch.axis, keep));
      return true;
    case 'depthwise-group':
      node.setAttr(attr.int('group', keep.length));
      return false;
    case 'split':
      rewriteSplit(model, touch, keep);
      return false;
    case 'slice':
      rewriteSlice(model, touch, keep);
      return false;
    case 'reshape':
      rewriteReshape(model, touch, keep, analysis);
      return false;
    case 'concat':
      return false;
  }
}

/** Elements of `tensor` at positions `keep` along `axis`. */
export function gather(tensor: Tensor, axis: number, keep: readonly number[]): Tensor {
  if (dtypeInfo(tensor.dtype).bits < 8)
    throw new RegroupError('unsupported', `tensor '${tensor.name}': sub-byte element types cannot be pruned yet`);
  const dims = tensor.dims;
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1) * dtypeInfo(tensor.dtype).lanes;
  const data = tensor.data;
  const out = new (data.constructor as { new (n: number): TypedArray })(outer * keep.length * inner);
  for (let o = 0; o < outer; o++) {
    keep.forEach((position, k) => {
      const from = (o * dims[axis]! + position) * inner;
      (out as Float32Array).set((data as Float32Array).subarray(from, from + inner), (o * keep.length + k) * inner);
    });
  }
  const newDims = dims.map((d, i) => (i === axis ? keep.length : d));
  return Tensor.fromArray(tensor.dtype, newDims, out, { name: tensor.name, storage: tensor.storage });
}

/** Point a node's input at a constant with new contents: in place when only it reads the initializer. */
export function replaceInput(model: Model, node: Node, inputIndex: number, tensor: Tensor): void {
  const graph = model.graph;
  const value = node.inputs[inputIndex];
  if (value?.isInitializer() && value.useCount === 1 && value.graph === graph) {
    graph.setInitializer(value, tensor);
    return;
  }
  const fresh = graph.addInitializer(value?.name || `${node.name}_input${inputIndex}`, tensor, { fresh: true });
  if (inputIndex < node.inputs.length) node.setInput(inputIndex, fresh);
  else {
    while (node.inputs.length < inputIndex) node.appendInput(undefined);
    node.appendInput(fresh);
  }
}

function rewriteSplit(model: Model, touch: Touch, keep: number[]): void {
  const node = touch.node;
  const sizes: number[] = [];
  let offset = 0;
  for (const size of touch.extent!) {
    sizes.push(keep.filter((p) => p >= offset && p < offset + size).length);
    offset += size;
  }
  if (sizes.some((s) => s === 0)) throw new RegroupError('invalid-ir', `${node}: the plan empties a Split output`);
  if (touch.inputIndex < 0) {
    node.setAttr(attr.ints('split', sizes));
    return;
  }
  node.attributes.delete('num_outputs');
  replaceInput(model, node, 1, Tensor.int64([sizes.length], sizes));
}

function rewriteSlice(model: Model, touch: Touch, keep: number[]): void {
  const node = touch.node;
  const [begin, end, index] = touch.extent as [number, number, number];
  const newBegin = keep.filter((p) => p < begin).length;
  const newEnd = newBegin + keep.filter((p) => p >= begin && p < end).length;
  const attrs = (model.opset('') ?? 1) < 10;
  const read = (name: string, input: number) => [
    ...((attrs ? node.getInts(name) : constantNumbers(node.inputs[input])) ?? []),
  ];
  const starts = read('starts', 1);
  const ends = read('ends', 2);
  starts[index] = newBegin;
  ends[index] = newEnd;
  if (attrs) {
    node.setAttr(attr.ints('starts', starts));
    node.setAttr(attr.ints('ends', ends));
  } else {
    replaceInput(model, node, 1, Tensor.int64([starts.length], starts));
    replaceInput(model, node, 2, Tensor.int64([ends.length], ends));
  }
}

/** The target's entries over the channel run take the new run sizes (-1 and 0 entries stay). */
function rewriteReshape(model: Model, touch: Touch, keep: number[], analysis: ChannelAnalysis): void {
  const node = touch.node;
  const target = constantNumbers(node.inputs[1]);
  if (!target) return; // a run-time target holds -1 over the channel run (checked by the analysis)
  const span = touch.extent![0]!;
  const outShape = analysis.shapes.typeOf(node.output(0))?.shape;
  const run = outShape ? outShape.slice(touch.axis, touch.axis + span) : target.slice(touch.axis, touch.axis + span);
  const sizes = keptRunDims(run, keep, node.name);
  sizes.forEach((size, j) => {
    if (target[touch.axis + j]! > 0) target[touch.axis + j] = size;
  });
  replaceInput(model, node, 1, Tensor.int64([target.length], target));
}
