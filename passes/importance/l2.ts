/** l2: √Σ W[…, p, …]² over a producer's filter and each consumer's column, each member normalised by its mean. */
import { contributeGroup, isWeightTouch, type ImportanceCriterion } from './criterion.js';
import { normalizedTouchScores } from './weight-scores.js';

export const l2: ImportanceCriterion = {
  name: 'l2',
  description: 'l2 norm of filters and columns',
  needs: ['weights'],
  score(group, input) {
    const out = new Map<number, number[]>();
    for (const t of input.touches)
      if (isWeightTouch(t)) contributeGroup(out, normalizedTouchScores(t, 'l2', input), group, input.analysis);
    return out;
  },
};
