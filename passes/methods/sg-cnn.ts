/**
 * `sg-cnn`: self-grouping convolution (Guo et al. 2020, passes/self-group.ts) as a method.
 *
 * Each layer's filters are clustered by their input-importance vectors; a cluster keeps the
 * inputs whose centroid value is above the layer's cp-th percentile τ. The cp comes from
 * (a) `--cp`: one percentile, or a rising list (SG-CNN's 10 → 90 schedule) with fine-tuning
 * after every step; (b) `--keep-macs` with `--allocate uniform`: one cp for every layer,
 * bisected to the MACs target; (c) `--keep-macs` with `--allocate sensitivity` (the default
 * with data): each layer grouped alone at SCAN_CPS, the KL divergence of the output from the
 * dense model's measured on training images, and the MACs budget spent where divergence per
 * MAC saved is least (passes/allocate-cp.ts). `--steps n` reaches the target in n falling
 * MACs targets, the fine-tuning samples split between the steps (same total budget).
 */
import { attr } from '../../compiler/ir/attribute.js';
import { RegroupError } from '../../compiler/errors.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node } from '../../compiler/ir/node.js';
import { allocateCps, type AllocationLayer } from '../allocate-cp.js';
import { maskLayer, planSelfGroup, selfGroup, type SelfGroupOptions } from '../self-group.js';
import { convInputActivity } from './activity.js';
import type { CommonOptions, Method, Step, StructureContext, Structured } from './method.js';

export type Allocate = 'sensitivity' | 'uniform';

export interface SgCnnOptions {
  /** Clusters per layer (default 64, at most one per filter). */
  groups?: number;
  /** Centroid percentile(s) instead of solving for keepMacs; a rising list is a schedule. */
  cp?: readonly number[];
  /** Reach keepMacs in this many steps (default 1). */
  steps: number;
  includeFc?: boolean;
  allocate: Allocate;
}

/** The cps a sensitivity scan is measured at, per layer. */
const SCAN_CPS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95];
/**
 * MACs one scan evaluation may spend: 256 images for small models, fewer (down to 32) for big
 * ones, so that an ImageNet ResNet's scan takes minutes rather than hours.
 */
const SCAN_MACS = 2e10;

export const sgCnn: Method<SgCnnOptions> = {
  name: 'sg-cnn',
  description: 'self-grouping (SG-CNN): learned diverse groups, as published',
  maskedDenseHint: '--method sg-balanced keeps the learned groups equal and disjoint so that they lower to Conv(group)',
  flags: [
    {
      flags: '--groups <n>',
      key: 'groups',
      kind: 'positive-int',
      description:
        'sg-cnn clusters per layer (default 64; at most one per filter). More clusters let filters pick their ' +
        'inputs more finely: at the same MACs 64 beat 16 by 0.1–0.8 points on the measured networks ' +
        '(README, Performance); fewer keep the groups coarse and k-means faster',
    },
    {
      flags: '--cp <percentiles>',
      key: 'cp',
      kind: 'percentiles',
      setsBudget: true,
      description:
        'sg-cnn: centroid percentile(s) instead of solving for --keep-macs; a rising list (10,30,50) fine-tunes after each step',
    },
    {
      flags: '--steps <n>',
      key: 'steps',
      kind: 'positive-int',
      description:
        'sg-cnn: reach --keep-macs in n steps with fine-tuning after each, the fine-tuning samples split between the steps (default 1)',
    },
    {
      flags: '--allocate <how>',
      key: 'allocate',
      kind: 'choice',
      choices: ['sensitivity', 'uniform'],
      description:
        'sg-cnn with --keep-macs: sensitivity gives each layer its own cp from a scan of how far grouping it ' +
        'alone moves the output on training images (default with --data); uniform gives every layer the ' +
        'same cp (default without)',
    },
    {
      flags: '--include-fc',
      key: 'includeFc',
      kind: 'boolean',
      description: 'sg-cnn: group fully connected layers too',
    },
  ],

  options(raw, common): SgCnnOptions {
    const steps = (raw.steps as number | undefined) ?? 1;
    const cp = raw.cp as number[] | undefined;
    if (!(Number.isInteger(steps) && steps >= 1))
      throw new RegroupError('usage', `--steps ${steps}: give a whole number of steps, 1 or more`);
    if (steps > 1 && cp)
      throw new RegroupError(
        'usage',
        '--steps applies to --method sg-cnn with --keep-macs (a --cp list sets its own steps)',
      );
    if (cp) checkCps(cp);
    const given = raw.allocate as Allocate | undefined;
    if (given && cp)
      throw new RegroupError(
        'usage',
        '--allocate applies to --method sg-cnn with --keep-macs, not to an explicit --cp',
      );
    const allocate = given ?? (common.hasData ? 'sensitivity' : 'uniform');
    if (allocate === 'sensitivity' && !common.hasData)
      throw new RegroupError(
        'usage',
        '--allocate sensitivity measures each layer on training images; pass --data or use --allocate uniform',
      );
    return {
      groups: raw.groups as number | undefined,
      cp,
      steps,
      includeFc: raw.includeFc as boolean | undefined,
      allocate,
    };
  },

  schedule: stepsOf,

  async structure(dense, options, keepMacs, ctx): Promise<Structured> {
    const channelMeanAbs = ctx.measure ? await convInputActivity(dense, ctx.measure) : undefined;
    const cp = options.cp?.at(-1);
    const grouping: SelfGroupOptions = { groups: options.groups, includeFc: options.includeFc, seed: ctx.common.seed };
    const planCtx = { channelMeanAbs, log: ctx.log };
    const perLayer =
      cp === undefined && options.allocate === 'sensitivity'
        ? await sensitivityCps(dense, keepMacs, grouping, planCtx, ctx)
        : undefined;
    const r = selfGroup(
      dense,
      perLayer
        ? { ...grouping, cp: { layers: perLayer } }
        : { ...grouping, keepMacs: cp === undefined ? keepMacs : undefined, cp },
      planCtx,
    );
    const cps = r.stats.layers.map((l) => l.cp);
    const cpText = r.stats.perLayer
      ? `cp per layer ${Math.min(...cps).toFixed(0)}–${Math.max(...cps).toFixed(0)} (MACs-weighted mean ${r.stats.cp.toFixed(1)})`
      : `cp ${r.stats.cp.toFixed(1)}`;
    const reach = r.stats.targetMet ? '' : '; the MACs target is out of reach: every groupable layer is at its floor';
    ctx.note(
      `self-grouping: ${cpText}, ${r.stats.layers.length} layers grouped (${r.stats.layers[0]?.importance ?? 'weight'} importance)${reach}`,
    );
    for (const s of r.stats.skipped) ctx.note(`dense: ${s.label} (${s.reason})`);
    const figures = {
      cp: r.stats.cp,
      cpMin: Math.min(...cps),
      cpMax: Math.max(...cps),
      layersGrouped: r.stats.layers.length,
      perLayerCp: r.stats.perLayer ? 1 : 0,
    };
    return { model: r.model, connectivity: r.connectivity, macsRatio: r.stats.macsRatio, figures };
  },
};

/** Percentiles lie within [0, 100] and a schedule rises. */
function checkCps(cp: readonly number[]): void {
  if (cp.length === 0 || cp.some((v) => !(v >= 0 && v <= 100)))
    throw new RegroupError(
      'usage',
      `--cp ${cp.join(',')}: give percentiles between 0 and 100, e.g. --cp 50 or --cp 10,30,50`,
    );
  if (cp.some((v, i) => i > 0 && v <= cp[i - 1]!))
    throw new RegroupError('usage', `--cp ${cp.join(',')}: a schedule must rise step by step (e.g. 10,30,50)`);
}

/**
 * One step per --cp value, or --steps MACs targets falling evenly to keepMacs. With --steps
 * the fine-tuning budget is split, not multiplied: each step trains on its own seeded share
 * of the samples, so the whole run sees epochs × limit samples like a one-shot run.
 */
function stepsOf(options: SgCnnOptions, common: CommonOptions): Step<SgCnnOptions>[] {
  if (options.cp) return options.cp.map((cp) => ({ options: { ...options, cp: [cp] }, keepMacs: common.keepMacs }));
  const steps = options.steps;
  if (steps === 1) return [{ options, keepMacs: common.keepMacs }];
  const share = Math.ceil((common.trainSamples ?? 0) / steps);
  return Array.from({ length: steps }, (_, k) => ({
    options,
    keepMacs: 1 - ((1 - common.keepMacs) * (k + 1)) / steps,
    ...(common.hasData ? { limit: share, seed: common.seed + k } : {}),
  }));
}

/**
 * A cp per layer for the MACs target: group each layer alone at every SCAN_CPS level, measure
 * how far the output moves from the dense model's on up to 256 training images (KL
 * divergence), and spend the MACs budget where it hurts least (passes/allocate-cp.ts).
 */
async function sensitivityCps(
  dense: Model,
  keepMacs: number,
  grouping: SelfGroupOptions,
  planCtx: Parameters<typeof planSelfGroup>[2],
  ctx: StructureContext,
): Promise<ReadonlyMap<Node, number>> {
  const { model: scanned, nodes } = dense.clone();
  const plan = planSelfGroup(dense, grouping, planCtx);
  const samples = Math.max(32, Math.min(256, Math.floor(SCAN_MACS / plan.macsBefore)));
  const probe = await ctx.measure!.divergenceProbe(dense, samples);
  const layers: AllocationLayer[] = [];
  for (const [i, layer] of plan.layers.entries()) {
    const node = nodes.get(layer.node)!;
    const weight = node.input(1);
    const [original, group] = [weight.constValue!, node.getInt('group', 1)];
    const levels = [];
    for (const cp of SCAN_CPS) {
      maskLayer(node, layer.connectivityAt(cp));
      levels.push({ cp, macs: layer.macsAt(cp), cost: await probe.divergence(scanned) });
    }
    weight.graph.setInitializer(weight, original);
    if (group !== 1) node.setAttr(attr.int('group', group));
    layers.push({ node: layer.node, levels, macsAt: layer.macsAt });
    ctx.log(
      `sensitivity ${i + 1}/${plan.layers.length}: ${layer.label} (KL at cp 50: ${levels[SCAN_CPS.indexOf(50)]!.cost.toExponential(2)})`,
    );
  }
  const fixed = plan.macsBefore - plan.layers.reduce((sum, l) => sum + l.denseMacs, 0);
  const allocation = allocateCps(layers, fixed, keepMacs * plan.macsBefore);
  const labels = new Map(plan.layers.map((l) => [l.node, l.label]));
  ctx.log(
    `cp per layer: ${[...allocation.cps].map(([node, cp]) => `${labels.get(node)} ${cp.toFixed(0)}`).join(', ')}`,
  );
  const reach = allocation.targetMet ? '' : '; the MACs target is out of reach even at cp 95 everywhere';
  ctx.note(
    `cp allocation: by sensitivity (each layer grouped alone at cp ${SCAN_CPS.join(', ')}; KL divergence from the dense output on ${samples} training images)${reach}`,
  );
  return allocation.cps;
}
