/**
 * fpgm: filters near the geometric median of their layer are replaceable by the others
 * (He et al. 2019): a producer's filter p scores Σ_q ‖F_p − F_q‖₂; consumers contribute
 * their columns' l2 norms. Each member is normalised by its mean.
 */
import { contributeGroup, isWeightTouch, type ImportanceCriterion } from './criterion.js';
import { normalizedTouchScores } from './weight-scores.js';

export const fpgm: ImportanceCriterion = {
  name: 'fpgm',
  description: 'distance to the geometric median of the layer’s filters (He et al. 2019)',
  needs: ['weights'],
  score(group, input) {
    const out = new Map<number, number[]>();
    for (const t of input.touches) {
      if (isWeightTouch(t))
        contributeGroup(
          out,
          normalizedTouchScores(t, t.role === 'out-channels' ? 'fpgm' : 'l2', input),
          group,
          input.analysis,
        );
    }
    return out;
  },
};
