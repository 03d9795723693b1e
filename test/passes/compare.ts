/**
 * Shared by the pass tests: run a pass list the way tests must (verify after each pass),
 * and check a rewrite against onnxruntime by running the original bytes and the rewritten
 * model on the same seeded inputs with graph optimisations disabled.
 */
import { expect } from 'vitest';
import type { Model } from '../../compiler/ir/model.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { runPasses, type PipelineResult } from '../../passes/manager.js';
import type { Pass } from '../../passes/pass.js';
import { randomFeeds, type InputOptions } from '../../runtime/inputs.js';
import { createSession, ort, run, type Feeds, type Outputs } from '../../runtime/session.js';

// The rewrites deliberately leave unused initializers for cleanup; ORT's warnings about them are noise here.
ort.env.logLevel = 'error';

/** 'exact': every element equal (NaN matches NaN); `{ rtol }`: |a − b| ≤ rtol·max(|a|, |b|). */
export type Tolerance = 'exact' | { rtol: number };

/** Outputs of a model or model bytes in onnxruntime (CPU, optimisations disabled). */
export async function outputsOf(source: Model | Uint8Array, feeds: Feeds): Promise<Outputs> {
  const session = await createSession(source, { optimization: 'disabled' });
  try {
    return await run(session, feeds);
  } finally {
    await session.release();
  }
}

/** Assert both output sets have the same names, types and dims, and elements within tolerance. */
export function expectSameOutputs(expected: Outputs, actual: Outputs, tolerance: Tolerance): void {
  expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
  for (const [name, want] of Object.entries(expected)) {
    const got = actual[name]!;
    expect({ name, type: got.type, dims: [...got.dims] }).toEqual({ name, type: want.type, dims: [...want.dims] });
    const a = want.data as ArrayLike<number | bigint>;
    const b = got.data as ArrayLike<number | bigint>;
    const bad: string[] = [];
    for (let i = 0; i < a.length && bad.length < 5; i++)
      if (!close(a[i]!, b[i]!, tolerance)) bad.push(`${name}[${i}]: ${a[i]} vs ${b[i]}`);
    expect(bad).toEqual([]);
  }
}

function close(a: number | bigint, b: number | bigint, tolerance: Tolerance): boolean {
  if (a === b || (Number.isNaN(a) && Number.isNaN(b))) return true;
  if (tolerance === 'exact' || typeof a === 'bigint' || typeof b === 'bigint') return false;
  return Math.abs(a - b) <= tolerance.rtol * Math.max(Math.abs(a), Math.abs(b));
}

/**
 * Run `passes` once (verifying after each) and require the rewritten model to compute what
 * the original did on seeded inputs; then require a second run to change nothing.
 */
export async function checkRewrite(
  model: Model,
  passes: readonly Pass[],
  tolerance: Tolerance,
  inputs: InputOptions = {},
): Promise<PipelineResult> {
  const before = encodeModel(model).bytes;
  const feeds = randomFeeds(model, { seed: 11, ...inputs });
  const result = runPasses(model, passes, {}, { verify: true });
  expectSameOutputs(await outputsOf(before, feeds), await outputsOf(model, feeds), tolerance);
  expect(runPasses(model, passes, {}, { verify: true }).changed).toBe(false);
  return result;
}

/** Require that `passes` change nothing: changed === false and identical encoded bytes. */
export function expectNoChange(model: Model, passes: readonly Pass[]): void {
  const before = encodeModel(model).bytes;
  const result = runPasses(model, passes, {}, { verify: true });
  expect(result.changed).toBe(false);
  expect(Buffer.compare(Buffer.from(encodeModel(model).bytes), Buffer.from(before))).toBe(0);
}

/** Summed stats of every record in a pipeline result. */
export function totalStats(result: PipelineResult): Record<string, number> {
  const total: Record<string, number> = {};
  for (const { result: r } of result.records)
    for (const [key, n] of Object.entries(r.stats ?? {})) total[key] = (total[key] ?? 0) + n;
  return total;
}

/** Op type → count over the main graph. */
export function opCounts(model: Model): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const node of model.graph.nodes()) counts[node.opType] = (counts[node.opType] ?? 0) + 1;
  return counts;
}

/**
 * A lowered graph reproduces its reference: it verifies, and on seeded inputs (batch 2,
 * optimisations off) every output has the same dims and max |got − want| ≤ tolerance · max |want|.
 */
export async function expectReproduces(reference: Model, lowered: Model, tolerance: number): Promise<void> {
  lowered.graph.verify();
  const feeds = randomFeeds(reference, { seed: 11, batch: 2 });
  const [want, got] = [await outputsOf(reference, feeds), await outputsOf(lowered, feeds)];
  for (const [name, w] of Object.entries(want)) {
    const g = got[name]!;
    expect([...g.dims]).toEqual([...w.dims]);
    const [a, b] = [w.data as Float32Array, g.data as Float32Array];
    let [diff, scale] = [0, 0];
    for (let i = 0; i < a.length; i++)
      [diff, scale] = [Math.max(diff, Math.abs(a[i]! - b[i]!)), Math.max(scale, Math.abs(a[i]!))];
    expect(scale).toBeGreaterThan(0);
    expect(diff).toBeLessThanOrEqual(tolerance * scale);
  }
}
