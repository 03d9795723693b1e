/**
 * Building blocks of MSGC (Su et al., "Middle-spectrum grouped convolution", IEEE TNNLS 2024;
 * official code hellozhuo/msgc); the method is passes/methods/msgc.ts:
 *
 * - **where gates go**: residual blocks, found from each Add back to the value both of its
 *   inputs start from (the block input); the convs with a spatial kernel on the residual path
 *   are the ones a gate on that input would split into heads;
 * - **noise in the step graph**: u ∈ (0, 1) per element, a hash of (seed, update, element) in
 *   standard ops — u = frac(43758.5453 · sin(12.9898·i + 78.233·step + 37.719·seed)), clipped
 *   to [1e-6, 1 − 1e-6] — so a run with the same seed draws the same noise at every update,
 *   a resumed one included, with nothing fed from JavaScript;
 * - **the Gumbel-sigmoid gate**: soft = σ((logit + log u − log(1 − u))/τ) (the difference of
 *   two Gumbel draws is logistic), hard = [soft ≥ ½] in the forward pass with the gradient of
 *   soft (straight through: hard = (sign(2·soft − 1) + 1)/2, ∂hard/∂soft = 1 under
 *   TrainingSpec.straightThrough); τ = 2/3, logit bias 2.0 at the start, as in the paper;
 * - **the heads conv** (emitHeadsConv): Conv(heads·C → C', group = heads) over the heads'
 *   masked copies of the input, equal to the dense conv while every mask is open.
 */
import type { Emitter } from '../../compiler/autodiff/emitter.js';
import { RegroupError } from '../../compiler/errors.js';
import { attr } from '../../compiler/ir/attribute.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node, Value } from '../../compiler/ir/node.js';
import { nodeLabels } from '../../compiler/ir/label.js';

/** The paper's Gumbel-sigmoid temperature. */
export const MSGC_TEMPERATURE = 2 / 3;
/** The paper's initial bias of the mask logits: every mask starts (almost surely) open. */
export const MSGC_LOGIT_BIAS = 2;

/** u ∈ (0, 1) shaped like `like`, from the element index, the update `step` (float scalar) and `seed`. */
export function emitUniformNoise(e: Emitter, like: Value, step: Value, seed: number): Value {
  const f = DataType.FLOAT;
  const count = e.cast(e.op('Size', [like]), f);
  const index = e.reshape(e.op('Range', [e.scalar(0, f), count, e.scalar(1, f)]), e.shapeOf(like));
  const phase = e.add(
    e.add(e.mul(index, e.scalar(12.9898, f)), e.mul(step, e.scalar(78.233, f))),
    e.scalar((37.719 * seed) % 1000, f),
  );
  const h = e.mul(e.op('Sin', [phase]), e.scalar(43758.5453, f));
  const u = e.sub(h, e.op('Floor', [h]));
  return e.op('Clip', [u, e.scalar(1e-6, f), e.scalar(1 - 1e-6, f)]);
}

/** The Gumbel-sigmoid gate of `logits` with uniform noise `u` (see the header). */
export function emitGumbelGate(
  e: Emitter,
  logits: Value,
  u: Value,
  temperature = MSGC_TEMPERATURE,
): { soft: Value; hard: Value; straightThrough: Value[] } {
  const f = DataType.FLOAT;
  const logistic = e.sub(e.op('Log', [u]), e.op('Log', [e.sub(e.scalar(1, f), u)]));
  const soft = e.op('Sigmoid', [e.div(e.add(logits, logistic), e.scalar(temperature, f))]);
  const sign = e.op('Sign', [e.sub(e.mul(soft, e.scalar(2, f)), e.scalar(1, f))]);
  const hard = e.add(e.mul(sign, e.scalar(0.5, f)), e.scalar(0.5, f));
  return { soft, hard, straightThrough: [sign] };
}

/** A residual block a gate can sit on: its input, the spatial convs of its residual path, its Add. */
export interface GatePlacement {
  readonly label: string;
  readonly input: Value;
  readonly convs: readonly Node[];
  readonly add: Node;
}

/** Where gates can go, and every Add that is not a block a gate can sit on, with why. */
export function gatePlacements(model: Model): { blocks: GatePlacement[]; refused: string[] } {
  const labels = nodeLabels(model.graph);
  const blocks: GatePlacement[] = [];
  const refused: string[] = [];
  for (const add of model.graph.nodeList()) {
    if (add.opType !== 'Add' || add.inputs.length !== 2 || add.inputs.some((v) => !v || v.isInitializer())) continue;
    const label = labels.get(add) ?? add.name;
    const [a, b] = [chain(add.input(0)), chain(add.input(1))];
    const common = a.values.find((v) => b.values.includes(v));
    if (!common) {
      refused.push(`${label} (its inputs share no value within ${MAX_DEPTH} single-input layers)`);
      continue;
    }
    const path = (c: typeof a) => c.nodes.slice(0, c.values.indexOf(common));
    const convs = [...path(a), ...path(b)].filter(
      (n) =>
        n.opType === 'Conv' &&
        n.getInt('group', 1) === 1 &&
        (n.input(1).constValue?.dims.slice(2) ?? []).some((k) => k > 1),
    );
    if (convs.length === 0) {
      refused.push(`${label} (no plain spatial conv between the block input and the Add)`);
      continue;
    }
    blocks.push({ label, input: common, convs, add });
  }
  return { blocks, refused };
}

const MAX_DEPTH = 12;
const PASS_THROUGH = new Set(['Conv', 'BatchNormalization', 'Relu', 'Clip', 'LeakyRelu', 'Identity', 'Dropout']);

/** Walk producers back through single-data-input layers: the values met, and the node that made each. */
function chain(value: Value): { values: Value[]; nodes: Node[] } {
  const values: Value[] = [value];
  const nodes: Node[] = [];
  let current = value;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const node = current.producer;
    if (!node || !PASS_THROUGH.has(node.opType)) break;
    nodes.push(node);
    current = node.input(0);
    values.push(current);
  }
  return { values, nodes };
}

/**
 * A conv rewritten to read `heads` masked copies of its input: x [N, C, H, W] and hard masks
 * m [N, heads·C] give x ⊙ m_h per head, convolved by head h's slice of the filters (C'/heads
 * of them) — Conv(heads·C → C', group = heads) spelt as one conv per head and a Concat. With
 * every mask 1 it computes the dense conv exactly; a zero in m_h removes that input channel
 * from head h's filters. The conv's masks are columns [offset, offset + heads·C) of `masks`. The conv is replaced; C'
 * must divide into the heads. Returns the value that now holds the conv's result.
 */
export function emitHeadsConv(e: Emitter, conv: Node, masks: Value, heads: number, offset = 0): Value {
  const weight = conv.input(1).constValue;
  if (!weight || conv.getInt('group', 1) !== 1 || weight.dims[0]! % heads !== 0)
    throw new RegroupError(
      'unsupported',
      `${conv.name || conv.opType}: MSGC heads need a plain conv with an initializer weight whose ${weight?.dims[0] ?? '?'} filters divide into ${heads} heads`,
    );
  const channels = weight.dims[1]!;
  const x = conv.input(0);
  const copy = (h: number) => {
    // Gather (any opset) of head h's C mask columns.
    const indices = Array.from({ length: channels }, (_, c) => offset + h * channels + c);
    const head = e.op('Gather', [masks, e.int64(indices)], [attr.int('axis', 1)]);
    return e.mul(x, e.unsqueeze(head, [2, 3]));
  };
  if (heads === 1) {
    conv.setInput(0, copy(0));
    return conv.output(0);
  }
  // One conv per head on its slice of the filters: onnxruntime runs these (and regroup's
  // autodiff differentiates them) faster than one Conv(group) over the concatenated copies.
  const filters = weight.dims[0]! / heads;
  const [w, bias] = [conv.input(1), conv.inputs[2]];
  const slice = (v: Value, h: number) =>
    e.op('Slice', [v, e.int64([h * filters]), e.int64([(h + 1) * filters]), e.int64([0])]);
  const attributes = [...conv.attributes.values()];
  const outputs = Array.from({ length: heads }, (_, h) =>
    e.op('Conv', [copy(h), slice(w, h), bias ? slice(bias, h) : undefined], attributes),
  );
  const y = e.op('Concat', outputs, [attr.int('axis', 1)]);
  conv.output(0).replaceAllUsesWith(y);
  y.graph.remove(conv);
  return y;
}
