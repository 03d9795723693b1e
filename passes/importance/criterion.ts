/**
 * The contract of a channel-importance criterion (one file per criterion in this folder,
 * listed in passes/importance.ts, the way Torch-Pruning keeps one class per `Importance`).
 *
 * A criterion scores the coupled channels of one channel group (compiler/analysis/
 * channel-groups.ts) from the group's members — the touches on weights and per-channel
 * parameters, and the values that carry its channels. It returns, per coupled channel (root
 * element), one contribution per member that scores it; `channelImportance` aggregates them
 * (sum, mean or max). Higher is more important.
 *
 * Criteria that need data say so in `needs` and get their measurements as plain typed arrays
 * keyed by `Value` through `ScoringInput.measurements` — passes never run models themselves.
 */
import { opRole } from '../../compiler/ir/op-roles.js';
import type { ChannelAnalysis, ChannelGroup, Touch } from '../../compiler/analysis/channel-groups.js';
import type { Value } from '../../compiler/ir/node.js';

/** What a criterion reads: the weights, or activations / loss gradients measured on data. */
export type CriterionNeed = 'weights' | 'activations' | 'gradients';

/** Per-channel saliency of one value on labelled batches (the fields of ChannelSaliency that criteria read). */
export interface ValueSaliency {
  /** Fraction of (image, position) entries where the channel's activation is zero (or ≤ ε). */
  readonly activationSparsity: Float64Array;
  /** The same for the loss gradient with respect to the channel's activation. */
  readonly gradientSparsity: Float64Array;
  /** Mean |activation| and mean |gradient| per channel, over every entry (zeros included). */
  readonly activationMeanAbs: Float64Array;
  readonly gradientMeanAbs: Float64Array;
  readonly samples: number;
}

/** Measurements on data, per measured value, positions along the value's channel axis (axis 1). */
export interface ImportanceMeasurements {
  readonly saliency?: ReadonlyMap<Value, ValueSaliency>;
}

/** What a criterion scores a group with. */
export interface ScoringInput {
  readonly analysis: ChannelAnalysis;
  /** Touches with at least one position in the group, in analysis order (they may also hold other groups' channels). */
  readonly touches: readonly Touch[];
  readonly measurements: ImportanceMeasurements;
  /**
   * A result computed once per scoring run for (`kind`, `owner`): per-touch scores are shared
   * by every group the touch spans; owner `analysis` for whole-model tables.
   */
  memo<T>(kind: string, owner: object, compute: () => T): T;
}

export interface ImportanceCriterion {
  /** The `--criterion` name. */
  readonly name: string;
  /** One line for `--help`. */
  readonly description: string;
  readonly needs: readonly CriterionNeed[];
  /** Scores at or above this mark channels the criterion's rule never removes (planPruning's `ceiling`). */
  readonly ceiling?: number;
  /** Values whose measurements the criterion reads (data criteria only): the caller measures these. */
  measuredValues?(analysis: ChannelAnalysis): Value[];
  /** Contributions per coupled channel (root element) of `group`, one per scoring member. */
  score(group: ChannelGroup, input: ScoringInput): Map<number, number[]>;
}

/** Whether a criterion reads nothing but the model's weights. */
export function needsWeightsOnly(criterion: ImportanceCriterion): boolean {
  return criterion.needs.every((need) => need === 'weights');
}

/** Append `value` to the contribution list of `root`. */
export function contribute(out: Map<number, number[]>, root: number, value: number): void {
  const list = out.get(root);
  if (list) list.push(value);
  else out.set(root, [value]);
}

/** Add the scores of `perRoot` (one touch's or value's channels) that belong to `group`. */
export function contributeGroup(
  out: Map<number, number[]>,
  perRoot: ReadonlyMap<number, number>,
  group: ChannelGroup,
  analysis: ChannelAnalysis,
): void {
  for (const [root, score] of perRoot) if (analysis.groupOf(root) === group) contribute(out, root, score);
}

/** Weight touches of Conv/ConvTranspose/Gemm/MatMul: a producer's filters or a consumer's columns. */
export function isWeightTouch(t: Touch): boolean {
  const role = opRole(t.node);
  return (
    (t.role === 'out-channels' || t.role === 'in-channels') && role?.linear === true && t.inputIndex === role.weight
  );
}
