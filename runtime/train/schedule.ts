/**
 * Learning-rate schedules, evaluated per iteration (one optimizer update).
 *
 * With E epochs of B iterations, T = E·B updates in all, W = warmupEpochs·B warm-up updates
 * and i the 0-based index of the update about to run:
 *   warm-up (i < W):   lr(i) = base · (i + 1) / W                      (linear, reaches base at i = W − 1)
 *   constant:          lr(i) = base
 *   step:              lr(i) = base · gamma^k,  k = #{ m ∈ milestones : m ≤ ⌊i / B⌋ }   (milestones in epochs)
 *   cosine:            lr(i) = min + (base − min) · (1 + cos(π · (i − W) / (T − W))) / 2
 * The cosine phase starts after the warm-up, so lr(W) = base and it decays to `min` at i = T.
 */
import { RegroupError } from '../../compiler/errors.js';

/** The schedule shapes of the header. */
export type ScheduleKind = 'constant' | 'step' | 'cosine';
/** Every schedule kind, for flag validation. */
export const SCHEDULE_KINDS: readonly ScheduleKind[] = ['constant', 'step', 'cosine'];

/** A schedule's shape and rates, independent of the run's length. */
export interface ScheduleSpec {
  kind: ScheduleKind;
  /** The peak learning rate (after warm-up). */
  baseLr: number;
  /** Linear warm-up length in epochs (may be fractional); default 0. */
  warmupEpochs?: number;
  /** step: epochs at which the rate is multiplied by gamma (default [E/2, 3E/4]). */
  milestones?: readonly number[];
  /** step: factor per milestone (default 0.1). */
  gamma?: number;
  /** cosine: the final rate (default 0). */
  minLr?: number;
}

/** A schedule bound to the run's length: `at(i)` is the rate of update i (0-based). */
export interface Schedule {
  readonly spec: Required<ScheduleSpec>;
  readonly totalIterations: number;
  at(iteration: number): number;
}

/** Bind a schedule to `epochs` epochs of `iterationsPerEpoch` updates. */
export function makeSchedule(spec: ScheduleSpec, epochs: number, iterationsPerEpoch: number): Schedule {
  const full = withDefaults(spec, epochs);
  checkSpec(full, epochs, iterationsPerEpoch);
  const total = epochs * iterationsPerEpoch;
  const warmup = Math.min(total, Math.round(full.warmupEpochs * iterationsPerEpoch));
  return {
    spec: full,
    totalIterations: total,
    at: (iteration) => rateAt(full, iteration, { total, warmup, perEpoch: iterationsPerEpoch }),
  };
}

function withDefaults(spec: ScheduleSpec, epochs: number): Required<ScheduleSpec> {
  return {
    kind: spec.kind,
    baseLr: spec.baseLr,
    warmupEpochs: spec.warmupEpochs ?? 0,
    milestones: spec.milestones ?? [Math.round(epochs / 2), Math.round((3 * epochs) / 4)],
    gamma: spec.gamma ?? 0.1,
    minLr: spec.minLr ?? 0,
  };
}

function checkSpec(spec: Required<ScheduleSpec>, epochs: number, perEpoch: number): void {
  if (!SCHEDULE_KINDS.includes(spec.kind))
    throw new RegroupError('usage', `unknown learning-rate schedule '${spec.kind}'; use ${SCHEDULE_KINDS.join(', ')}`);
  if (!(spec.baseLr > 0) || !Number.isFinite(spec.baseLr))
    throw new RegroupError('usage', `learning rate ${spec.baseLr} must be a positive number`);
  if (!(spec.warmupEpochs >= 0)) throw new RegroupError('usage', `warm-up ${spec.warmupEpochs} must be ≥ 0 epochs`);
  if (!(spec.gamma > 0)) throw new RegroupError('usage', `step schedule gamma ${spec.gamma} must be positive`);
  if (!(spec.minLr >= 0) || spec.minLr > spec.baseLr)
    throw new RegroupError('usage', `cosine minimum rate ${spec.minLr} must lie in [0, ${spec.baseLr}]`);
  if (!Number.isInteger(epochs) || epochs <= 0)
    throw new RegroupError('usage', `epochs ${epochs} must be a positive whole number`);
  if (!Number.isInteger(perEpoch) || perEpoch <= 0)
    throw new RegroupError('usage', `${perEpoch} iterations per epoch: the training set holds less than one batch`);
}

interface Extent {
  total: number;
  warmup: number;
  perEpoch: number;
}

function rateAt(spec: Required<ScheduleSpec>, iteration: number, extent: Extent): number {
  const { total, warmup, perEpoch } = extent;
  if (iteration < warmup) return (spec.baseLr * (iteration + 1)) / warmup;
  switch (spec.kind) {
    case 'constant':
      return spec.baseLr;
    case 'step': {
      const epoch = Math.floor(iteration / perEpoch);
      const passed = spec.milestones.filter((m) => m <= epoch).length;
      return spec.baseLr * spec.gamma ** passed;
    }
    case 'cosine': {
      const span = total - warmup;
      const progress = span > 0 ? Math.min(1, (iteration - warmup) / span) : 1;
      return spec.minLr + ((spec.baseLr - spec.minLr) * (1 + Math.cos(Math.PI * progress))) / 2;
    }
  }
}

/** One line describing a schedule, for reports: `cosine from 0.05, 1 warm-up epoch`. */
export function describeSchedule(spec: ScheduleSpec): string {
  const warm = spec.warmupEpochs ? `, ${spec.warmupEpochs} warm-up epoch${spec.warmupEpochs === 1 ? '' : 's'}` : '';
  if (spec.kind === 'step')
    return `step from ${spec.baseLr} ×${spec.gamma ?? 0.1} at epochs ${(spec.milestones ?? []).join(', ') || 'E/2, 3E/4'}${warm}`;
  if (spec.kind === 'cosine') return `cosine from ${spec.baseLr} to ${spec.minLr ?? 0}${warm}`;
  return `constant ${spec.baseLr}${warm}`;
}
