/**
 * Blocked convolutions for the training step graph on onnxruntime's CPU provider.
 *
 * For inference, onnxruntime rewrites every Conv whose weight is a constant into its NCHWc
 * form (channels in blocks of 8 with AVX2, 16 with AVX-512; the weight reordered once at load)
 * — much faster than its plain NCHW Conv, which runs im2col and a GEMM, especially at small
 * spatial sizes. In a training step graph the weights are inputs that change every step, so
 * that rewrite never happens and every forward and input-gradient Conv runs the slow path
 * (measured here at batch 128: a 64-channel 3×3 layer at 7×7, 8.1 ms plain against 3.0 ms
 * blocked; 16 channels at 28×28, 6.6 against 5.2 ms).
 *
 * This pass does the rewrite itself, for weights computed in the graph: a Conv becomes
 *
 *   ReorderInput(x) → com.microsoft.nchwc.Conv(x_c, W_b, b) → ReorderOutput(·, channels = O)
 *
 * with the weight put into the kernel's blocked layout by standard ops every step (weights are
 * small): [O, C, kh, kw] → Reshape [O/B, B, C/B, B, kh, kw] → Transpose (0, 2, 4, 5, 3, 1) →
 * [O/B, C/B, kh, kw, B_in, B_out] (onnxruntime's OIHWBiBo). A layer whose input has fewer
 * than B channels (a network's first layer) reads its input unblocked, with the weight in
 * OIHWBo: [O/B, B, C, kh, kw] → (0, 2, 3, 4, 1). A depthwise Conv (group = C = O, one input
 * channel per filter) reads its input blocked and takes its weight in OIHWBo too:
 * [O/B, B, 1, kh, kw] → (0, 2, 3, 4, 1), group kept (measured at batch 128, 64 channels at
 * 28×28: 21.5 ms plain against 13.5 ms blocked, copies in and out of onnxruntime included).
 *
 * A depthwise layer's weight gradient over batch × channels (rules/conv.ts: x as [1, N·C, H, W],
 * ∂y as the kernel [N·C, 1, H_out, W_out]) needs no reordering of its own where C is a
 * multiple of B: x and ∂y blocked are [N, C/B, H, W, B], the very bytes of the blocked
 * [1, N·C, H, W] input and of the OIHWBo kernel, so it reads the forward and input-gradient
 * Convs' ReorderInput of x and ∂y through a Reshape (every ReorderInput of a value is made
 * once and shared).
 *
 * Only what the blocked kernel runs as is: 2-D, group 1 or depthwise, float32, output channels
 * a multiple of B and input channels either a multiple of B or fewer than B (group 1), static
 * weight shapes. Everything else (other grouped convs, the weight gradient's patch extraction
 * or shifted copies, which make several channels of each input channel) is left as it is.
 * The ops are onnxruntime's own (domain com.microsoft.nchwc, CPU provider only): this is a
 * runtime form of the step graph, never written to a user's model.
 */
import { inferShapes } from '../analysis/shape-inference.js';
import { attr, type Attribute } from '../ir/attribute.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { Dim, Node, Value } from '../ir/node.js';
import { Tensor } from '../ir/tensor.js';

export const NCHWC_DOMAIN = 'com.microsoft.nchwc';

export interface BlockedConvSummary {
  /** Convs rewritten to the blocked kernel. */
  blocked: number;
  /** Convs left as they were, with why. */
  kept: { node: string; why: string }[];
}

/** Rewrite `model`'s eligible Conv nodes in place for block size `block` (see the file header). */
export function blockConvs(model: Model, block: number): BlockedConvSummary {
  const summary: BlockedConvSummary = { blocked: 0, kept: [] };
  const shapes = inferShapes(model);
  const convs = model.graph.nodeList().filter((n) => n.opType === 'Conv' && n.domain === '');
  // Shape constants shared by every layer that needs the same one.
  const sharedShapes = new Map<string, Value>();
  const shapeConstant = (values: number[]) => {
    const key = values.join(',');
    let value = sharedShapes.get(key);
    if (!value) {
      value = model.graph.addInitializer('nchwc_shape', Tensor.int64([values.length], values), { fresh: true });
      sharedShapes.set(key, value);
    }
    return value;
  };
  const floatShape = (v: Value) => {
    const type = shapes.typeOf(v);
    return type && type.dtype === DataType.FLOAT ? type.shape : undefined;
  };
  const reordered = new Map<Value, Value>();
  for (const node of convs) {
    const weight = eligibleWeight(node, block, floatShape);
    if (typeof weight === 'string') summary.kept.push({ node: node.name, why: weight });
    else {
      rewrite(model, node, block, weight, { ints: shapeConstant, floatShape, reordered });
      summary.blocked++;
    }
  }
  if (summary.blocked > 0 && !model.opsetImports.some((o) => o.domain === NCHWC_DOMAIN))
    model.opsetImports.push({ domain: NCHWC_DOMAIN, version: 1 });
  return summary;
}

/** The Conv's weight dims [O, C, kh, kw] when the blocked kernel runs it, else why not. */
function eligibleWeight(
  node: Node,
  block: number,
  floatShape: (v: Value) => readonly Dim[] | undefined,
): number[] | string {
  const group = node.getInt('group', 1);
  const w = floatShape(node.input(1)) ?? reshapedTo(node.input(1));
  if (w?.length !== 4 || w.some((d) => typeof d !== 'number')) return 'weight not a float32 4-D tensor of known shape';
  const dims = w as number[];
  const [out, channels] = dims as [number, number];
  if (group !== 1 && !(group === out && channels === 1)) return 'grouped';
  if (out % block !== 0) return `${out} output channels, not a multiple of ${block}`;
  if (channels >= block && channels % block !== 0) return `${channels} input channels, not a multiple of ${block}`;
  // The input's shape may be unknown to inference here (a gradient); a 4-D weight makes it 4-D.
  const x = floatShape(node.input(0));
  if (x && x.length !== 4) return 'input not 4-D';
  if (node.outputs.length !== 1) return 'more than one output';
  return dims;
}

/** The dims `value` is reshaped to, where it is a Reshape's output with constant positive dims. */
function reshapedTo(value: Value): number[] | undefined {
  const producer = value.producer;
  if (producer?.opType !== 'Reshape' || producer.domain !== '') return undefined;
  const dims = producer.inputs[1]?.constValue;
  if (dims?.dims.length !== 1) return undefined;
  const values = [...(dims.data as BigInt64Array)].map(Number);
  return values.every((d) => d > 0) ? values : undefined;
}

/**
 * For a depthwise Conv over batch × channels whose input is x [N, C, H, W] reshaped to
 * [1, N·C, H, W] and whose weight is ∂y [N, C, h, w] reshaped to [N·C, 1, h, w], with C a
 * multiple of `block`: x and ∂y (see the file header).
 */
function batchGroupedOperands(
  node: Node,
  block: number,
  floatShape: (v: Value) => readonly Dim[] | undefined,
): { x: Value; dy: Value } | undefined {
  const [input, weight] = [node.input(0), node.input(1)];
  const [inputDims, weightDims] = [reshapedTo(input), reshapedTo(weight)];
  const x = input.producer?.input(0);
  const dy = weight.producer?.input(0);
  if (!inputDims || !weightDims || !x || !dy) return undefined;
  const shape = floatShape(x);
  if (shape?.length !== 4 || shape.some((d) => typeof d !== 'number')) return undefined;
  const [n, c, h, w] = shape as number[];
  const pairs = n! * c!;
  if (c! % block !== 0 || node.getInt('group', 1) !== pairs) return undefined;
  if (inputDims.join() !== [1, pairs, h, w].join() || weightDims[0] !== pairs || weightDims[1] !== 1) return undefined;
  // ∂y's shape may be unknown to inference (a gradient); where it is known it must match.
  const gradient = floatShape(dy);
  const expected = [n, c, weightDims[2], weightDims[3]].join();
  if (gradient && gradient.join() !== expected) return undefined;
  return { x, dy };
}

interface RewriteContext {
  /** A shared int64 constant. */
  ints: (values: number[]) => Value;
  floatShape: (v: Value) => readonly Dim[] | undefined;
  /** ReorderInput output per value already reordered. */
  reordered: Map<Value, Value>;
}

function rewrite(
  model: Model,
  node: Node,
  block: number,
  [out, channels, kh, kw]: number[],
  { ints, floatShape, reordered }: RewriteContext,
): void {
  const graph = model.graph;
  const before = (opType: string, inputs: (Value | undefined)[], attributes: Attribute[] = [], domain = '') =>
    graph
      .insertBefore(
        node,
        graph.createNode(opType, inputs, {
          domain,
          attributes,
          name: graph.names.fresh(`${node.name}/nchwc/${opType}`),
        }),
      )
      .output(0);

  const reorder = (value: Value) => {
    let blocked = reordered.get(value);
    if (!blocked) {
      blocked = before('ReorderInput', [value], [], NCHWC_DOMAIN);
      reordered.set(value, blocked);
    }
    return blocked;
  };
  const depthwise = node.getInt('group', 1) !== 1;
  const blockedInput = depthwise || channels! >= block;
  const [x, w, b] = [node.input(0), node.input(1), node.inputs[2]];
  const attributes = [...node.attributes.values()].filter((a) => depthwise || a.name !== 'group');
  const finish = (input: Value, weight: Value) => {
    const conv = before('Conv', [input, weight, ...(b ? [b] : [])], attributes, NCHWC_DOMAIN);
    const y = before('ReorderOutput', [conv], [attr.int('channels', out!)], NCHWC_DOMAIN);
    node.output(0).replaceAllUsesWith(y);
    graph.remove(node);
  };
  const batchGrouped = depthwise ? batchGroupedOperands(node, block, floatShape) : undefined;
  if (batchGrouped) {
    const reshapes = [x.producer!, w.producer!];
    finish(
      before('Reshape', [reorder(batchGrouped.x), reshapes[0]!.input(1)]),
      before('Reshape', [reorder(batchGrouped.dy), reshapes[1]!.input(1)]),
    );
    for (const reshape of reshapes) if (reshape.graph && reshape.output(0).useCount === 0) graph.remove(reshape);
    return;
  }
  // OIHWBiBo for a blocked input, else OIHWBo (depthwise: one input channel per filter)
  const biBo = blockedInput && !depthwise;
  const split = biBo
    ? [out! / block, block, channels! / block, block, kh!, kw!]
    : [out! / block, block, channels!, kh!, kw!];
  const perm = biBo ? [0, 2, 4, 5, 3, 1] : [0, 2, 3, 4, 1];
  const reshaped = before('Reshape', [w, ints(split)]);
  const transposed = before('Transpose', [reshaped], [attr.ints('perm', perm)]);
  const weight = before('Reshape', [transposed, ints([out!, channels!, kh!, kw!])]);
  finish(blockedInput ? reorder(x) : x, weight);
}
