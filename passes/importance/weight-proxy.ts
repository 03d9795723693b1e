/**
 * weight-proxy: WSP's weight-only selection, as in the official code (QingbeiGuo/WSP,
 * `candidate()`): channel i of layer l is weak at percentile p when both its filter norm
 * ‖W_l[i]‖₁ and the next layer's column norm ‖W_{l+1}[:, i]‖₁ (summed over the H·W columns
 * of a flattened channel) fall below the p-th percentile (numpy's linear interpolation) of
 * their layer — an intersection, so fewer than p% of a layer's channels go.
 *
 * As a score: with a member's channel norms sorted s_0 ≤ … ≤ s_{n−1} and K(c) the last
 * sorted index holding c's norm, v_c < percentile_p exactly when p/100 > K(c)/(n − 1) (the
 * interpolated percentile is continuous and increasing past s_K). So the member's score is
 * the percentile rank r(c) = K(c)/(n − 1) (1 for a lone channel, which the rule never
 * removes), and a coupled channel scores max over its members (every producer's filter and
 * every consumer's column: the intersection). A global threshold τ on this score removes
 * exactly the channels the rule removes at p = 100·τ in every layer, so planPruning's
 * bisection over τ (capped at 1 by `ceiling`: p ≤ 100) is the bisection over p that reaches
 * a MACs target.
 */
import type { Touch } from '../../compiler/analysis/channel-groups.js';
import { contribute, isWeightTouch, type ImportanceCriterion, type ScoringInput } from './criterion.js';
import { touchScores } from './weight-scores.js';

export const weightProxy: ImportanceCriterion = {
  name: 'weight-proxy',
  description: 'WSP official code: filter and next-layer column l1 both below the p-th percentile of their layer',
  needs: ['weights'],
  // Rank 1 (the largest filter or column of a layer) is never below a percentile p ≤ 100.
  ceiling: 1,
  score(group, input) {
    const ranks = new Map<number, number>();
    for (const t of input.touches) {
      if (!isWeightTouch(t)) continue;
      for (const [root, rank] of percentileRanks(t, input)) {
        if (input.analysis.groupOf(root) === group) ranks.set(root, Math.max(ranks.get(root) ?? 0, rank));
      }
    }
    const out = new Map<number, number[]>();
    for (const [root, rank] of ranks) contribute(out, root, rank);
    return out;
  },
};

/** r(c) = K(c)/(n − 1) over the touch's coupled channels' l1 norms (see the header). */
function percentileRanks(touch: Touch, input: ScoringInput): Map<number, number> {
  return input.memo('weight-proxy:rank', touch, () => {
    const norms = touchScores(touch, 'l1', input.analysis);
    const sorted = [...norms.values()].sort((a, b) => a - b);
    const n = sorted.length;
    const ranks = new Map<number, number>();
    for (const [root, norm] of norms) ranks.set(root, n > 1 ? (upperBound(sorted, norm) - 1) / (n - 1) : 1);
    return ranks;
  });
}

/** Number of entries ≤ x in an ascending array. */
function upperBound(sorted: readonly number[], x: number): number {
  let [lo, hi] = [0, sorted.length];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
