/**
 * Latency model for lowering grouped convolutions on the CPU provider, in units of one
 * dense-conv multiply-accumulate at the provider's peak rate ("MAC-equivalents").
 *
 * Fitted to the figures in DESIGN.md (torchvision ResNet-18, every 3×3 conv of the residual
 * stages made a uniform grouped conv, ORT 1.30 CPU, 2-core AVX-512; dense 9.7 ms at batch 1,
 * 71 ms at batch 8 ≈ 187 MMAC/ms). With S the SIMD block, N the batch, P the output
 * positions of one image (H_out·W_out), k² the kernel area:
 *
 *   conv node       Σ_groups N·P·k² · ⌈m⌉_S · ŵ  +  g · G·P  +  O
 *       m          filters of the group, rounded up to a multiple of S (a partial SIMD
 *                  block of output channels costs a whole one),
 *       ŵ          input channels of the group: w when S | w, else min(1.375·w, ⌈w⌉_S)
 *                  ("other sizes cost about 35–40% more"; padding to ⌈w⌉_S pays when it
 *                  is cheaper, which is how the padded form picks its width),
 *       G = 8000   per-group cost per output position, independent of the batch
 *                  (≈ 0.04 µs: fitted, it explains why 16 narrow groups realise 0.15 of
 *                  their MACs ratio at batch 1 but 0.38 at batch 8),
 *       O          per-node dispatch, ≈ 2 µs.
 *   copy node       N·elements·C + O  (Gather, Slice, Concat; C = 50 ≈ 0.27 ns per float)
 *
 * The model reproduces the measured realised ratios (batch 1 / batch 8) within 0.06: groups
 * = 2 0.88 / 0.98 (measured 0.89 / 0.97), groups = 4 0.58 / 0.92 (0.54 / 0.88), groups = 16
 * 0.10 / 0.36 (0.15 / 0.38) (test/passes/lower-grouped.test.ts recomputes them). It only
 * ranks lowerings; a caller that can measure supplies `tune`.
 */

/** Per-group cost per output position (MAC-equivalents), independent of the batch. */
export const GROUP_COST_PER_POSITION = 8000;
/** Cost of one extra node (MAC-equivalents). */
export const NODE_COST = 374_000;
/** Cost of copying one element (MAC-equivalents). */
export const COPY_COST_PER_ELEMENT = 50;
/** Penalty on an input width that is not a multiple of the SIMD block. */
export const MISALIGNED_WIDTH_FACTOR = 1.375;

/** One op the lowering emits, as the cost model sees it. */
export type CostOp =
  /** A Conv node: filters and input channels of each of its groups. */
  | { readonly kind: 'conv'; readonly groups: readonly { readonly filters: number; readonly width: number }[] }
  /** A data movement node (Gather, Slice, Concat) writing `channels` channels. */
  | { readonly kind: 'copy'; readonly channels: number; readonly at: 'input' | 'output' };

/** Where a layer runs: kernel area and positions per image. */
export interface LayerGeometry {
  readonly kernelArea: number;
  readonly inputPositions: number;
  readonly outputPositions: number;
}

export interface CostModelOptions {
  readonly simdBlock: number;
  readonly batch: number;
}

const roundUp = (x: number, block: number) => Math.ceil(x / block) * block;

/** Effective input width ŵ of one group. */
export function effectiveWidth(width: number, simdBlock: number): number {
  return width % simdBlock === 0 ? width : Math.min(MISALIGNED_WIDTH_FACTOR * width, roundUp(width, simdBlock));
}

/** Modelled latency of one op (MAC-equivalents). */
export function opCost(op: CostOp, geometry: LayerGeometry, options: CostModelOptions): number {
  if (op.kind === 'copy') {
    const positions = op.at === 'input' ? geometry.inputPositions : geometry.outputPositions;
    return options.batch * op.channels * positions * COPY_COST_PER_ELEMENT + NODE_COST;
  }
  const P = geometry.outputPositions;
  let cost = NODE_COST + op.groups.length * GROUP_COST_PER_POSITION * P;
  for (const g of op.groups)
    cost +=
      options.batch *
      P *
      geometry.kernelArea *
      roundUp(g.filters, options.simdBlock) *
      effectiveWidth(g.width, options.simdBlock);
  return cost;
}

/** Modelled latency of a list of ops. */
export function opsCost(ops: readonly CostOp[], geometry: LayerGeometry, options: CostModelOptions): number {
  return ops.reduce((sum, op) => sum + opCost(op, geometry, options), 0);
}

/**
 * (dense − grouped) / (dense − dense/G) for a conv split into G equal groups: the share of the
 * MACs saving the model expects to run.
 */
export function realisedShare(
  outChannels: number,
  inChannels: number,
  groups: number,
  geometry: LayerGeometry,
  options: CostModelOptions,
): number {
  const dense = opCost({ kind: 'conv', groups: [{ filters: outChannels, width: inChannels }] }, geometry, options);
  const group = { filters: outChannels / groups, width: inChannels / groups };
  const grouped = opCost({ kind: 'conv', groups: new Array(groups).fill(group) }, geometry, options);
  return (dense - grouped) / (dense - dense / groups);
}
