/**
 * A tiny pass manager: runs an explicit list of passes in order, optionally repeating the
 * whole list until a round changes nothing, optionally verifying the IR after every pass,
 * and wrapping any failure in a RegroupError that names the pass.
 */
import { RegroupError } from '../compiler/errors.js';
import type { Model } from '../compiler/ir/model.js';
import type { Pass, PassContext, PassResult } from './pass.js';

/** How runPasses drives the list. */
export interface RunPassesOptions {
  /** Run graph.verify() after every pass (tests do; it costs a walk of the graph). */
  verify?: boolean;
  /** Repeat the list until a whole round reports no change. */
  fixpoint?: boolean;
  /** Most rounds when `fixpoint` is set (default 10). */
  maxIterations?: number;
}

/** One pass's result in one round. */
export interface PassRecord {
  readonly pass: string;
  /** 1-based round number. */
  readonly round: number;
  readonly result: PassResult;
}

/** What the whole list did. */
export interface PipelineResult {
  /** Some pass changed the model. */
  changed: boolean;
  rounds: number;
  /** The last round changed nothing (always true without `fixpoint` when nothing changed). */
  converged: boolean;
  records: PassRecord[];
}

const DEFAULT_MAX_ITERATIONS = 10;

/** Run `passes` over `model` in order; see RunPassesOptions. */
export function runPasses(
  model: Model,
  passes: readonly Pass[],
  ctx: PassContext = {},
  options: RunPassesOptions = {},
): PipelineResult {
  const maxRounds = options.fixpoint ? (options.maxIterations ?? DEFAULT_MAX_ITERATIONS) : 1;
  const records: PassRecord[] = [];
  let changed = false;
  let roundChanged = false;
  let round = 0;
  while (round < maxRounds) {
    round++;
    roundChanged = false;
    for (const pass of passes) {
      const result = runOne(model, pass, ctx, options.verify ?? false);
      records.push({ pass: pass.name, round, result });
      roundChanged ||= result.changed;
    }
    changed ||= roundChanged;
    if (!roundChanged) break;
  }
  const converged = !roundChanged;
  if (options.fixpoint && !converged)
    ctx.log?.(`passes [${passes.map((p) => p.name).join(', ')}] still changed the model after ${round} rounds`);
  return { changed, rounds: round, converged, records };
}

function runOne(model: Model, pass: Pass, ctx: PassContext, verify: boolean): PassResult {
  let result: PassResult;
  try {
    result = pass.run(model, ctx);
  } catch (err) {
    // Keep a RegroupError's code (e.g. 'unsupported'); anything else is a broken invariant.
    const code = err instanceof RegroupError ? err.code : 'invalid-ir';
    throw new RegroupError(code, `pass '${pass.name}' failed: ${messageOf(err)}`, { cause: err });
  }
  if (verify) {
    try {
      model.graph.verify();
    } catch (err) {
      throw new RegroupError('invalid-ir', `pass '${pass.name}' left invalid IR: ${messageOf(err)}`, { cause: err });
    }
  }
  return result;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
