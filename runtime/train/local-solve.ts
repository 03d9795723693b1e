/**
 * Refitting one layer from its statistics (local-stats.ts).
 *
 * Output map: compressed output o targets dense channel keep[o]. Given by the caller, else
 * the identity when the counts match, else inferred: Pearson correlation over the sampled
 * positions between each compressed output ŷ_o (before refitting) and each dense output
 * y_d, then a greedy one-to-one assignment — the pair (o, d) with the highest correlation
 * is fixed first, both leave the pool, repeat. A pruned filter whose inputs lost channels
 * still correlates best with the dense filter it was cut from, so this recovers the kept
 * channels without the pruning plan.
 *
 * Per filter o of group g, with support S_o = the inputs where its current weight is non-zero
 * (masked weights are exact zeros and stay so), unknowns u = (w[S_o], b) and
 *   A = G_g[S_o ∪ {1}],  r = XY_g[S_o ∪ {1}, keep[o]],
 *   u = argmin Σ(uᵀx − y)² + λ‖w − w₀‖² = (A + λ·P)⁻¹ (r + λ·P·u₀),
 *   λ = ridge · mean(diag G_g[S_o]),  P = I on w, 0 on the bias (linalg.ridgeSolve),
 * where the prior w₀ is the filter's current weights ('current', the default) or zero
 * ('zero': the plain ridge ‖w‖²). Pulling towards the current weights makes a layer that
 * already matches the dense one a fixed point — the refit of an unchanged model changes
 * nothing (with ‖w‖², ridge 1e-3 moved ResNet-tiny's logits by 1.2% relative; with w₀ by
 * 2e-7) — and the in-sample error can only go down. Filters of a group with the same support
 * share one factorisation (one solve with many right-hand sides). Errors from the same sums,
 * over the sampled rows:
 *   before: Σ (y − ŷ)² = Σy² − 2Σŷy + Σŷ²      after: Σy² − 2uᵀr + uᵀAu
 * (u rounded to float32 as it is stored), reported relative to ‖Y‖ = √Σ_o Σ y_keep[o]².
 */
import { RegroupError } from '../../compiler/errors.js';
import { bilinear, ridgeSolve, selectEntries, submatrix } from '../../compiler/util/linalg.js';
import type { LayerPlan } from './local-layers.js';
import type { LayerStatistics } from './local-stats.js';

export type OutputMapSource = 'identity' | 'given' | 'inferred';

/** The map known before collecting (given or identity), or undefined when it must be inferred. */
export function knownOutputMap(
  plan: LayerPlan,
  given: Int32Array | undefined,
): { keep: Int32Array; source: OutputMapSource } | undefined {
  if (given) return { keep: checkGivenMap(plan, given), source: 'given' };
  if (plan.outputs === plan.denseOutputs)
    return { keep: Int32Array.from({ length: plan.outputs }, (_, o) => o), source: 'identity' };
  return undefined;
}

function checkGivenMap(plan: LayerPlan, keep: Int32Array): Int32Array {
  const name = plan.node.name || plan.node.output(0).name;
  if (keep.length !== plan.outputs)
    throw new RegroupError(
      'usage',
      `keptOutputs for '${name}' has ${keep.length} entries but the layer has ${plan.outputs} outputs; give one dense channel per compressed output`,
    );
  const seen = new Set<number>();
  for (const d of keep) {
    if (!Number.isInteger(d) || d < 0 || d >= plan.denseOutputs)
      throw new RegroupError(
        'usage',
        `keptOutputs for '${name}' names dense channel ${d}, outside 0..${plan.denseOutputs - 1}`,
      );
    if (seen.has(d)) throw new RegroupError('usage', `keptOutputs for '${name}' names dense channel ${d} twice`);
    seen.add(d);
  }
  return keep;
}

/** Correlation-based one-to-one map from compressed outputs to dense channels (see the header). */
export function inferOutputMap(plan: LayerPlan, stats: LayerStatistics): Int32Array {
  const { outputs, denseOutputs } = plan;
  const rows = Math.max(stats.rows, 1);
  const pairs: { o: number; d: number; corr: number }[] = [];
  for (let o = 0; o < outputs; o++) {
    const varHat = stats.hatSquares[o]! - stats.hatSum[o]! ** 2 / rows;
    for (let d = 0; d < denseOutputs; d++) {
      const varY = stats.ySquares[d]! - stats.ySum[d]! ** 2 / rows;
      const cov = stats.cross[o * denseOutputs + d]! - (stats.hatSum[o]! * stats.ySum[d]!) / rows;
      const corr = varHat > 0 && varY > 0 ? cov / Math.sqrt(varHat * varY) : -Infinity;
      pairs.push({ o, d, corr });
    }
  }
  pairs.sort((a, b) => b.corr - a.corr || a.o - b.o || a.d - b.d);
  const keep = new Int32Array(outputs).fill(-1);
  const taken = new Uint8Array(denseOutputs);
  let left = outputs;
  for (const { o, d } of pairs) {
    if (left === 0) break;
    if (keep[o] !== -1 || taken[d]) continue;
    keep[o] = d;
    taken[d] = 1;
    left--;
  }
  return keep;
}

export interface LayerSolution {
  /** Refitted effective weights [outputs × features] (float32-representable) and bias. */
  weights: Float64Array;
  bias: Float64Array;
  errorBefore: number;
  errorAfter: number;
  /** Distinct supports, i.e. factorisations. */
  supports: number;
  /** Largest absolute ridge λ and jitter used. */
  lambda: number;
  jitter: number;
}

/** Refit every filter of the layer over its own support (see the header). */
export function solveLayer(
  plan: LayerPlan,
  stats: LayerStatistics,
  keep: Int32Array,
  targetsKnown: boolean,
  ridge: RidgeChoice,
): LayerSolution {
  const weights = Float64Array.from(plan.weights);
  const bias = Float64Array.from(plan.bias);
  const perGroup = plan.outputs / plan.groups;
  const tally = { before: 0, after: 0, total: 0, supports: 0, lambda: 0, jitter: 0 };
  for (let o = 0; o < plan.outputs; o++) {
    const d = keep[o]!;
    tally.total += stats.ySquares[d]!;
    tally.before += Math.max(
      0,
      stats.ySquares[d]! - 2 * stats.cross[o * plan.denseOutputs + d]! + stats.hatSquares[o]!,
    );
  }
  for (let g = 0; g < plan.groups; g++) {
    const column = (o: number) => (targetsKnown ? o - g * perGroup : keep[o]!);
    for (const [indices, filters] of supportsOf(plan, g * perGroup, (g + 1) * perGroup)) {
      const fit = fitSupport(plan, stats, g, indices, filters, column, ridge);
      tally.supports++;
      tally.lambda = Math.max(tally.lambda, fit.lambda);
      tally.jitter = Math.max(tally.jitter, fit.jitter);
      filters.forEach((o, j) => {
        const u = fit.solution[j]!;
        indices.forEach((k, a) => (weights[o * plan.features + k] = u[a]!));
        if (plan.fitBias) bias[o] = u[indices.length]!;
        tally.after += Math.max(0, stats.ySquares[keep[o]!]! - fit.reduction[j]!);
      });
    }
  }
  const relative = (squared: number) =>
    tally.total > 0 ? Math.sqrt(squared / tally.total) : squared > 0 ? Infinity : 0;
  return {
    weights,
    bias,
    errorBefore: relative(tally.before),
    errorAfter: relative(tally.after),
    supports: tally.supports,
    lambda: tally.lambda,
    jitter: tally.jitter,
  };
}

/** Filters of outputs [from, to) grouped by the set of inputs where their weight is non-zero. */
function supportsOf(plan: LayerPlan, from: number, to: number): Map<Int32Array, number[]> {
  const byKey = new Map<string, { indices: Int32Array; filters: number[] }>();
  for (let o = from; o < to; o++) {
    const row = plan.weights.subarray(o * plan.features, (o + 1) * plan.features);
    const indices: number[] = [];
    row.forEach((w, k) => w !== 0 && indices.push(k));
    const key = indices.join(',');
    const entry = byKey.get(key) ?? byKey.set(key, { indices: Int32Array.from(indices), filters: [] }).get(key)!;
    entry.filters.push(o);
  }
  return new Map([...byKey.values()].map((e) => [e.indices, e.filters]));
}

interface SupportFit {
  /** Per filter, the float32-rounded unknowns (weights on the support, then the bias). */
  solution: Float64Array[];
  /** Per filter, 2uᵀr − uᵀAu: how much the refit lowers Σy² (the after-error is Σy² minus this). */
  reduction: Float64Array;
  lambda: number;
  jitter: number;
}

/** The ridge strength and what it pulls towards: zero, or the layer's current weights. */
export interface RidgeChoice {
  readonly ridge: number;
  readonly towards: 'zero' | 'current';
}

/** The current weights on the support (bias last), column j for filter j: the prior for 'current'. */
function currentWeights(plan: LayerPlan, indices: Int32Array, filters: number[], m: number): Float64Array {
  const prior = new Float64Array(m * filters.length);
  filters.forEach((o, j) =>
    indices.forEach((k, a) => (prior[a * filters.length + j] = plan.weights[o * plan.features + k]!)),
  );
  return prior;
}

function fitSupport(
  plan: LayerPlan,
  stats: LayerStatistics,
  g: number,
  indices: Int32Array,
  filters: number[],
  column: (o: number) => number,
  choice: RidgeChoice,
): SupportFit {
  const width = plan.features + 1;
  const unknowns = plan.fitBias ? Int32Array.from([...indices, plan.features]) : indices;
  const m = unknowns.length;
  const solution = filters.map(() => new Float64Array(m));
  const reduction = new Float64Array(filters.length);
  if (m === 0) return { solution, reduction, lambda: 0, jitter: 0 };
  const gram = submatrix(stats.grams[g]!, width, unknowns);
  const rhs = selectEntries(stats.xy[g]!, stats.targets[g]!.length, unknowns, filters.map(column));
  const what = `Gram matrix of ${plan.kind} '${plan.node.name}' (group ${g}, ${indices.length} inputs)`;
  const prior = choice.towards === 'current' ? currentWeights(plan, indices, filters, m) : undefined;
  const solved = ridgeSolve(gram, m, rhs, filters.length, {
    ridge: choice.ridge,
    penalized: (i) => i < indices.length,
    what,
    prior,
  });
  filters.forEach((_, j) => {
    const u = solution[j]!;
    for (let a = 0; a < m; a++) u[a] = Math.fround(solved.solution[a * filters.length + j]!);
    let ur = 0;
    for (let a = 0; a < m; a++) ur += u[a]! * rhs[a * filters.length + j]!;
    reduction[j] = 2 * ur - bilinear(u, gram, u, m);
  });
  return { solution, reduction, lambda: solved.lambda, jitter: solved.jitter };
}
