/**
 * DGConv's gates and masks (Zhang et al., "Differentiable Learning-to-Group Channels via
 * Groupable ConvNets", ICCV 2019), built from standard ONNX ops inside the training model.
 *
 * A conv with C_out filters and C_in inputs has d = gcd(C_out, C_in) = n_1·…·n_K (its prime
 * factors, ascending) and r_out = C_out/d, r_in = C_in/d. Each factor has a gate θ_k:
 *
 *   g_k = (sign(θ_k) + 1)/2                      (straight-through: ∂g/∂θ = 1/2)
 *   U_k = (1 − e_k)·I + e_k·𝟙   (n_k × n_k)      (identity or all-ones)
 *   U   = (U_1 ⊗ … ⊗ U_K) ⊗ 𝟙(r_out × r_in)       W_train = W ⊙ U (over the kernel)
 *
 * with e_k the factor's openness. The paper uses e_k = g_k: any factor may close, and a
 * closed factor after an open one interleaves the groups (channel k of a group every d/n
 * channels), which ONNX's Conv(group) only runs after permuting the channels — and in a
 * residual network every conv reading or writing the same stream would need the same
 * permutation. regroup's default order is **contiguous**: e_k = sign(Σ_{j ≤ k} g_j) (an OR
 * over the leading gates, straight-through as well), so the closed factors are always the
 * leading ones and U is block diagonal with G = ∏_{k closed} n_k contiguous blocks — exactly
 * `Conv(group = G)` on the channels as they are. The set of group counts a layer can learn is
 * the paper's (every product of leading factors: 1, 2, 4, … for powers of two); what the
 * order gives up is which channels share a group.
 *
 * MACs: the layer computes nnz(U)/(C_out·C_in) = mean(U_1 ⊗ … ⊗ U_K) of its dense MACs, i.e.
 * ∏_k (1 + e_k(n_k − 1))/n_k = 1/G, differentiable in e through the same graph.
 */
import type { Connectivity } from '../../compiler/analysis/connectivity.js';
import type { Emitter } from '../../compiler/autodiff/emitter.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Value } from '../../compiler/ir/node.js';

/** Prime factors of n, ascending (1 → []). */
export function primeFactors(n: number): number[] {
  const out: number[] = [];
  let rest = n;
  for (let p = 2; p * p <= rest; p++)
    while (rest % p === 0) {
      out.push(p);
      rest /= p;
    }
  if (rest > 1) out.push(rest);
  return out;
}

export function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** How a layer's gates map to factor openness (see the header). */
export type GateOrder = 'contiguous' | 'kronecker';

/** The openness e_k (0 closed, 1 open) of each factor for hard gates g_k = [θ_k > 0]. */
export function openness(theta: ArrayLike<number>, order: GateOrder): number[] {
  const gates = Array.from(theta, (t) => (Math.sign(t) + 1) / 2);
  if (order === 'kronecker') return gates;
  let any = 0;
  return gates.map((g) => {
    any += g;
    return Math.sign(any);
  });
}

/**
 * Output channel o and input channel i are connected under openness e: for every factor,
 * either it is open or the two channels' digits agree (mixed radix over the factors, most
 * significant first, after dividing out r_out and r_in).
 */
export function connected(
  o: number,
  i: number,
  factors: readonly number[],
  open: readonly number[],
  rOut: number,
  rIn: number,
): boolean {
  let [a, b] = [Math.floor(o / rOut), Math.floor(i / rIn)];
  for (let k = factors.length - 1; k >= 0; k--) {
    const n = factors[k]!;
    if (open[k] === 0 && a % n !== b % n) return false;
    a = Math.floor(a / n);
    b = Math.floor(b / n);
  }
  return true;
}

/**
 * The connectivity U describes: one cluster per group, a group being the channels whose
 * digits agree on every closed factor (contiguous blocks in the contiguous order).
 */
export function gateConnectivity(
  outChannels: number,
  inChannels: number,
  factors: readonly number[],
  open: readonly number[],
): Connectivity {
  const d = factors.reduce((p, n) => p * n, 1);
  const [rOut, rIn] = [outChannels / d, inChannels / d];
  const key = (channel: number, r: number) => {
    let [digits, a] = ['', Math.floor(channel / r)];
    for (let k = factors.length - 1; k >= 0; k--) {
      if (open[k] === 0) digits = `${a % factors[k]!},${digits}`;
      a = Math.floor(a / factors[k]!);
    }
    return digits;
  };
  const groups = new Map<string, { filters: number[]; inputs: number[] }>();
  const group = (k: string) => groups.get(k) ?? groups.set(k, { filters: [], inputs: [] }).get(k)!;
  for (let o = 0; o < outChannels; o++) group(key(o, rOut)).filters.push(o);
  for (let i = 0; i < inChannels; i++) group(key(i, rIn)).inputs.push(i);
  const clusters = [...groups.values()].map((g) => ({
    filters: Int32Array.from(g.filters),
    inputs: Int32Array.from(g.inputs),
  }));
  return { outChannels, inChannels, clusters: clusters.sort((a, b) => a.filters[0]! - b.filters[0]!) };
}

/** Group count of a layer: ∏ of the closed factors. */
export function groupCount(factors: readonly number[], open: readonly number[]): number {
  return factors.reduce((g, n, k) => (open[k] === 0 ? g * n : g), 1);
}

/** What the step graph needs of one gated layer. */
export interface GateGraph {
  /** The mask U [C_out, C_in, 1…] (kernel axes of size 1), hard in the forward pass. */
  readonly mask: Value;
  /** mean(U) = this layer's share of its dense MACs, a float scalar. */
  readonly density: Value;
  /** The Sign outputs to differentiate straight through (TrainingSpec.straightThrough). */
  readonly straightThrough: readonly Value[];
}

/**
 * Emit U(θ) for one layer: θ [K] → gates → openness → Kronecker product → U; see the header.
 * `kernelRank` is the number of spatial axes of the weight (2 for a 2-D conv).
 */
export function emitGateMask(
  e: Emitter,
  theta: Value,
  factors: readonly number[],
  rOut: number,
  rIn: number,
  kernelRank: number,
  order: GateOrder,
): GateGraph {
  const { open, straightThrough } = emitOpenness(e, theta, factors.length, order);
  return { ...emitKronecker(e, open, factors, rOut, rIn, kernelRank), straightThrough };
}

/** θ [K] → openness e [K] (hard 0/1 forward), with the Sign outputs to differentiate straight through. */
export function emitOpenness(
  e: Emitter,
  theta: Value,
  K: number,
  order: GateOrder,
): { open: Value; straightThrough: Value[] } {
  const f = DataType.FLOAT;
  const sign = e.op('Sign', [theta]);
  const gates = e.add(e.mul(sign, e.scalar(0.5, f)), e.scalar(0.5, f));
  if (order === 'kronecker') return { open: gates, straightThrough: [sign] };
  // e_k = sign(Σ_{j ≤ k} g_j): a lower-triangular sum, then Sign (straight through).
  const lower = Array.from({ length: K * K }, (_, idx) => (idx % K <= Math.floor(idx / K) ? 1 : 0));
  const sums = e.reduceSum(e.mul(e.floats([K, K], lower, f), e.reshape(gates, e.int64([1, K]))), [1], false);
  const open = e.op('Sign', [sums]);
  return { open, straightThrough: [sign, open] };
}

/**
 * Openness e [K] → U = (⊗_k ((1 − e_k)·I + e_k·𝟙)) ⊗ 𝟙(r_out × r_in), shaped [C_out, C_in, 1…],
 * and mean(⊗_k …), the layer's density. Differentiable in e wherever e is.
 */
export function emitKronecker(
  e: Emitter,
  open: Value,
  factors: readonly number[],
  rOut: number,
  rIn: number,
  kernelRank: number,
): { mask: Value; density: Value } {
  const f = DataType.FLOAT;
  let product: Value | undefined;
  let size = 1;
  factors.forEach((n, k) => {
    // Gather of a scalar index (any opset; Slice's form changed at opset 10).
    const ek = e.reshape(e.op('Gather', [open, e.int64([k], [])]), e.int64([1, 1]));
    const identity = Array.from({ length: n * n }, (_, idx) => (idx % (n + 1) === 0 ? 1 : 0));
    const offDiagonal = identity.map((v) => 1 - v);
    const uk = e.add(e.floats([n, n], identity, f), e.mul(ek, e.floats([n, n], offDiagonal, f)));
    product = product
      ? e.reshape(
          e.mul(e.reshape(product, e.int64([size, 1, size, 1])), e.reshape(uk, e.int64([1, n, 1, n]))),
          e.int64([size * n, size * n]),
        )
      : uk;
    size *= n;
  });
  const kron = product!;
  const density = e.reduceMean(kron, [0, 1], false);
  const ones = e.floats([1, rOut, 1, rIn], new Array(rOut * rIn).fill(1), f);
  const expanded = e.mul(e.reshape(kron, e.int64([size, 1, size, 1])), ones);
  const mask = e.reshape(expanded, e.int64([size * rOut, size * rIn, ...new Array(kernelRank).fill(1)]));
  return { mask, density };
}
