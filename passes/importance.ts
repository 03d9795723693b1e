/**
 * Channel importance, per coupled channel, aggregated over every member of its group
 * (DepGraph-style). Each member ("layer") scores the positions of its axis:
 *   l1    Σ|W[…, p, …]|                      (filter / column norm, Li et al. 2017)
 *   l2    √Σ W[…, p, …]²
 *   fpgm  Σ_q ‖F_p − F_q‖₂ over the layer's filters: filters near the geometric median
 *         are replaceable by the others (He et al. 2019); consumers contribute l2
 *   bn    |γ_p| of BatchNormalization scales (network slimming, Liu et al. 2017); groups
 *         without a BatchNormalization member fall back to l1
 * Scores are normalised per member (divided by the member's mean), summed per coupled
 * channel within the member (a flattened channel spans H·W Gemm columns), then
 * aggregated across members by sum, mean or max.
 */
import type { ChannelAnalysis, Touch } from '../compiler/analysis/channel-groups.js';
import { constantOf } from '../compiler/ir/constants.js';
import { DataType, isFloat } from '../compiler/ir/dtype.js';

export type Criterion = 'l1' | 'l2' | 'fpgm' | 'bn';
export type Aggregation = 'sum' | 'mean' | 'max';
export const CRITERIA: readonly Criterion[] = ['l1', 'l2', 'fpgm', 'bn'];

export interface ImportanceOptions {
  criterion?: Criterion;
  aggregate?: Aggregation;
}

/** Score of every coupled channel (keyed by root element); higher is more important. */
export function channelImportance(analysis: ChannelAnalysis, options: ImportanceOptions = {}): Map<number, number> {
  const criterion = options.criterion ?? 'l1';
  const contributions = new Map<number, number[]>();
  const add = (touch: Touch, scores: Float64Array) => {
    const perRoot = new Map<number, number>();
    touch.elems.forEach((e, p) => {
      const r = analysis.root(e);
      perRoot.set(r, (perRoot.get(r) ?? 0) + scores[p]!);
    });
    const mean = [...perRoot.values()].reduce((a, b) => a + b, 0) / Math.max(perRoot.size, 1);
    for (const [r, s] of perRoot) (contributions.get(r) ?? contributions.set(r, []).get(r)!).push(mean > 0 ? s / mean : 0);
  };
  if (criterion === 'bn') {
    for (const t of analysis.touches) if (isBnScale(t)) add(t, positionScores(t, 'abs'));
  }
  const covered = new Set(contributions.keys());
  for (const t of analysis.touches) {
    if (t.role !== 'out-channels' && t.role !== 'in-channels') continue;
    if (t.inputIndex !== 1) continue;
    if (criterion === 'bn' && t.elems.every((e) => covered.has(analysis.root(e)))) continue;
    const kind = criterion === 'l2' ? 'l2' : criterion === 'fpgm' ? (t.role === 'out-channels' ? 'fpgm' : 'l2') : 'l1';
    add(t, positionScores(t, kind));
  }
  const aggregate = options.aggregate ?? 'sum';
  const out = new Map<number, number>();
  for (const [r, list] of contributions) {
    const value = aggregate === 'max' ? Math.max(...list) : list.reduce((a, b) => a + b, 0) / (aggregate === 'mean' ? list.length : 1);
    out.set(r, value);
  }
  return out;
}

function isBnScale(t: Touch): boolean {
  return t.role === 'per-channel' && t.node.opType === 'BatchNormalization' && t.inputIndex === 1;
}

/** Per-position scores of a touched tensor along the touch's axis (no per-position copies). */
function positionScores(t: Touch, kind: 'l1' | 'l2' | 'abs' | 'fpgm'): Float64Array {
  const tensor = constantOf(t.node.inputs[t.inputIndex]);
  const positions = t.elems.length;
  const scores = new Float64Array(positions);
  if (!tensor || !isFloat(tensor.dtype)) return scores;
  const values = tensor.dtype === DataType.FLOAT ? (tensor.data as Float32Array) : tensor.toFloat64();
  const dims = tensor.dims;
  const outer = dims.slice(0, t.axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(t.axis + 1).reduce((a, b) => a * b, 1);
  const axisSize = dims[t.axis]!;
  // Grouped convs: the touch covers one group's slice, which is the weight's whole input axis.
  const vector = (p: number): Float64Array => {
    const out = new Float64Array(outer * inner);
    for (let o = 0; o < outer; o++) {
      const base = (o * axisSize + (p % axisSize)) * inner;
      for (let i = 0; i < inner; i++) out[o * inner + i] = values[base + i]!;
    }
    return out;
  };
  if (kind === 'fpgm') {
    const vectors = Array.from({ length: positions }, (_, p) => vector(p));
    for (let p = 0; p < positions; p++) {
      for (let q = p + 1; q < positions; q++) {
        const [a, b] = [vectors[p]!, vectors[q]!];
        let sum = 0;
        for (let i = 0; i < a.length; i++) sum += (a[i]! - b[i]!) ** 2;
        const d = Math.sqrt(sum);
        scores[p] = scores[p]! + d;
        scores[q] = scores[q]! + d;
      }
    }
    return scores;
  }
  for (let o = 0; o < outer; o++) {
    for (let p = 0; p < positions; p++) {
      const base = (o * axisSize + (p % axisSize)) * inner;
      let acc = 0;
      for (let i = 0; i < inner; i++) {
        const v = values[base + i]!;
        acc += kind === 'l2' ? v * v : Math.abs(v);
      }
      scores[p] = scores[p]! + acc;
    }
  }
  if (kind === 'l2') for (let p = 0; p < positions; p++) scores[p] = Math.sqrt(scores[p]!);
  return scores;
}
