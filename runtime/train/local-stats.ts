/**
 * Streaming least-squares statistics for one layer over calibration batches.
 *
 * Rows: a Conv contributes one row per sampled output position (n, oy, ox) — per group g the
 * im2col patch x_g of the compressed input X' that the output position reads,
 *   x_g[(c·kh + ky)·kw + kx] = X'[n, g·C_g + c, oy·sh − p_top + ky·dh, ox·sw − p_left + kx·dw]
 * (zero outside the image), followed by a 1 for the bias; a Gemm/MatMul contributes the
 * input feature vector at a sampled row (one per image for Gemm). With the dense layer's
 * output Y (every dense channel) and the compressed layer's current output Ŷ at the same
 * positions, the sums kept in float64 are
 *   G_g = Σ x_g·x_gᵀ            ((K+1)², the Gram matrix)
 *   XY_g = Σ x_g·y[T_g]ᵀ        ((K+1)×|T_g|; T_g = the dense channels group g's filters target,
 *                                or every dense channel while the output map is unknown)
 *   Σ y_d, Σ y_d², Σ ŷ_o, Σ ŷ_o², Σ ŷ_o·y_d   (errors before refitting, correlations)
 * — never the activations themselves. Rows are buffered in column-major blocks of
 * BLOCK_ROWS so the Gram update runs as dot products over contiguous memory.
 * Positions: `positionsPerImage` distinct positions per image (all when fewer), drawn by a
 * per-layer seeded generator in image order, so a run is repeatable.
 */
import type { Tensor as OrtTensor } from 'onnxruntime-node';
import { Random } from '../../compiler/util/random.js';
import { addCrossProducts, addGram, symmetrize } from '../../compiler/util/linalg.js';
import type { LayerPlan } from './local-layers.js';

const BLOCK_ROWS = 64;

/** A shape or geometry mismatch found while collecting; the layer is skipped with this reason. */
export class LayerMismatch extends Error {}

/** Conv geometry resolved against the first batch. */
interface ResolvedConv {
  readonly inChannels: number;
  readonly inH: number;
  readonly inW: number;
  readonly outH: number;
  readonly outW: number;
  readonly padTop: number;
  readonly padLeft: number;
}

export class LayerStatistics {
  /** Dense channels whose cross products with group g's patches are kept. */
  readonly targets: Int32Array[];
  readonly grams: Float64Array[];
  readonly xy: Float64Array[];
  readonly ySum: Float64Array;
  readonly ySquares: Float64Array;
  readonly hatSum: Float64Array;
  readonly hatSquares: Float64Array;
  /** Σ ŷ_o·y_d, outputs × denseOutputs. */
  readonly cross: Float64Array;
  rows = 0;
  images = 0;
  readonly #plan: LayerPlan;
  readonly #width: number;
  readonly #patchBlocks: Float64Array[];
  readonly #yBlock: Float64Array;
  readonly #hatBlock: Float64Array;
  readonly #targetBlock: Float64Array;
  readonly #positionsPerImage: number;
  readonly #random: Random;
  #pending = 0;
  #order: Int32Array | undefined;
  #conv: ResolvedConv | undefined;

  /** `keep`: dense channel of each output when known in advance, else undefined (all dense channels are kept as targets). */
  constructor(plan: LayerPlan, keep: Int32Array | undefined, positionsPerImage: number, seed: number) {
    this.#plan = plan;
    this.#width = plan.features + 1;
    this.#positionsPerImage = positionsPerImage;
    this.#random = new Random((seed + 7919 * (plan.index + 1)) >>> 0);
    const perGroup = plan.outputs / plan.groups;
    const all = Int32Array.from({ length: plan.denseOutputs }, (_, d) => d);
    this.targets = Array.from({ length: plan.groups }, (_, g) =>
      keep ? keep.slice(g * perGroup, (g + 1) * perGroup) : all,
    );
    this.grams = this.targets.map(() => new Float64Array(this.#width * this.#width));
    this.xy = this.targets.map((t) => new Float64Array(this.#width * t.length));
    this.#patchBlocks = this.targets.map(() => new Float64Array(this.#width * BLOCK_ROWS));
    this.ySum = new Float64Array(plan.denseOutputs);
    this.ySquares = new Float64Array(plan.denseOutputs);
    this.hatSum = new Float64Array(plan.outputs);
    this.hatSquares = new Float64Array(plan.outputs);
    this.cross = new Float64Array(plan.outputs * plan.denseOutputs);
    this.#yBlock = new Float64Array(plan.denseOutputs * BLOCK_ROWS);
    this.#hatBlock = new Float64Array(plan.outputs * BLOCK_ROWS);
    this.#targetBlock = new Float64Array(Math.max(...this.targets.map((t) => t.length)) * BLOCK_ROWS);
  }

  /** Add one batch: the compressed layer's input and output, and the dense layer's output. Throws LayerMismatch. */
  add(input: OrtTensor, denseOutput: OrtTensor, output: OrtTensor): void {
    for (const [t, what] of [
      [input, 'input'],
      [denseOutput, 'dense output'],
      [output, 'output'],
    ] as const) {
      if (t.type !== 'float32') throw new LayerMismatch(`its ${what} is ${t.type}, not float32`);
    }
    if (this.#plan.kind === 'Conv') this.#addConv(input, denseOutput, output);
    else this.#addLinear(input, denseOutput, output);
  }

  /** Flush buffered rows and fill the lower triangles of the Gram matrices. */
  finish(): void {
    this.#flush();
    for (const gram of this.grams) symmetrize(gram, this.#width);
  }

  #addConv(input: OrtTensor, denseOutput: OrtTensor, output: OrtTensor): void {
    const plan = this.#plan;
    const conv = (this.#conv ??= resolveConv(plan, input.dims));
    const [n, outH, outW] = spatialOf(output.dims, plan.conv!.spatialRank, 'output');
    const denseDims = spatialOf(denseOutput.dims, plan.conv!.spatialRank, 'dense output');
    expectDims(input.dims, [n, conv.inChannels], 'input channels');
    if (outH !== conv.outH || outW !== conv.outW || output.dims[1] !== plan.outputs)
      throw new LayerMismatch(
        `its output is [${output.dims.join(',')}], expected ${plan.outputs} channels of ${conv.outH}×${conv.outW}`,
      );
    if (
      denseDims[1] !== outH ||
      denseDims[2] !== outW ||
      denseOutput.dims[1] !== plan.denseOutputs ||
      denseDims[0] !== n
    ) {
      throw new LayerMismatch(
        `the dense output is [${denseOutput.dims.join(',')}] but the compressed output is [${output.dims.join(',')}]; spatial sizes must match`,
      );
    }
    const x = input.data as Float32Array;
    const plane = outH * outW;
    for (let image = 0; image < n; image++) {
      for (const position of this.#positions(plane)) {
        for (let g = 0; g < plan.groups; g++) this.#writePatch(x, conv, image, position, g);
        this.#writeOutputs(
          denseOutput.data as Float32Array,
          output.data as Float32Array,
          image,
          position,
          plane,
          'channels-first',
        );
        this.#advance();
      }
      this.images++;
    }
  }

  #addLinear(input: OrtTensor, denseOutput: OrtTensor, output: OrtTensor): void {
    const plan = this.#plan;
    const dims = input.dims;
    if (dims.length < 2 || dims.at(-1) !== plan.features)
      throw new LayerMismatch(`its input is [${dims.join(',')}], expected [N, …, ${plan.features}]`);
    const n = dims[0]!;
    const per = dims.slice(1, -1).reduce((a, b) => a * b, 1);
    expectDims(output.dims, [...dims.slice(0, -1), plan.outputs], 'output');
    expectDims(denseOutput.dims, [...dims.slice(0, -1), plan.denseOutputs], 'dense output');
    const x = input.data as Float32Array;
    const block = this.#patchBlocks[0]!;
    for (let image = 0; image < n; image++) {
      for (const position of this.#positions(per)) {
        const row = (image * per + position) * plan.features;
        for (let k = 0; k < plan.features; k++) block[k * BLOCK_ROWS + this.#pending] = x[row + k]!;
        block[plan.features * BLOCK_ROWS + this.#pending] = 1;
        this.#writeOutputs(
          denseOutput.data as Float32Array,
          output.data as Float32Array,
          image,
          position,
          per,
          'channels-last',
        );
        this.#advance();
      }
      this.images++;
    }
  }

  /** The im2col patch of group g at one output position into the pending row. */
  #writePatch(x: Float32Array, conv: ResolvedConv, image: number, position: number, g: number): void {
    const geometry = this.#plan.conv!;
    const [kh, kw] = geometry.kernel;
    const [sh, sw] = geometry.strides;
    const [dh, dw] = geometry.dilations;
    const perGroup = conv.inChannels / this.#plan.groups;
    const block = this.#patchBlocks[g]!;
    const r = this.#pending;
    const oy = Math.floor(position / conv.outW);
    const ox = position - oy * conv.outW;
    const y0 = oy * sh - conv.padTop;
    const x0 = ox * sw - conv.padLeft;
    let feature = 0;
    for (let c = 0; c < perGroup; c++) {
      const base = (image * conv.inChannels + g * perGroup + c) * conv.inH;
      for (let ky = 0; ky < kh; ky++) {
        const iy = y0 + ky * dh;
        const inside = iy >= 0 && iy < conv.inH;
        for (let kx = 0; kx < kw; kx++, feature++) {
          const ix = x0 + kx * dw;
          block[feature * BLOCK_ROWS + r] = inside && ix >= 0 && ix < conv.inW ? x[(base + iy) * conv.inW + ix]! : 0;
        }
      }
    }
    block[feature * BLOCK_ROWS + r] = 1;
  }

  /** Dense and compressed outputs at one position into the pending row. */
  #writeOutputs(
    dense: Float32Array,
    compressed: Float32Array,
    image: number,
    position: number,
    per: number,
    layout: 'channels-first' | 'channels-last',
  ): void {
    const r = this.#pending;
    const { outputs, denseOutputs } = this.#plan;
    for (let d = 0; d < denseOutputs; d++) {
      const at =
        layout === 'channels-first'
          ? (image * denseOutputs + d) * per + position
          : (image * per + position) * denseOutputs + d;
      this.#yBlock[d * BLOCK_ROWS + r] = dense[at]!;
    }
    for (let o = 0; o < outputs; o++) {
      const at =
        layout === 'channels-first' ? (image * outputs + o) * per + position : (image * per + position) * outputs + o;
      this.#hatBlock[o * BLOCK_ROWS + r] = compressed[at]!;
    }
  }

  #advance(): void {
    this.rows++;
    if (++this.#pending === BLOCK_ROWS) this.#flush();
  }

  /** Distinct positions out of `count`, `positionsPerImage` of them (all when fewer), by partial Fisher–Yates. */
  #positions(count: number): Int32Array {
    if (!this.#order || this.#order.length !== count) this.#order = Int32Array.from({ length: count }, (_, i) => i);
    const take = Math.min(this.#positionsPerImage, count);
    const order = this.#order;
    for (let i = 0; i < take; i++) {
      const j = i + this.#random.int(count - i);
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    return order.subarray(0, take);
  }

  #flush(): void {
    const rows = this.#pending;
    if (rows === 0) return;
    const { outputs, denseOutputs } = this.#plan;
    this.targets.forEach((targets, g) => {
      const patch = this.#patchBlocks[g]!;
      addGram(this.grams[g]!, this.#width, patch, rows, BLOCK_ROWS);
      addCrossProducts(this.xy[g]!, patch, this.#width, this.#targetRows(targets), targets.length, rows, BLOCK_ROWS);
    });
    addCrossProducts(this.cross, this.#hatBlock, outputs, this.#yBlock, denseOutputs, rows, BLOCK_ROWS);
    accumulateMoments(this.#yBlock, denseOutputs, rows, this.ySum, this.ySquares);
    accumulateMoments(this.#hatBlock, outputs, rows, this.hatSum, this.hatSquares);
    this.#pending = 0;
  }

  /** The Y block restricted to `targets` (the block itself when every dense channel is a target). */
  #targetRows(targets: Int32Array): Float64Array {
    if (targets.length === this.#plan.denseOutputs && targets.every((d, i) => d === i)) return this.#yBlock;
    targets.forEach((d, t) =>
      this.#targetBlock.set(this.#yBlock.subarray(d * BLOCK_ROWS, (d + 1) * BLOCK_ROWS), t * BLOCK_ROWS),
    );
    return this.#targetBlock;
  }
}

function accumulateMoments(
  block: Float64Array,
  columns: number,
  rows: number,
  sum: Float64Array,
  squares: Float64Array,
): void {
  for (let c = 0; c < columns; c++) {
    let s = 0;
    let q = 0;
    for (let r = 0; r < rows; r++) {
      const v = block[c * BLOCK_ROWS + r]!;
      s += v;
      q += v * v;
    }
    sum[c] = sum[c]! + s;
    squares[c] = squares[c]! + q;
  }
}

/** [N, H, W] of a channels-first tensor (H = 1 for 1-D). */
function spatialOf(dims: readonly number[], spatialRank: 1 | 2, what: string): [number, number, number] {
  if (dims.length !== spatialRank + 2)
    throw new LayerMismatch(`its ${what} is [${dims.join(',')}], expected rank ${spatialRank + 2}`);
  return spatialRank === 1 ? [dims[0]!, 1, dims[2]!] : [dims[0]!, dims[2]!, dims[3]!];
}

function expectDims(dims: readonly number[], want: readonly number[], what: string): void {
  if (want.some((d, i) => dims[i] !== d))
    throw new LayerMismatch(`its ${what} are [${dims.join(',')}], expected [${want.join(',')}, …]`);
}

/** Pads and output size from the input shape (auto_pad as ONNX defines it), checked against the weight. */
function resolveConv(plan: LayerPlan, inputDims: readonly number[]): ResolvedConv {
  const g = plan.conv!;
  const [, inH, inW] = spatialOf(inputDims, g.spatialRank, 'input');
  const inChannels = inputDims[1]!;
  const [kh, kw] = g.kernel;
  if (inChannels !== plan.groups * (plan.features / (kh * kw)))
    throw new LayerMismatch(
      `its input has ${inChannels} channels but the weight reads ${plan.groups}×${plan.features / (kh * kw)}`,
    );
  const [padTop, padBottom] = axisPads(g, 0, inH);
  const [padLeft, padRight] = axisPads(g, 1, inW);
  const span = (k: number, d: number) => (k - 1) * d + 1;
  const outH = Math.floor((inH + padTop + padBottom - span(kh, g.dilations[0])) / g.strides[0]) + 1;
  const outW = Math.floor((inW + padLeft + padRight - span(kw, g.dilations[1])) / g.strides[1]) + 1;
  return { inChannels, inH, inW, outH, outW, padTop, padLeft };
}

function axisPads(g: LayerPlan['conv'] & object, axis: 0 | 1, size: number): [number, number] {
  if (g.pads) return [g.pads[axis]!, g.pads[axis + 2]!];
  if (g.spatialRank === 1 && axis === 0) return [0, 0];
  const out = Math.ceil(size / g.strides[axis]);
  const total = Math.max(0, (out - 1) * g.strides[axis] + (g.kernel[axis] - 1) * g.dilations[axis] + 1 - size);
  const small = Math.floor(total / 2);
  return g.autoPad === 'SAME_UPPER' ? [small, total - small] : [total - small, small];
}
