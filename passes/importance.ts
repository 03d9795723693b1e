/**
 * Channel importance, per coupled channel, aggregated over every member of its group
 * (DepGraph-style). The criteria form a registry — one small object per file in
 * passes/importance/ (criterion.ts is the contract), listed here in `--help` order:
 *   l1            Σ|W[…, p, …]|                      (filter / column norm, Li et al. 2017)
 *   l2            √Σ W[…, p, …]²
 *   fpgm          Σ_q ‖F_p − F_q‖₂ over the layer's filters (He et al. 2019); consumers l2
 *   bn            |γ_p| of BatchNormalization scales (Liu et al. 2017); l1 where there is no BN
 *   weight-proxy  WSP's official-code proxy: filter and next-layer column l1 both below the
 *                 p-th percentile of their layer (score: the larger of the two percentile ranks)
 *   saliency      WSP (Guo et al. 2021): activation and loss-gradient sparsity × magnitude on
 *                 labelled images (needs measurements)
 * A criterion returns, per coupled channel, one contribution per scoring member (weight
 * criteria normalise each member by its mean and sum a flattened channel's H·W columns);
 * they are aggregated across members by sum, mean or max. Adding a criterion is one file
 * plus its entry in IMPORTANCE_CRITERIA.
 */
import type { ChannelAnalysis, ChannelGroup, Touch } from '../compiler/analysis/channel-groups.js';
import { RegroupError } from '../compiler/errors.js';
import { bn } from './importance/bn.js';
import {
  needsWeightsOnly,
  type ImportanceCriterion,
  type ImportanceMeasurements,
  type ScoringInput,
} from './importance/criterion.js';
import { fpgm } from './importance/fpgm.js';
import { l1 } from './importance/l1.js';
import { l2 } from './importance/l2.js';
import { saliency } from './importance/saliency.js';
import { weightProxy } from './importance/weight-proxy.js';

export type {
  CriterionNeed,
  ImportanceCriterion,
  ImportanceMeasurements,
  ScoringInput,
  ValueSaliency,
} from './importance/criterion.js';

/** Every criterion, in `--help` order. */
export const IMPORTANCE_CRITERIA: readonly ImportanceCriterion[] = [l1, l2, fpgm, bn, weightProxy, saliency];

/** A criterion's name (see IMPORTANCE_CRITERIA). */
export type Criterion = string;
export type Aggregation = 'sum' | 'mean' | 'max';

/** Names of the criteria that need only the weights (what `regroup prune --criterion` offers). */
export const CRITERIA: readonly Criterion[] = IMPORTANCE_CRITERIA.filter(needsWeightsOnly).map((c) => c.name);

export interface ImportanceOptions {
  /** A registry name (default l1). */
  criterion?: Criterion;
  aggregate?: Aggregation;
  /** Measurements for data criteria (see ImportanceCriterion.needs). */
  measurements?: ImportanceMeasurements;
  /** Criteria to look `criterion` up in (default IMPORTANCE_CRITERIA). */
  registry?: readonly ImportanceCriterion[];
}

/** The criterion called `name`, or a usage error that lists the registry. */
export function criterionNamed(
  name: string,
  registry: readonly ImportanceCriterion[] = IMPORTANCE_CRITERIA,
): ImportanceCriterion {
  const found = registry.find((c) => c.name === name);
  if (!found)
    throw new RegroupError(
      'usage',
      `unknown importance criterion '${name}'; choose one of: ${registry.map((c) => c.name).join(', ')}`,
    );
  return found;
}

/** Score of every coupled channel (keyed by root element); higher is more important. */
export function channelImportance(analysis: ChannelAnalysis, options: ImportanceOptions = {}): Map<number, number> {
  const criterion = criterionNamed(options.criterion ?? 'l1', options.registry);
  const measurements = options.measurements ?? {};
  if (!needsWeightsOnly(criterion) && !measurements.saliency) {
    throw new RegroupError(
      'usage',
      `criterion '${criterion.name}' needs ${criterion.needs.join(' and ')} measured on data; pass its measurements (or choose a weight criterion: ${CRITERIA.join(', ')})`,
    );
  }
  const memos = new Map<string, WeakMap<object, unknown>>();
  const memo = <T>(kind: string, owner: object, compute: () => T): T => {
    const table = memos.get(kind) ?? memos.set(kind, new WeakMap()).get(kind)!;
    if (!table.has(owner)) table.set(owner, compute());
    return table.get(owner) as T;
  };
  const aggregate = options.aggregate ?? 'sum';
  const out = new Map<number, number>();
  for (const [group, touches] of touchesByGroup(analysis)) {
    const input: ScoringInput = { analysis, touches, measurements, memo };
    for (const [root, list] of criterion.score(group, input)) out.set(root, aggregateList(list, aggregate));
  }
  return out;
}

function aggregateList(list: readonly number[], aggregate: Aggregation): number {
  return aggregate === 'max'
    ? Math.max(...list)
    : list.reduce((a, b) => a + b, 0) / (aggregate === 'mean' ? list.length : 1);
}

/** Every group with the touches holding at least one of its channels, in analysis order. */
function touchesByGroup(analysis: ChannelAnalysis): Map<ChannelGroup, Touch[]> {
  const out = new Map<ChannelGroup, Touch[]>(analysis.groups.map((g) => [g, []]));
  for (const t of analysis.touches) {
    const groups = new Set<ChannelGroup>();
    for (const e of t.elems) {
      const g = analysis.groupOf(e);
      if (g) groups.add(g);
    }
    for (const g of groups) out.get(g)!.push(t);
  }
  return out;
}
