/**
 * Compressing to a latency target: the search over MACs fractions against a latency curve
 * with a fixed cost and noise (latency is not ∝ MACs), its out-of-reach error, and the
 * command line's budget flags and refusals end to end.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { searchKeepMacs, type Probe } from '../../cli/pipelines/latency-target.js';
import { RegroupError } from '../../compiler/errors.js';
import { regroup } from '../helpers/cli.js';
import { PROJECT_ROOT } from '../helpers/shared.js';

const TINY = path.join(PROJECT_ROOT, 'fixtures/models/resnet-tiny.onnx');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-latency-target-'));
// Latency tables of the runs below go to a scratch cache, not the user's.
process.env.REGROUP_CACHE_DIR = path.join(tmp, 'cache');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface CompressJson {
  notes: string[];
  latency: { batch: number }[];
}

/** `regroup compress TINY -o <tmp>/<name> --method l1 FLAGS… --json`: it succeeded; the report. */
async function compressL1(name: string, ...flags: string[]): Promise<CompressJson> {
  const r = await regroup('compress', TINY, '-o', path.join(tmp, name), '--method', 'l1', ...flags, '--json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as CompressJson;
}

/** A latency curve: fixed share `fixed` of the dense time, the rest ∝ MACs, with seeded ±noise. */
function curve(fixed: number, noise = 0, denseMs = 20) {
  let state = 7;
  const jitter = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return 1 + noise * (2 * (state / 2 ** 31) - 1);
  };
  const calls: number[] = [];
  const probe = async (keepMacs: number): Promise<Probe> => {
    calls.push(keepMacs);
    return { keepMacs, macsRatio: keepMacs, ms: denseMs * (fixed + (1 - fixed) * keepMacs) * jitter(), denseMs };
  };
  return { probe, calls };
}

describe('searchKeepMacs', () => {
  it('finds the MACs fraction of a latency curve with a fixed cost, within the tolerance', async () => {
    const { probe, calls } = curve(0.2);
    const search = await searchKeepMacs({ keep: 0.5, batch: 1 }, probe);
    // r(k) = 0.2 + 0.8k = 0.5 ⇒ k = 0.375, not the 0.5 that latency ∝ MACs would give.
    expect(Math.abs(search.chosen.ms / search.chosen.denseMs - 0.5)).toBeLessThanOrEqual(0.025 * 0.5);
    expect(search.chosen.keepMacs).toBeGreaterThan(0.33);
    expect(search.chosen.keepMacs).toBeLessThan(0.42);
    expect(calls[0]).toBe(0.5);
    expect(calls.length).toBeLessThanOrEqual(4);
  });

  it('meets a milliseconds target under 3% noise', async () => {
    const { probe } = curve(0.3, 0.03, 10);
    const search = await searchKeepMacs({ ms: 6, batch: 8 }, probe);
    expect(Math.abs(search.chosen.ms - 6) / 6).toBeLessThanOrEqual(0.025);
    expect(search.wanted).toBeCloseTo(0.6, 6);
  });

  it('returns the closest probe when the probes run out', async () => {
    const { probe, calls } = curve(0.1, 0.2);
    const search = await searchKeepMacs({ keep: 0.5, batch: 1 }, probe, { maxProbes: 2, tolerance: 0.001 });
    expect(calls.length).toBe(2);
    const miss = (p: Probe) => Math.abs(p.ms / p.denseMs - 0.5);
    expect(miss(search.chosen)).toBe(Math.min(...search.probes.map(miss)));
  });

  it('measures a probe that meets the tolerance again and goes on when the mean of both misses', async () => {
    // r(k) = 0.2 + 0.8k; the first timing of every structure reads 8% fast (a lucky run), a second one is true.
    const { probe: honest } = curve(0.2);
    const lucky = async (k: number) => {
      const p = await honest(k);
      return { ...p, ms: p.ms * 0.92 };
    };
    const again: number[] = [];
    const remeasure = async (p: Probe) => {
      again.push(p.keepMacs);
      return honest(p.keepMacs);
    };
    const search = await searchKeepMacs({ keep: 0.5, batch: 1 }, lucky, { remeasure, maxProbes: 12 });
    expect(again.length).toBeGreaterThanOrEqual(1);
    // Only structures whose mean of both timings (0.96 × the truth) is inside 2.5% are accepted.
    const truth = 0.2 + 0.8 * search.chosen.keepMacs;
    expect(Math.abs((0.96 * truth) / 0.5 - 1)).toBeLessThanOrEqual(0.025);
    expect(search.chosen.ms / search.chosen.denseMs).toBeCloseTo(0.96 * truth, 6);
    expect(again).toContain(search.chosen.keepMacs);
    // Without the second timing the search stops on a lucky reading: the structure truly runs more than 5% slow.
    const once = await searchKeepMacs({ keep: 0.5, batch: 1 }, lucky);
    expect((0.2 + 0.8 * once.chosen.keepMacs) / 0.5 - 1).toBeGreaterThan(0.05);
    // With it, the bias is halved (every first timing is lucky here, so the mean keeps 4% of it).
    expect(Math.abs(truth / 0.5 - 1)).toBeLessThan((0.2 + 0.8 * once.chosen.keepMacs) / 0.5 - 1);
    expect(Math.abs(truth / 0.5 - 1)).toBeLessThanOrEqual(1.025 / 0.96 - 1 + 1e-9);
  });

  it('says a target is out of reach with the nearest reachable one and what stops it', async () => {
    const { probe, calls } = curve(0.6);
    const blockers = async (p: Probe) => `stem at ${p.keepMacs.toFixed(2)}`;
    const error = await searchKeepMacs({ keep: 0.5, batch: 1 }, probe, { blockers }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegroupError);
    expect((error as RegroupError).code).toBe('unreachable');
    const message = (error as RegroupError).message;
    // At the floor k = 0.05: r = 0.6 + 0.4·0.05 = 0.62.
    expect(message).toContain('--keep-latency 0.5 is out of reach at batch 1');
    expect(message).toContain('nearest reachable target is --keep-latency 0.62');
    expect(message).toContain('stem at 0.05');
    expect(calls.at(-1)).toBe(0.05);
  });
});

describe('regroup compress with a latency budget', () => {
  it('refuses no budget, and two budgets, as usage errors naming the flags', async () => {
    const out = path.join(tmp, 'none.onnx');
    const none = await regroup('compress', TINY, '-o', out, '--method', 'l1');
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--keep-macs 0.5');
    expect(none.stderr).toContain('--keep-latency');
    const two = await regroup(
      'compress',
      TINY,
      '-o',
      out,
      '--method',
      'l1',
      '--keep-macs',
      '0.5',
      '--keep-latency',
      '0.5',
    );
    expect(two.code).toBe(2);
    expect(two.stderr).toContain('give one of --keep-macs, --keep-latency, --latency-ms');
    expect(fs.existsSync(out)).toBe(false);
  });

  it('an unreachable target exits 1 with the nearest reachable latency, and writes nothing', async () => {
    // The tiny ResNet runs in microseconds: per-node overhead, not MACs, sets its latency,
    // so no pruning reaches a twentieth of it.
    const out = path.join(tmp, 'unreachable.onnx');
    const r = await regroup('compress', TINY, '-o', out, '--method', 'l1', '--keep-latency', '0.05', '--no-latency');
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/error\[unreachable\]: --keep-latency 0\.05 is out of reach at batch 1/);
    expect(r.stderr).toMatch(/nearest reachable target is --keep-latency \d\.\d\d \(--latency-ms \d+\.\d\d\)/);
    expect(r.stderr).toContain('ops without MACs');
    expect(fs.existsSync(out)).toBe(false);
  });

  it("plans by MACs by default (no latency table) and names the plan's unit", async () => {
    const report = await compressL1('macs-plan.onnx', '--keep-latency', '1', '--no-latency');
    expect(report.notes.some((n) => n.startsWith('latency table'))).toBe(false);
    expect(report.notes.some((n) => /plan for \d\.\d{3} of the MACs \(lowered: \d\.\d{3} of the MACs\)/.test(n))).toBe(
      true,
    );
  });

  it('measures --latency-batch besides 1 and 8 with a MACs budget', async () => {
    const report = await compressL1('macs-batch.onnx', '--keep-macs', '0.6', '--latency-batch', '4');
    expect(report.latency.map((l) => l.batch)).toEqual([1, 4, 8]);
  });

  it('refuses --latency-plan with a MACs budget', async () => {
    const out = path.join(tmp, 'plan-macs.onnx');
    const r = await regroup('compress', TINY, '-o', out, '--keep-macs', '0.5', '--latency-plan', 'table');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--latency-plan applies to a latency target');
    expect(fs.existsSync(out)).toBe(false);
  });

  it('refuses an unknown --latency-plan, listing the choices', async () => {
    const r = await regroup(
      'compress',
      TINY,
      '-o',
      path.join(tmp, 'x.onnx'),
      '--keep-latency',
      '0.5',
      '--latency-plan',
      'flops',
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('macs, table');
  });

  it('a reachable target writes a model and records its probes', async () => {
    const report = await compressL1(
      'reachable.onnx',
      '--keep-latency',
      '1',
      '--latency-batch',
      '4',
      '--round-to',
      '1',
      '--latency-plan',
      'table',
    );
    expect(report.notes.some((n) => /^latency target 1 of the dense latency at batch 4: \d probe/.test(n))).toBe(true);
    // The table plan priced channels by the layers' measured milliseconds at the target batch.
    expect(report.notes.some((n) => /^latency table \(batch 4\): \d+ candidates measured/.test(n))).toBe(true);
    expect(report.notes.some((n) => n.includes('of the predicted latency'))).toBe(true);
    expect(report.latency.map((l) => l.batch)).toEqual([1, 4, 8]);
    expect(fs.existsSync(path.join(tmp, 'reachable.onnx'))).toBe(true);
  });
});
