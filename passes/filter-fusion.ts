/**
 * Dynamic-coded filter fusion (DCFF, Lin et al. 2021, arXiv 2107.06916): the math of one layer.
 *
 * A layer's C filters, flattened, are the rows w_0 … w_{C−1} (for coupled producers, the
 * concatenation of every producer's row for that channel). With temperature T:
 *
 *   D_jk  = ‖w_j − w_k‖₂                                  pairwise Euclidean distances
 *   P_j   = softmax_k(−D_jk · T)                          row-wise, in the log domain:
 *           log P_jk = −D_jk·T − log Σ_i exp(−D_ji·T)     (log-sum-exp, no underflow to −∞)
 *   s_j   = Σ_k KL(P_j ‖ P_k) = Σ_k Σ_i P_ji (log P_ji − log P_ki)
 *         = C · Σ_i P_ji log P_ji − Σ_i P_ji · (Σ_k log P_ki)        O(C²) instead of O(C³)
 *
 * The m filters with the largest s_j are kept and fused: W̃ = P[top, :] · W (biases likewise,
 * b̃ = P[top, :] · b). As T → ∞, P → I and fusion becomes selection.
 *
 * Temperature over epochs e of E (the paper's schedule, T(0) = T_s, T(E) = T_e):
 *   T(e) = A / (1 + exp(−k·e)) + T_s − A/2,   A = 2(T_e − T_s)(1 + exp(−kE)) / (1 − exp(−kE)),
 * with T_s = 1, T_e = 1e4, k = 1.
 */
import { RegroupError } from '../compiler/errors.js';

/** The paper's temperature schedule constants. */
export const FUSION_TEMPERATURE = { start: 1, end: 1e4, k: 1 } as const;

/** T(epoch) of a run of `epochs` epochs (see the header); epochs ≥ 1. */
export function fusionTemperature(
  epoch: number,
  epochs: number,
  schedule: { start: number; end: number; k: number } = FUSION_TEMPERATURE,
): number {
  if (!(epochs >= 1)) throw new RegroupError('usage', `the fusion temperature needs at least one epoch, got ${epochs}`);
  const { start, end, k } = schedule;
  const decay = Math.exp(-k * epochs);
  const a = (2 * (end - start) * (1 + decay)) / (1 - decay);
  return a / (1 + Math.exp(-k * epoch)) + start - a / 2;
}

/** Rows of a C × dim matrix (float64, row-major). */
export interface FilterRows {
  readonly rows: number;
  readonly dim: number;
  readonly data: Float64Array;
}

/** P (row-major C × C, probabilities), log P and the KL scores s_j of one layer. */
export interface FusionCode {
  readonly channels: number;
  readonly probabilities: Float64Array;
  readonly logProbabilities: Float64Array;
  readonly scores: Float64Array;
}

/** D_jk = ‖w_j − w_k‖₂, C × C. */
export function pairwiseDistances(filters: FilterRows): Float64Array {
  const { rows, dim, data } = filters;
  const distances = new Float64Array(rows * rows);
  for (let j = 0; j < rows; j++) {
    for (let k = j + 1; k < rows; k++) {
      let sum = 0;
      for (let d = 0; d < dim; d++) {
        const diff = data[j * dim + d]! - data[k * dim + d]!;
        sum += diff * diff;
      }
      distances[j * rows + k] = distances[k * rows + j] = Math.sqrt(sum);
    }
  }
  return distances;
}

/** P, log P and scores of `filters` at temperature T (see the header). */
export function fusionCode(filters: FilterRows, temperature: number): FusionCode {
  const channels = filters.rows;
  const distances = pairwiseDistances(filters);
  const logP = new Float64Array(channels * channels);
  for (let j = 0; j < channels; j++) logSoftmaxRow(distances, logP, j, channels, temperature);
  const probabilities = logP.map(Math.exp);
  return { channels, probabilities, logProbabilities: logP, scores: klScores(probabilities, logP, channels) };
}

function logSoftmaxRow(
  distances: Float64Array,
  logP: Float64Array,
  row: number,
  channels: number,
  temperature: number,
): void {
  let max = -Infinity;
  for (let k = 0; k < channels; k++) max = Math.max(max, -distances[row * channels + k]! * temperature);
  let sum = 0;
  for (let k = 0; k < channels; k++) sum += Math.exp(-distances[row * channels + k]! * temperature - max);
  const lse = max + Math.log(sum);
  for (let k = 0; k < channels; k++) logP[row * channels + k] = -distances[row * channels + k]! * temperature - lse;
}

/** s_j = C · Σ_i P_ji log P_ji − Σ_i P_ji · Σ_k log P_ki. */
function klScores(p: Float64Array, logP: Float64Array, channels: number): Float64Array {
  const columnLogSums = new Float64Array(channels);
  for (let k = 0; k < channels; k++)
    for (let i = 0; i < channels; i++) columnLogSums[i] = columnLogSums[i]! + logP[k * channels + i]!;
  const scores = new Float64Array(channels);
  for (let j = 0; j < channels; j++) {
    let negEntropy = 0;
    let cross = 0;
    for (let i = 0; i < channels; i++) {
      const pji = p[j * channels + i]!;
      if (pji === 0) continue; // 0 · log 0 = 0
      negEntropy += pji * logP[j * channels + i]!;
      cross += pji * columnLogSums[i]!;
    }
    scores[j] = channels * negEntropy - cross;
  }
  return scores;
}

/** The `m` channels with the largest scores, best first (ties: lower index first). */
export function topChannels(scores: ArrayLike<number>, m: number): number[] {
  if (!(m >= 1 && m <= scores.length)) throw new RegroupError('usage', `cannot keep ${m} of ${scores.length} channels`);
  const order = Array.from({ length: scores.length }, (_, c) => c);
  order.sort((a, b) => scores[b]! - scores[a]! || a - b);
  return order.slice(0, m);
}

/** Whether every score is a finite number (a NaN filter makes them all NaN). */
export function finiteScores(scores: ArrayLike<number>): boolean {
  for (let c = 0; c < scores.length; c++) if (!Number.isFinite(scores[c])) return false;
  return true;
}

/** P[rows, :] as a float64 m × C matrix (the fusion matrix P_top). */
export function selectRows(code: FusionCode, rows: readonly number[]): Float64Array {
  const c = code.channels;
  const out = new Float64Array(rows.length * c);
  rows.forEach((row, r) => out.set(code.probabilities.subarray(row * c, (row + 1) * c), r * c));
  return out;
}

/** W̃ = P_top · W: P_top is m × C, W is C × rowSize (row-major); result m × rowSize in float64. */
export function fuseRows(
  pTop: ArrayLike<number>,
  m: number,
  weights: ArrayLike<number>,
  channels: number,
): Float64Array {
  const rowSize = weights.length / channels;
  if (!Number.isInteger(rowSize) || pTop.length !== m * channels) {
    throw new RegroupError(
      'invalid-ir',
      `fusion: P_top of ${pTop.length} elements (${m} rows) and W of ${weights.length} do not match ${channels} channels`,
    );
  }
  const out = new Float64Array(m * rowSize);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < channels; c++) {
      const coefficient = pTop[r * channels + c]!;
      if (coefficient === 0) continue;
      for (let d = 0; d < rowSize; d++)
        out[r * rowSize + d] = out[r * rowSize + d]! + coefficient * weights[c * rowSize + d]!;
    }
  }
  return out;
}
