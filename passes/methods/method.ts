/**
 * The method seam: every compression method (SG-CNN, its balanced variant, uniform groups, L1
 * pruning, WSP, DCFF, and later DGConv and MSGC) is one file in passes/methods/ that exports a
 * `Method`, listed in passes/methods/index.ts. The compress pipeline (cli/pipelines/compress.ts)
 * only ever talks to this interface:
 *
 *   options(raw flags)  → typed options, checked (usage errors name the flag)
 *   schedule(options)   → the structure → fine-tune steps (one, unless the method steps)
 *   structure(dense)    → a structured model: masked-dense connectivity to lower, a pruned or
 *                         fused model, and optional training hooks
 *   hooks               → what fine-tuning must do for this method: train another graph
 *                         (e.g. DCFF's compact weight computed from the full filter bank),
 *                         refresh derived tensors every epoch, add loss terms, and turn the
 *                         trained graph back into the inference model
 *
 * Methods live in passes/ and so import compiler/ only: what they need measured on data
 * (activation statistics, output divergence, gradients) reaches them through
 * `StructureContext.measure`, which the pipeline implements with the runtime.
 */
import type { Connectivity } from '../../compiler/analysis/connectivity.js';
import type { TrainingHooks } from '../../compiler/autodiff/types.js';
import type { Model } from '../../compiler/ir/model.js';
import type { LayerLatency } from '../latency-pricing.js';
import type { Node, Value } from '../../compiler/ir/node.js';

/** How a method flag's text is parsed (the CLI maps each kind to a parser with a clear error). */
export type FlagKind = 'boolean' | 'positive-int' | 'non-negative-int' | 'fraction' | 'percentiles' | 'choice';

/**
 * A flag that belongs to one or more methods. The CLI registers each flag once (methods may
 * share one, e.g. `--criterion`), shows it under `compress --help`, and refuses it with a usage
 * error naming the methods it applies to when another method is chosen.
 */
export interface MethodFlag {
  /** Commander syntax: `--groups <n>`, `--include-fc`. */
  readonly flags: string;
  /** The option key commander produces (`groups`, `includeFc`). */
  readonly key: string;
  readonly kind: FlagKind;
  readonly description: string;
  readonly choices?: readonly string[];
  /**
   * Given, the flag itself says how much to keep (sg-cnn's `--cp`), so the command needs no
   * --keep-macs, --keep-latency or --latency-ms.
   */
  readonly setsBudget?: boolean;
}

/** `--round-to`, shared by the methods that prune channels: kept counts are multiples of n. */
export const ROUND_TO_FLAG: MethodFlag = {
  flags: '--round-to <n>',
  key: 'roundTo',
  kind: 'positive-int',
  description:
    'channel-pruning methods: kept channel counts are multiples of n (default: the CPU SIMD block, 8 with AVX2 ' +
    'and 16 with AVX-512, where convolutions run at their MACs; 1 meets the MACs target exactly but leaves ' +
    'widths the CPU runs about 25% slower)',
};

/** `--min-group-width`, shared by the methods that learn groups. */
export const MIN_GROUP_WIDTH_FLAG: MethodFlag = {
  flags: '--min-group-width <n>',
  key: 'minGroupWidth',
  kind: 'positive-int',
  description:
    'dgconv, msgc: fewest channels per group or head (default: the CPU SIMD block, 8 with AVX2, 16 with AVX-512)',
};

/**
 * The default share of a grouping's MACs saving a layer must realise in the lowering's
 * latency model (passes/lower-cost.ts realisedShare) for a method that learns groups to
 * offer it: the promise the speed benchmarks hold every method to (speed-up × MACs ratio ≥ 0.85).
 */
export const REALISED_SHARE = 0.85;

/** `--min-realised`, shared by the methods that learn groups. */
export const MIN_REALISED_FLAG: MethodFlag = {
  flags: '--min-realised <fraction>',
  key: 'minRealised',
  kind: 'fraction',
  description:
    'dgconv, msgc: a layer is offered a grouping (dgconv: a gate; msgc: heads) only where it is modelled (passes/lower-cost.ts, at --latency-batch) to realise at least this share of its MACs saving (default 0.85; lower it to let small layers group for parameters more than speed)',
};

/** A channel-pruning method's `--round-to`: as given, else the pipeline's channel multiple. */
export function roundToOf(raw: Readonly<Record<string, unknown>>, common: CommonOptions): number {
  return (raw.roundTo as number | undefined) ?? common.channelMultiple ?? 1;
}

/** Settings every method sees, owned by the pipeline. */
export interface CommonOptions {
  /** Fraction of the dense model's MACs to keep. */
  readonly keepMacs: number;
  readonly seed: number;
  /**
   * The channel multiple convolutions run fastest with on the target (the CPU's SIMD block),
   * the default of `--round-to`; absent means 1.
   */
  readonly channelMultiple?: number;
  /** Whether training data was given (`--data`): `measure` is there exactly when it is. */
  readonly hasData: boolean;
  /** The batch the output is meant to run fast at (`--latency-batch`, default 1). */
  readonly latencyBatch?: number;
  /** Fine-tuning samples per epoch when known (the --limit or the data set size). */
  readonly trainSamples?: number;
}

/** One structure → fine-tune step of a method's schedule. */
export interface Step<O> {
  readonly options: O;
  readonly keepMacs: number;
  /** This step's share of the fine-tuning samples and its seed, when the method splits them. */
  readonly limit?: number;
  readonly seed?: number;
}

/** A probe of how far a changed model's output moves from the dense model's (KL for classifiers). */
export interface DivergenceProbe {
  /** Images the probe compares on. */
  readonly samples: number;
  divergence(candidate: Model): Promise<number>;
}

/** Per-channel saliency of one value from labelled batches (WSP, Guo et al. 2021). */
export interface ChannelSaliency {
  /** Fraction of (image, position) entries where the channel's activation is zero (or ≤ ε). */
  readonly activationSparsity: Float64Array;
  /** The same for the loss gradient with respect to the channel's activation. */
  readonly gradientSparsity: Float64Array;
  /** Mean |activation| and mean |gradient| per channel (for ties and reports). */
  readonly activationMeanAbs: Float64Array;
  readonly gradientMeanAbs: Float64Array;
  /** Images measured. */
  readonly samples: number;
}

/** Measurements on training data, run by the pipeline with onnxruntime (present with --data only). */
export interface Measurements {
  /** Mean |x| per channel of each value over `samples` training images (default 256). */
  channelMeanAbs(model: Model, values: readonly Value[], samples?: number): Promise<Map<Value, Float64Array>>;
  /** A divergence probe against `reference` on up to `samples` training images. */
  divergenceProbe(reference: Model, samples: number): Promise<DivergenceProbe>;
  /** Activation and gradient sparsity per channel of each value, on labelled training batches. */
  channelSaliency(model: Model, values: readonly Value[], samples?: number): Promise<Map<Value, ChannelSaliency>>;
}

/** What a method's structuring step gets besides the model and its options. */
export interface StructureContext {
  readonly common: CommonOptions;
  /** Present exactly when `common.hasData`. */
  readonly measure?: Measurements;
  /** Progress lines for the user (stderr in the CLI). */
  log(line: string): void;
  /** Facts worth keeping in the report ("self-grouping: cp 50, 19 layers grouped"). */
  note(line: string): void;
  /**
   * Measured layer latencies on the target, given only to a method with `pricesLatency` when
   * the user asked for a latency: `structure`'s `keepMacs` is then the fraction of the
   * *predicted latency* to keep (passes/latency-pricing.ts), not of the MACs.
   */
  readonly latency?: LayerLatency;
}

export type { LossTerm, TrainingHooks } from '../../compiler/autodiff/types.js';
export type { LayerLatency } from '../latency-pricing.js';

/** A structured model, ready to fine-tune and lower. */
export interface Structured {
  /** Masked dense (grouped layers' missing connections are exact zeros), pruned or fused. */
  readonly model: Model;
  /** Layers (nodes of `model`) whose connectivity the pipeline lowers to grouped ONNX ops (empty for pruning). */
  readonly connectivity: ReadonlyMap<Node, Connectivity>;
  /** MACs of the structure over the dense model's, before lowering chooses forms. */
  readonly macsRatio: number;
  /** The method's own figures for this step (e.g. sg-cnn's cp), typed numbers for reports and tests. */
  readonly figures?: Readonly<Record<string, number>>;
  readonly hooks?: TrainingHooks;
  /**
   * A structure learned while fine-tuning (a method with `learnsStructure`): the fine-tuned
   * model (after `hooks.finish`) → the structure to lower, its connectivity keyed by that
   * model's nodes and its MACs ratio as learned.
   */
  readonly learned?: (tuned: Model) => Structured | Promise<Structured>;
  /**
   * Further models the run writes beside the output (NAME.<suffix>.onnx) and measures like it
   * (accuracy, MACs, parameters, latency), e.g. MSGC's dynamic form beside its static one.
   */
  readonly companions?: readonly Companion[];
  /** Why the method left the model as it is (nothing it can structure): written unchanged, exit 0. */
  readonly unchanged?: string;
}

/** A model written beside the output (Structured.companions). */
export interface Companion {
  /** File name part: the output NAME.onnx gets NAME.<suffix>.onnx beside it. */
  readonly suffix: string;
  readonly model: Model;
  /** What it is, for the notes and the report. */
  readonly description: string;
}

/** A compression method (see the file header). */
export interface Method<O = unknown> {
  readonly name: string;
  /** One line for `compress --help`. */
  readonly description: string;
  /** The method's own flags. */
  readonly flags: readonly MethodFlag[];
  /** Said when some of its grouped layers stay masked dense after lowering (what to try instead). */
  readonly maskedDenseHint?: string;
  /**
   * Set (to the reason) by a method whose structure is learned in global fine-tuning: it needs
   * --data, fine-tunes globally (no local phase) and cannot search a latency target by probing.
   */
  readonly learnsStructure?: string;
  /**
   * Set (to the reason) by a method whose structures the lowering's cost model prices poorly:
   * the pipeline times each layer's forms (`--tune`) unless the user chose.
   */
  readonly tunesLowering?: string;
  /** Plans with measured layer latencies when given them (StructureContext.latency). */
  readonly pricesLatency?: boolean;
  /** Typed, checked options from the raw flag values (keys of `flags` only; absent when not given). */
  options(raw: Readonly<Record<string, unknown>>, common: CommonOptions): O;
  /** The structure → fine-tune steps; default one step at `common.keepMacs`. */
  schedule?(options: O, common: CommonOptions): Step<O>[];
  /** Structure the prepared dense model (not changed) for `keepMacs`. */
  structure(dense: Model, options: O, keepMacs: number, ctx: StructureContext): Promise<Structured>;
}

/** A method whose option type is erased, as the registry holds them. */
// biome-ignore lint/suspicious/noExplicitAny: the registry holds methods of every option type
export type AnyMethod = Method<any>;
