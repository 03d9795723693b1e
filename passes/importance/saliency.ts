/**
 * saliency: WSP's data criterion (Guo, Wu, Kittler & Feng, "Weak sub-network pruning for
 * strong and efficient neural networks", Neural Networks 2021).
 *
 * What the paper says: a channel's saliency is tied to the sparsity of its activations (the
 * forward pass) and of the loss gradients with respect to them (the backward pass); the
 * weakest sub-network is made of the channels that contribute least to both, selected from
 * every layer at once — conv and fully-connected — and removed in one shot. Its official
 * code selects, per layer, the channels below the same percentile p in both a forward and a
 * backward statistic (an intersection); see weight-proxy.ts for that weight-only proxy.
 *
 * What regroup computes, per channel c of each measured value (a producer's output after its
 * per-channel chain — BatchNormalization, ReLU, … — i.e. the activation the next layer reads),
 * over N labelled images and every spatial position (ε = 0: exact zeros count as sparse):
 *   forward   F(c) = E|a_c| = (1 − s_a(c)) · E[|a_c| | a_c ≠ 0]
 *   backward  B(c) = E|∂L/∂a_c| = (1 − s_g(c)) · E[|g_c| | g_c ≠ 0]       (L: cross-entropy)
 * so a channel's sparsity scales its contribution directly and, among equally sparse
 * channels, the one with smaller magnitudes is weaker. Each is divided by its mean over the
 * value's channels (F̂ = F / mean F, B̂ = B / mean B), which removes what a whole layer shares
 * (a following MaxPool passes gradient to one position in four; layers differ in scale), and
 *   score(c) = max(F̂(c), B̂(c))
 * is below a threshold τ exactly when both are: the paper's "least in both passes" as an
 * intersection, like the official code's. A coupled channel (residual Add, Concat) takes the
 * max over its measured values (weak only if weak everywhere). One global τ over all layers —
 * planPruning's bisection to the MACs target — picks the weakest sub-network in one shot.
 * A dead channel (all activations and gradients 0) scores 0, below every live channel.
 * Channels of a prunable group with no measured value are never pruned (score +∞).
 */
import type { ChannelAnalysis, ChannelGroup } from '../../compiler/analysis/channel-groups.js';
import { RegroupError } from '../../compiler/errors.js';
import type { Node, Value } from '../../compiler/ir/node.js';
import { contribute, type ImportanceCriterion, type ScoringInput, type ValueSaliency } from './criterion.js';

/** Ops applied channel by channel, elementwise, that the measured activation is taken after. */
const CHANNELWISE_UNARY = new Set([
  'BatchNormalization',
  'InstanceNormalization',
  'Relu',
  'LeakyRelu',
  'PRelu',
  'Clip',
  'Elu',
  'Selu',
  'Celu',
  'Sigmoid',
  'HardSigmoid',
  'HardSwish',
  'Tanh',
  'Softplus',
  'Mish',
  'Gelu',
  'Identity',
  'Dropout',
]);
const BINARY_WITH_CONSTANT = new Set(['Add', 'Sub', 'Mul', 'Div']);
const PRODUCERS = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);

export const saliency: ImportanceCriterion = {
  name: 'saliency',
  description: 'WSP: activation and loss-gradient sparsity and magnitude on labelled images (weak when small in both)',
  needs: ['activations', 'gradients'],
  measuredValues: activationValues,
  score(group, input) {
    const out = new Map<number, number[]>();
    const best = new Map<number, number>();
    for (const [value, perRoot] of valueScores(input)) {
      if (!valueInGroup(value, group, input.analysis)) continue;
      for (const [root, score] of perRoot)
        if (input.analysis.groupOf(root) === group) best.set(root, Math.max(best.get(root) ?? 0, score));
    }
    for (const root of group.roots) contribute(out, root, best.get(root) ?? Infinity);
    return out;
  },
};

/**
 * The activation of every producer (Conv/ConvTranspose/Gemm/MatMul weight rows) of a prunable
 * group: its output followed through single-use channelwise ops, whose channels lie on axis 1.
 */
export function activationValues(analysis: ChannelAnalysis): Value[] {
  const found: Value[] = [];
  for (const t of analysis.touches) {
    if (t.role !== 'out-channels' || t.inputIndex !== 1 || !PRODUCERS.has(t.node.opType)) continue;
    if (!t.elems.some((e) => analysis.pinReasons(e).length === 0)) continue;
    const value = followChannelwise(t.node.outputs[0], analysis);
    if (value && !found.includes(value)) found.push(value);
  }
  return found;
}

function followChannelwise(start: Value | undefined, analysis: ChannelAnalysis): Value | undefined {
  if (!start || !onAxisOne(start, analysis)) return undefined;
  let value: Value = start;
  for (;;) {
    const uses = value.uses();
    if (uses.length !== 1 || value.isGraphOutput()) return value;
    const user = uses[0]!.node;
    const next: Value | undefined = user.outputs[0];
    if (!isChannelwise(user, value) || !next || !onAxisOne(next, analysis)) return value;
    value = next;
  }
}

function onAxisOne(value: Value, analysis: ChannelAnalysis): boolean {
  const layout = analysis.layouts.get(value);
  return layout?.axis === 1 && layout.span === 1;
}

function isChannelwise(node: Node, input: Value): boolean {
  if (node.inputs[0] !== input) return false;
  if (CHANNELWISE_UNARY.has(node.opType)) return true;
  return BINARY_WITH_CONSTANT.has(node.opType) && node.inputs.length === 2 && node.inputs[1]?.constValue !== undefined;
}

function valueInGroup(value: Value, group: ChannelGroup, analysis: ChannelAnalysis): boolean {
  const layout = analysis.layouts.get(value);
  return layout?.elems.some((e) => analysis.groupOf(e) === group) ?? false;
}

/** max(F̂, B̂) per coupled channel of every measured value (computed once per scoring run). */
function valueScores(input: ScoringInput): Map<Value, Map<number, number>> {
  return input.memo('saliency:values', input.analysis, () => {
    const out = new Map<Value, Map<number, number>>();
    for (const [value, measured] of input.measurements.saliency ?? []) {
      const layout = input.analysis.layouts.get(value);
      if (layout?.span !== 1) continue;
      if (
        measured.activationMeanAbs.length !== layout.elems.length ||
        measured.gradientMeanAbs.length !== layout.elems.length
      ) {
        throw new RegroupError(
          'usage',
          `saliency of '${value.name}' has ${measured.activationMeanAbs.length} channels but the value has ${layout.elems.length}; measure the model that was analysed`,
        );
      }
      const [forward, backward] = [
        meanNormalised(measured.activationMeanAbs),
        meanNormalised(measured.gradientMeanAbs),
      ];
      const perRoot = new Map<number, number>();
      layout.elems.forEach((e, position) => {
        const root = input.analysis.root(e);
        perRoot.set(root, Math.max(perRoot.get(root) ?? 0, forward[position]!, backward[position]!));
      });
      out.set(value, perRoot);
    }
    return out;
  });
}

/** x / mean(x) (zeros when the mean is 0). */
function meanNormalised(values: Float64Array): Float64Array {
  const mean = values.reduce((a, b) => a + b, 0) / Math.max(values.length, 1);
  return values.map((x) => (mean > 0 ? x / mean : 0));
}

export type { ValueSaliency };
