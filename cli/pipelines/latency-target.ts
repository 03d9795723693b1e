/**
 * Compressing to a measured latency (`--keep-latency F`, `--latency-ms X` at `--latency-batch
 * N`): the MACs target that makes a method's output run at the wanted latency, found by
 * measuring, not by assuming latency ∝ MACs.
 *
 * A probe structures the model at a MACs fraction k with the method, lowers it, and times it
 * against the dense model in interleaved rounds at the target batch: r(k) = latency / dense
 * latency. r is monotone in k up to noise but not proportional to it (fixed costs — stem,
 * pooling, memory-bound ops — and channel counts the provider handles badly), so the search
 * keeps a bracket [k_lo, k_hi] with r(k_lo) ≤ r* ≤ r(k_hi) and steps by the secant through
 * the bracket's ends (bisection when the secant leaves it), starting at k = r* (the MACs
 * guess):
 *
 *   k' = k_lo + (r* − r_lo)·(k_hi − k_lo)/(r_hi − r_lo)
 *
 * until |r − r*| ≤ tolerance·r* (default 2.5%, half the 5% a user is promised, because the
 * output is measured again afterwards) or the probes run out (the closest probe wins). A probe
 * that lands inside the tolerance is measured a second time in fresh rounds (`remeasure`) and
 * kept on the mean of both ratios: on a shared machine one set of rounds can sit several
 * percent off, and a search that stops on a lucky measurement hands the user a model that
 * misses the target when timed again. When
 * even the most compressed structure (k = floor) runs slower than the target, the target is
 * out of reach: the error gives the nearest reachable target and the layers that stop it.
 */
import { RegroupError } from '../../compiler/errors.js';

/** What to compress to: a fraction of the dense latency or milliseconds, at one batch. */
export interface LatencyTarget {
  /** Fraction of the dense model's measured latency (`--keep-latency`). */
  readonly keep?: number;
  /** Milliseconds per run at `batch` (`--latency-ms`). */
  readonly ms?: number;
  /** Batch the latency is measured at (`--latency-batch`, default 1). */
  readonly batch: number;
  /**
   * How a method that can price channels plans them (`--latency-plan`): 'table' ranks each
   * channel's importance against the milliseconds it saves, from the latency table; 'macs' (the
   * default) plans by MACs as `--keep-macs` does and only the search measures latency. Measured
   * on the Fashion-MNIST ResNet at 0.7 of its batch-64 latency, 2 epochs: 'macs' 91.21%, 'table'
   * 90.45% at the same measured speed-up — the table plan thins the early, cheap-in-parameters
   * layers where the milliseconds are, and those cost accuracy (README, Performance).
   */
  readonly plan?: LatencyPlan;
}

export const LATENCY_PLANS = ['macs', 'table'] as const;
export type LatencyPlan = (typeof LATENCY_PLANS)[number];

/** One probe: the structure at MACs fraction k, timed beside the dense model. */
export interface Probe {
  /** MACs fraction asked of the method. */
  readonly keepMacs: number;
  /** MACs fraction the lowered structure executes. */
  readonly macsRatio: number;
  readonly ms: number;
  readonly denseMs: number;
}

export interface LatencySearchOptions {
  /** Relative distance from the target that ends the search (default 0.025). */
  readonly tolerance?: number;
  /** Most probes (default 7). */
  readonly maxProbes?: number;
  /** Smallest MACs fraction tried (default 0.05). */
  readonly floor?: number;
  /** The first k (default the wanted fraction, or 0.5 for a milliseconds target). */
  readonly initial?: number;
  /** What k is a fraction of, for the progress lines (default 'of the MACs'). */
  readonly unit?: string;
  /**
   * Times the structure of a probe that met the tolerance again, in fresh rounds; the search
   * keeps the mean ratio and goes on when that mean misses. Counts as a probe.
   */
  readonly remeasure?: (probe: Probe) => Promise<Probe>;
  /** Names what keeps the latency up at a probe, for the out-of-reach error. */
  readonly blockers?: (probe: Probe) => Promise<string>;
  readonly log?: (line: string) => void;
}

export interface LatencySearch {
  /** The chosen probe (within tolerance, else the closest). */
  readonly chosen: Probe;
  readonly probes: readonly Probe[];
  /** The wanted latency over the dense latency, as measured beside the chosen probe. */
  readonly wanted: number;
}

/** The latency ratio a target asks for, given the dense latency measured beside a probe. */
export function wantedRatio(target: LatencyTarget, denseMs: number): number {
  if (target.keep !== undefined) return target.keep;
  if (target.ms !== undefined) return target.ms / denseMs;
  throw new RegroupError('usage', 'a latency target needs --keep-latency or --latency-ms');
}

const ratioOf = (p: Probe) => p.ms / p.denseMs;

/** Search the MACs fraction whose measured latency meets `target`; see the file header. */
export async function searchKeepMacs(
  target: LatencyTarget,
  probeAt: (keepMacs: number) => Promise<Probe>,
  options: LatencySearchOptions = {},
): Promise<LatencySearch> {
  const tolerance = options.tolerance ?? 0.025;
  const maxProbes = options.maxProbes ?? 7;
  const floor = options.floor ?? 0.05;
  const probes: Probe[] = [];
  const miss = (p: Probe) => ratioOf(p) / wantedRatio(target, p.denseMs) - 1;
  let lo: Probe | undefined; // fast enough
  let hi: Probe | undefined; // too slow
  let k = Math.min(1, Math.max(floor, options.initial ?? target.keep ?? 0.5));
  const unit = options.unit ?? 'of the MACs';
  const show = (probe: Probe, what: string) =>
    options.log?.(
      `${what}: ${probe.keepMacs.toFixed(3)} ${unit} (lowered: ${probe.macsRatio.toFixed(3)} of the MACs) → ${probe.ms.toFixed(2)} ms ` +
        `(${ratioOf(probe).toFixed(3)} of dense ${probe.denseMs.toFixed(2)} ms; want ${wantedRatio(target, probe.denseMs).toFixed(3)})`,
    );
  for (let i = 0; i < maxProbes; i++) {
    let probe = await probeAt(k);
    show(probe, `latency probe ${i + 1}`);
    if (Math.abs(miss(probe)) <= tolerance && options.remeasure && i + 1 < maxProbes) {
      i++;
      const again = await options.remeasure(probe);
      probe = mean(probe, again);
      show(probe, `latency probe ${i + 1} (measured again; mean of both)`);
    }
    probes.push(probe);
    const wanted = wantedRatio(target, probe.denseMs);
    if (Math.abs(miss(probe)) <= tolerance) break;
    if (miss(probe) > 0) {
      if (k <= floor) throw await outOfReach(target, probe, options);
      if (!hi || probe.keepMacs < hi.keepMacs) hi = probe;
    } else if (!lo || probe.keepMacs > lo.keepMacs) lo = probe;
    k = nextK(wanted, lo, hi, probes, floor);
    if (probes.some((p) => Math.abs(p.keepMacs - k) < 1e-3)) break; // the bracket has closed
  }
  const chosen = probes.reduce((best, p) => (Math.abs(miss(p)) < Math.abs(miss(best)) ? p : best));
  return { chosen, probes, wanted: wantedRatio(target, chosen.denseMs) };
}

/** One probe from two measurements of the same structure: the mean ratio, the mean dense time. */
function mean(a: Probe, b: Probe): Probe {
  const denseMs = (a.denseMs + b.denseMs) / 2;
  return { ...a, denseMs, ms: ((ratioOf(a) + ratioOf(b)) / 2) * denseMs };
}

/**
 * The next MACs fraction: secant inside the bracket, bisection when it falls outside; with one
 * side only, the secant through the last two probes (or latency ∝ MACs after the first),
 * at most halving or doubling k per step.
 */
function nextK(wanted: number, lo: Probe | undefined, hi: Probe | undefined, probes: Probe[], floor: number): number {
  if (lo && hi) {
    const [rLo, rHi] = [ratioOf(lo), ratioOf(hi)];
    const secant = rHi > rLo ? lo.keepMacs + ((wanted - rLo) * (hi.keepMacs - lo.keepMacs)) / (rHi - rLo) : NaN;
    const inside = secant > lo.keepMacs && secant < hi.keepMacs;
    return inside ? secant : (lo.keepMacs + hi.keepMacs) / 2;
  }
  const [a, b] = [probes.at(-2), probes.at(-1)!];
  const slope = a && a.keepMacs !== b.keepMacs ? (ratioOf(b) - ratioOf(a)) / (b.keepMacs - a.keepMacs) : NaN;
  const step = slope > 0 ? b.keepMacs + (wanted - ratioOf(b)) / slope : (b.keepMacs * wanted) / ratioOf(b);
  const bounded = Math.min(2 * b.keepMacs, Math.max(b.keepMacs / 2, step));
  return Math.min(1, Math.max(floor, bounded));
}

async function outOfReach(target: LatencyTarget, probe: Probe, options: LatencySearchOptions): Promise<RegroupError> {
  const what =
    target.keep !== undefined ? `--keep-latency ${target.keep}` : `--latency-ms ${target.ms?.toString() ?? ''}`;
  const reach = ratioOf(probe);
  const blockers = options.blockers ? `; ${await options.blockers(probe)}` : '';
  return new RegroupError(
    'unreachable',
    `${what} is out of reach at batch ${target.batch}: the most compressed structure tried (${probe.macsRatio.toFixed(2)} of the MACs) ` +
      `runs in ${probe.ms.toFixed(2)} ms, ${reach.toFixed(3)} of the dense ${probe.denseMs.toFixed(2)} ms — the nearest reachable ` +
      `target is --keep-latency ${(Math.ceil(reach * 100) / 100).toFixed(2)} (--latency-ms ${probe.ms.toFixed(2)})${blockers}`,
  );
}
