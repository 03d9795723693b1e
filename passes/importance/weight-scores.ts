/**
 * Weight statistics per position of a touched tensor, and per coupled channel of a touch,
 * shared by the weight criteria:
 *   l1    Σ|W[…, p, …]|          l2  √Σ W[…, p, …]²          abs  |W[p]| (1-D parameters)
 *   fpgm  Σ_q ‖F_p − F_q‖₂ over the touch's positions (He et al. 2019)
 * A coupled channel's score in a touch is the sum over its positions (a flattened channel
 * spans H·W Gemm columns); `normalizedTouchScores` then divides by the touch's mean over its
 * coupled channels, so that layers of different scales can be compared.
 */
import type { ChannelAnalysis, Touch } from '../../compiler/analysis/channel-groups.js';
import { constantOf } from '../../compiler/ir/constants.js';
import { DataType, isFloat } from '../../compiler/ir/dtype.js';
import type { ScoringInput } from './criterion.js';

export type PositionKind = 'l1' | 'l2' | 'abs' | 'fpgm';

/** Sum of the position scores per coupled channel (root element), in the touch's position order. */
export function touchScores(touch: Touch, kind: PositionKind, analysis: ChannelAnalysis): Map<number, number> {
  const scores = positionScores(touch, kind);
  const perRoot = new Map<number, number>();
  touch.elems.forEach((e, p) => {
    const r = analysis.root(e);
    perRoot.set(r, (perRoot.get(r) ?? 0) + scores[p]!);
  });
  return perRoot;
}

/** `touchScores` divided by their mean over the touch's coupled channels (0 when the mean is 0); computed once per touch. */
export function normalizedTouchScores(touch: Touch, kind: PositionKind, input: ScoringInput): Map<number, number> {
  return input.memo(`normalized:${kind}`, touch, () => {
    const perRoot = touchScores(touch, kind, input.analysis);
    const mean = [...perRoot.values()].reduce((a, b) => a + b, 0) / Math.max(perRoot.size, 1);
    return new Map([...perRoot].map(([r, s]) => [r, mean > 0 ? s / mean : 0] as const));
  });
}

/** Per-position scores of a touched tensor along the touch's axis (no per-position copies). */
export function positionScores(t: Touch, kind: PositionKind): Float64Array {
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
  if (kind === 'fpgm') return geometricMedianDistances(Array.from({ length: positions }, (_, p) => vector(p)));
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

/** Σ_q ‖v_p − v_q‖₂ for every p. */
function geometricMedianDistances(vectors: Float64Array[]): Float64Array {
  const scores = new Float64Array(vectors.length);
  for (let p = 0; p < vectors.length; p++) {
    for (let q = p + 1; q < vectors.length; q++) {
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
