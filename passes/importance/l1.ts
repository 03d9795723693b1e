/**
 * l1: a channel's importance is the l1 norm of its weights in every member (Li et al. 2017):
 * Σ|W[…, p, …]| over a producer's filter and each consumer's column, each member normalised
 * by its mean (weight-scores.ts).
 */
import { contributeGroup, isWeightTouch, type ImportanceCriterion } from './criterion.js';
import { normalizedTouchScores } from './weight-scores.js';

export const l1: ImportanceCriterion = {
  name: 'l1',
  description: 'l1 norm of filters and columns (Li et al. 2017)',
  needs: ['weights'],
  score(group, input) {
    const out = new Map<number, number[]>();
    for (const t of input.touches)
      if (isWeightTouch(t)) contributeGroup(out, normalizedTouchScores(t, 'l1', input), group, input.analysis);
    return out;
  },
};
