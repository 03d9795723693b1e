/**
 * Optimizer update nodes with PyTorch's rules (g the gradient, masked: g ← g·mask; lr and
 * the 1-based step t are graph inputs):
 *
 *   SGD    g ← g + wd·w;  v' = μ·v + g;  d = nesterov ? g + μ·v' : v'   (d = g when μ = 0)
 *          w' = w − lr·d·mask
 *   Adam   g ← g + wd·w                                  (AdamW instead: w ← w·(1 − lr·wd))
 *          m' = β₁·m + (1 − β₁)·g;  v' = β₂·v + (1 − β₂)·g²
 *          w' = w − lr/(1 − β₁ᵗ) · m' / (√v' / √(1 − β₂ᵗ) + eps) · mask
 *
 * Masked entries get zero gradient, so their slots stay zero and their update is zero: a
 * masked weight that starts at 0 stays exactly 0.
 */
import type { DataType } from '../ir/dtype.js';
import type { Value } from '../ir/node.js';
import type { Emitter } from './emitter.js';
import type { OptimizerSpec } from './types.js';

/** One parameter to update. */
export interface ParameterUpdate {
  readonly name: string;
  readonly value: Value;
  readonly gradient: Value;
  readonly mask?: Value;
  /** Learning-rate multiplier (default 1). */
  readonly lrScale?: number;
}

/** An optimizer slot: a state input and the value to carry to the next step. */
export interface SlotUpdate {
  readonly parameter: string;
  readonly slot: string;
  readonly input: Value;
  readonly next: Value;
}

export interface OptimizerResult {
  /** Updated parameter per parameter name. */
  readonly params: Map<string, Value>;
  readonly slots: SlotUpdate[];
}

/** The shared scalars of a step. */
interface StepScalars {
  readonly lr: Value;
  readonly step: Value;
  readonly dtype: DataType;
}

/** Emit the update of every parameter; `addSlot` creates a state input shaped like a parameter. */
export function emitOptimizer(
  e: Emitter,
  spec: OptimizerSpec,
  params: readonly ParameterUpdate[],
  scalars: StepScalars,
  addSlot: (p: ParameterUpdate, slot: string) => Value,
): OptimizerResult {
  const result: OptimizerResult = { params: new Map(), slots: [] };
  const slot = (p: ParameterUpdate, name: string, next: (input: Value) => Value): Value => {
    const input = addSlot(p, name);
    const value = next(input);
    result.slots.push({ parameter: p.name, slot: name, input, next: value });
    return value;
  };
  // Scalars per learning-rate multiplier, shared by the parameters that have it.
  const scaled = new Map<number, { s: StepScalars; adam?: ReturnType<typeof adamScalars> }>();
  const scalarsFor = (scale: number) => {
    if (!scaled.has(scale)) {
      const s = scale === 1 ? scalars : { ...scalars, lr: e.mul(scalars.lr, e.scalar(scale, scalars.dtype)) };
      scaled.set(scale, { s, adam: spec.kind === 'sgd' ? undefined : adamScalars(e, spec, s) });
    }
    return scaled.get(scale)!;
  };
  for (const p of params) {
    const gradient = p.mask ? e.mul(p.gradient, p.mask) : p.gradient;
    const masked = { ...p, gradient };
    const { s, adam } = scalarsFor(p.lrScale ?? 1);
    const updated = spec.kind === 'sgd' ? sgd(e, spec, masked, s, slot) : adamStep(e, spec, masked, s, adam!, slot);
    result.params.set(p.name, updated);
  }
  return result;
}

type SlotMaker = (p: ParameterUpdate, name: string, next: (input: Value) => Value) => Value;

function sgd(
  e: Emitter,
  spec: Extract<OptimizerSpec, { kind: 'sgd' }>,
  p: ParameterUpdate,
  s: StepScalars,
  slot: SlotMaker,
): Value {
  const g = spec.weightDecay ? e.add(p.gradient, e.mul(p.value, e.scalar(spec.weightDecay, s.dtype))) : p.gradient;
  let direction = g;
  if (spec.momentum !== 0) {
    const mu = e.scalar(spec.momentum, s.dtype);
    const velocity = slot(p, 'momentum_buffer', (v) => e.add(e.mul(v, mu), g));
    direction = spec.nesterov ? e.add(g, e.mul(velocity, mu)) : velocity;
  }
  return e.sub(p.value, e.mul(masked(e, direction, p), s.lr));
}

/** Bias corrections 1 − β₁ᵗ and √(1 − β₂ᵗ), shared by every parameter. */
function adamScalars(e: Emitter, spec: Extract<OptimizerSpec, { kind: 'adam' | 'adamw' }>, s: StepScalars) {
  const one = e.scalar(1, s.dtype);
  const correction1 = e.sub(one, e.op('Pow', [e.scalar(spec.beta1, s.dtype), s.step]));
  const correction2Root = e.op('Sqrt', [e.sub(one, e.op('Pow', [e.scalar(spec.beta2, s.dtype), s.step]))]);
  const stepSize = e.div(s.lr, correction1);
  const decay =
    spec.kind === 'adamw' && spec.weightDecay
      ? e.sub(one, e.mul(s.lr, e.scalar(spec.weightDecay, s.dtype)))
      : undefined;
  return { correction2Root, stepSize, decay };
}

function adamStep(
  e: Emitter,
  spec: Extract<OptimizerSpec, { kind: 'adam' | 'adamw' }>,
  p: ParameterUpdate,
  s: StepScalars,
  k: ReturnType<typeof adamScalars>,
  slot: SlotMaker,
): Value {
  const g =
    spec.kind === 'adam' && spec.weightDecay
      ? e.add(p.gradient, e.mul(p.value, e.scalar(spec.weightDecay, s.dtype)))
      : p.gradient;
  const m = slot(p, 'exp_avg', (old) =>
    e.add(e.mul(old, e.scalar(spec.beta1, s.dtype)), e.mul(g, e.scalar(1 - spec.beta1, s.dtype))),
  );
  const v = slot(p, 'exp_avg_sq', (old) =>
    e.add(e.mul(old, e.scalar(spec.beta2, s.dtype)), e.mul(e.mul(g, g), e.scalar(1 - spec.beta2, s.dtype))),
  );
  const denominator = e.add(e.div(e.op('Sqrt', [v]), k.correction2Root), e.scalar(spec.eps, s.dtype));
  const base = k.decay ? e.mul(p.value, k.decay) : p.value;
  return e.sub(base, e.mul(masked(e, e.div(m, denominator), p), k.stepSize));
}

function masked(e: Emitter, update: Value, p: ParameterUpdate): Value {
  return p.mask ? e.mul(update, p.mask) : update;
}
