/**
 * `regroup compress --method sg-cnn --cp P` needs no --keep-macs: the percentile says how much
 * goes (MethodFlag.setsBudget). The model it writes is the one `--cp P --keep-macs K` writes
 * (the MACs target is ignored next to --cp), and without either flag the command still asks
 * for a budget.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import { loadModel } from '../compiler/onnx/io.js';
import { validateReport } from '../cli/report/schema.js';
import { regroup } from './helpers/cli.js';
import { PROJECT_ROOT } from './helpers/shared.js';

const TINY = path.join(PROJECT_ROOT, 'fixtures/models/resnet-tiny.onnx');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-cli-cp-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const base = (out: string) => ['compress', TINY, '-o', out, '--method', 'sg-cnn', '--no-latency', '--json'];

describe('compress --cp without a budget flag', () => {
  it('self-groups at the given percentile, exactly as with a --keep-macs it ignores', async () => {
    const alone = path.join(tmp, 'cp-alone.onnx');
    const withKeep = path.join(tmp, 'cp-keep.onnx');
    const a = await regroup(...base(alone), '--cp', '50');
    expect(a.code, a.stderr).toBe(0);
    const b = await regroup(...base(withKeep), '--cp', '50', '--keep-macs', '0.5');
    expect(b.code, b.stderr).toBe(0);

    const report = validateReport(JSON.parse(a.stdout), 'stdout');
    const extra = report.extra as { keepMacs: number; steps: { figures: { cp: number } }[] };
    expect(extra.steps.map((s) => s.figures.cp)).toEqual([50]);
    expect(extra.keepMacs).toBe(1);
    expect(report.totals.structureMacsRatio).toBeLessThan(0.9);
    const model = loadModel(alone);
    expect(computeCost(model, inferShapes(model)).totals.macs).toBe(report.totals.macsAfter);
    expect(fs.readFileSync(alone).equals(fs.readFileSync(withKeep))).toBe(true);
  }, 120_000);

  it('still asks how much to keep without --cp, and refuses --cp for a method that lacks it', async () => {
    const none = await regroup(...base(path.join(tmp, 'none.onnx')));
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/say how much to keep: --keep-macs/);
    const wsp = await regroup('compress', TINY, '-o', path.join(tmp, 'wsp.onnx'), '--method', 'wsp', '--cp', '50');
    expect(wsp.code).toBe(2);
    expect(wsp.stderr).toMatch(/--cp applies to --method sg-cnn, not to wsp/);
    expect(fs.existsSync(path.join(tmp, 'none.onnx')) || fs.existsSync(path.join(tmp, 'wsp.onnx'))).toBe(false);
  }, 60_000);
});
