/**
 * Sliding-window geometry shared by the Conv and pooling gradients.
 *
 * Per spatial axis with input size I, output size O, kernel k, dilation d, stride s and
 * begin pad p (auto_pad resolved to explicit pads from the static sizes), the forward
 * window of output o covers input rows o·s − p + j·d for j < k. The adjoint of that
 * scatter is a ConvTranspose with the same stride, dilation and begin pad; its output
 * size s·(O − 1) + op + d·(k − 1) + 1 − p − e must be I, so with F = s·(O − 1) + d·(k − 1) + 1:
 *
 *   e = F − p − I,  op = 0     when F − p ≥ I (the last window reaches or passes the end)
 *   e = 0,          op = I + p − F  otherwise (trailing rows no window reads, < s of them)
 */
import type { Value } from '../../ir/node.js';
import type { RuleContext } from './context.js';
import { intsOr, staticTail } from './helpers.js';

export interface Window {
  readonly kernel: readonly number[];
  readonly strides: readonly number[];
  readonly dilations: readonly number[];
  readonly padsBegin: readonly number[];
  readonly padsEnd: readonly number[];
  readonly inSize: readonly number[];
  readonly outSize: readonly number[];
}

/** The window of a Conv/pool node reading `x` and writing `y`, with auto_pad made explicit. */
export function windowOf(c: RuleContext, x: Value, y: Value, kernel: readonly number[]): Window {
  const rank = kernel.length;
  const inSize = staticTail(c, x, 2);
  const outSize = staticTail(c, y, 2);
  const strides = intsOr(c, 'strides', rank, 1);
  const dilations = intsOr(c, 'dilations', rank, 1);
  const autoPad = c.node.getString('auto_pad', 'NOTSET');
  const pads = intsOr(c, 'pads', 2 * rank, 0);
  let padsBegin = pads.slice(0, rank);
  let padsEnd = pads.slice(rank);
  if (autoPad === 'VALID') padsBegin = padsEnd = Array<number>(rank).fill(0);
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    const total = kernel.map((k, a) =>
      Math.max(0, (outSize[a]! - 1) * strides[a]! + dilations[a]! * (k - 1) + 1 - inSize[a]!),
    );
    const small = total.map((t) => Math.floor(t / 2));
    padsBegin = autoPad === 'SAME_UPPER' ? small : total.map((t, a) => t - small[a]!);
    padsEnd = total.map((t, a) => t - padsBegin[a]!);
  }
  return { kernel, strides, dilations, padsBegin, padsEnd, inSize, outSize };
}

/** Pads and output_padding of the ConvTranspose that maps the output grid back onto the input. */
export function transposeGeometry(w: Window): { pads: number[]; outputPadding: number[] } {
  const ends: number[] = [];
  const outputPadding: number[] = [];
  w.kernel.forEach((k, a) => {
    const reach = w.strides[a]! * (w.outSize[a]! - 1) + w.dilations[a]! * (k - 1) + 1 - w.padsBegin[a]!;
    const end = reach - w.inSize[a]!;
    ends.push(Math.max(end, 0));
    outputPadding.push(Math.max(-end, 0));
  });
  return { pads: [...w.padsBegin, ...ends], outputPadding };
}

/** Explicit pads attribute value [begin…, end…]. */
export function explicitPads(w: Window): number[] {
  return [...w.padsBegin, ...w.padsEnd];
}
