/**
 * The pipelines, as plain readable lists. `prepare` runs before channel analysis: weights
 * stored as Constant nodes or behind Identity/Reshape chains become initializers the
 * channel map can rewrite. `tidy` runs after a rewrite: dead nodes and unused weights go.
 */
import { cleanup } from './cleanup.js';
import { foldConstants } from './fold-constants.js';
import type { Pass } from './pass.js';
import { removeIdentity } from './remove-identity.js';
import { selfGroupPass, type SelfGroupOptions } from './self-group.js';
import { lowerGroupedPass, type LowerGroupedOptions } from './lower-grouped.js';

// Identity first: torchscript exports alias one shared initializer through many Identity nodes,
// and folding those first would give every alias its own copy of the tensor.
export const PREPARE: readonly Pass[] = [removeIdentity, foldConstants, cleanup];
export const TIDY: readonly Pass[] = [cleanup];

export { runPasses } from './manager.js';
export { applyChannelMap } from './channel-map.js';
export { channelImportance, CRITERIA, type Criterion, type Aggregation } from './importance.js';
export { planPruning, removalSet, type PruningPlan, type PlanOptions } from './plan-pruning.js';
export {
  selfGroup,
  selfGroupPass,
  maskLayer,
  planSelfGroup,
  type SelfGroupPlan,
  type SelfGroupOptions,
  type SelfGroupContext,
  type SelfGroupResult,
  type SelfGroupStats,
} from './self-group.js';
export {
  lowerGrouped,
  lowerGroupedInPlace,
  lowerGroupedPass,
  type LowerGroupedOptions,
  type LowerGroupedResult,
  type LayerChoice,
  type TuneHook,
} from './lower-grouped.js';
export { FORMS as LOWERING_FORMS, type Form as LoweringForm } from './lower-emit.js';

/**
 * SG-CNN as one pipeline: self-group (weights masked, connectivity into the context), lower
 * every grouped conv (cost model), then cleanup. Run PREPARE first; pass a SelfGroupContext
 * (with calibration statistics, if any) to runPasses.
 */
export function selfGroupPipeline(options: SelfGroupOptions & Omit<LowerGroupedOptions, 'tune'> = {}): readonly Pass[] {
  return [selfGroupPass(options), lowerGroupedPass(options), cleanup];
}
