/**
 * bn: |γ_p| of BatchNormalization scales (network slimming, Liu et al. 2017), each BN
 * normalised by its mean. A weight member whose channels have no BatchNormalization scale
 * anywhere in the model contributes its l1 norms instead, so groups without BN still rank.
 */
import { opRole } from '../../compiler/ir/op-roles.js';
import type { ChannelAnalysis, Touch } from '../../compiler/analysis/channel-groups.js';
import { contributeGroup, isWeightTouch, type ImportanceCriterion } from './criterion.js';
import { normalizedTouchScores } from './weight-scores.js';

export const bn: ImportanceCriterion = {
  name: 'bn',
  description: 'BatchNormalization |γ| (network slimming, Liu et al. 2017); l1 where there is no BN',
  needs: ['weights'],
  score(group, input) {
    const { analysis } = input;
    const out = new Map<number, number[]>();
    for (const t of input.touches)
      if (isBnScale(t)) contributeGroup(out, normalizedTouchScores(t, 'abs', input), group, analysis);
    const covered = input.memo('bn:covered', analysis, () => bnCovered(analysis));
    for (const t of input.touches) {
      if (!isWeightTouch(t) || t.elems.every((e) => covered.has(analysis.root(e)))) continue;
      contributeGroup(out, normalizedTouchScores(t, 'l1', input), group, analysis);
    }
    return out;
  },
};

function isBnScale(t: Touch): boolean {
  return t.role === 'per-channel' && t.node.opType === 'BatchNormalization' && t.inputIndex === opRole(t.node)?.weight;
}

/** Coupled channels (roots) that some BatchNormalization scale touches. */
function bnCovered(analysis: ChannelAnalysis): Set<number> {
  const covered = new Set<number>();
  for (const t of analysis.touches) if (isBnScale(t)) for (const e of t.elems) covered.add(analysis.root(e));
  return covered;
}
