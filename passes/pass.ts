/**
 * The pass interface. A pass rewrites a model in place and reports honestly whether it
 * changed anything; "does not apply" is logged through the context, while an exception
 * means bad input or a broken invariant. Passes take the Model, not just the Graph,
 * because op semantics depend on the opset in force.
 */
import type { Model } from '../compiler/ir/model.js';

/** What one run of a pass did. */
export interface PassResult {
  /** True exactly when the model was modified. */
  changed: boolean;
  /** Counters such as `{ nodesFolded: 3 }`, for logs and tests. */
  stats?: Record<string, number>;
}

/** What a pass may use besides the model; grows by optional fields only. */
export interface PassContext {
  /** Receives one line per skipped rewrite and other notes; silent when absent. */
  log?: (message: string) => void;
}

/** A named in-place rewrite of a model. */
export interface Pass {
  /** Matches the pass's file name (`fold-constants` lives in passes/fold-constants.ts). */
  readonly name: string;
  run(model: Model, ctx: PassContext): PassResult;
}
