/**
 * `msgc`: middle-spectrum grouped convolution (Su et al., "Middle-spectrum grouped
 * convolution", IEEE TNNLS 2024; official code hellozhuo/msgc). Every residual block gets a
 * gate network on its input — global average pool → 1×1 conv → BN → ReLU → 1×1 conv to
 * heads × C logits per spatial conv of the block (logit bias 2.0) — and each of those convs
 * becomes Conv(heads·C → C', group = heads) whose head h reads its own masked copy of the
 * conv's input (passes/methods/msgc-gates.ts). Masks are Gumbel-sigmoid gates (τ = 2/3) with
 * a hard 0.5 threshold and a straight-through gradient while fine-tuning, logit ≥ 0 after.
 * The loss adds the paper's MACs term
 *
 *   30 · max(0, F/F₀ − target(t)),   target(t) = 1 − (1 − keep) · min(1, t/0.5)
 *
 * (t the fraction of the run done; F counts each gated conv at its batch's mean mask density
 * and everything else as it is), and the gate networks learn `--mask-lr-scale` × faster than
 * the backbone (MSGC_MASK_LR_SCALE for why not the paper's 5).
 *
 * Masks depend on the image, so a static graph computes every connection. Two forms come out
 * of one run, and the report gives both:
 *
 * - **dynamic** (written beside the output as NAME.dynamic.onnx): the gate networks and the
 *   masked copies in the graph — accuracy as trained, executed MACs those of the dense model
 *   plus the gates (the masks zero inputs, they do not skip work);
 * - **static** (the output): each head keeps the input channels whose mean mask over
 *   calibration images is at least `--mask-threshold` (default 0.5: the channels a head reads
 *   for most images), weights outside zeroed, the gates removed; the connectivity (head h's
 *   filters read its kept channels; heads may overlap) is lowered by the grouped lowering like
 *   any learned grouping.
 *
 * Heads split a conv's filters: a conv takes the most heads (≤ `--heads`) that keep at least
 * `--min-group-width` filters each and whose split, modelled as that many equal groups
 * (passes/lower-cost.ts), realises `--min-realised` of its MACs saving at `--latency-batch`;
 * one head (input-channel pruning, which runs as a narrower conv) where none does.
 */
import type { Connectivity } from '../../compiler/analysis/connectivity.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { Emitter } from '../../compiler/autodiff/emitter.js';
import { ensureOpset } from '../../compiler/autodiff/opset.js';
import { RegroupError } from '../../compiler/errors.js';
import { attr } from '../../compiler/ir/attribute.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { nodeLabels } from '../../compiler/ir/label.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node, Value } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { Random } from '../../compiler/util/random.js';
import { cleanup } from '../cleanup.js';
import { runPasses } from '../manager.js';
import { realisedShare, type CostModelOptions, type LayerGeometry } from '../lower-cost.js';
import {
  MIN_GROUP_WIDTH_FLAG,
  MIN_REALISED_FLAG,
  REALISED_SHARE,
  type Method,
  type StructureContext,
  type Structured,
  type LossTerm,
} from './method.js';
import {
  MSGC_LOGIT_BIAS,
  emitGumbelGate,
  emitHeadsConv,
  emitUniformNoise,
  gatePlacements,
  type GatePlacement,
} from './msgc-gates.js';

export interface MsgcOptions {
  /** Most heads per conv. */
  readonly heads: number;
  /** Mean-mask threshold of the static form. */
  readonly maskThreshold: number;
  /** Gate networks' learning rate over the backbone's. */
  readonly maskLrScale: number;
  /** Fewest filters per head (undefined: the pipeline's channel multiple). */
  readonly minGroupWidth?: number;
  /** Share of a head split's MACs saving it must realise in the latency model. */
  readonly minRealised: number;
}

/** The paper's MACs-loss weight. */
export const MSGC_PENALTY = 30;
/** Fraction of the run over which the target falls from 1 to `keep` (the paper: the first half). */
export const MSGC_RAMP_END = 0.5;
/**
 * The gate networks' learning rate over the backbone's. The paper trains the backbone at 0.2 ×
 * the gates' rate over a full training run; a fine-tuning of a few epochs needs the gates far
 * faster. Fashion-MNIST ResNet at half the MACs (2 epochs, default lr): ×5 left the masks at
 * 88% of the MACs after 2 × 2000 images; after 2 × 10k images ×50 reached 52% (dynamic 85.3%),
 * ×100 50% (86.5%), ×500 50% (86.2%).
 */
export const MSGC_MASK_LR_SCALE = 100;
/** Calibration images for the static form's mean masks. */
export const MSGC_CALIBRATION_SAMPLES = 512;
/** Hidden width of a gate network: C/16 (the squeeze ratio of the authors' earlier dynamic group conv), at least 16. */
const gateHidden = (channels: number) => Math.max(16, Math.ceil(channels / 16));

/** A conv of a gated block: its weight, heads, channels, dense MACs, and its masks' columns in the block's gate. */
interface HeadsLayer {
  readonly label: string;
  readonly weight: string;
  /** The conv's bias initializer, if any. */
  readonly bias?: string;
  readonly heads: number;
  readonly outChannels: number;
  readonly inChannels: number;
  readonly macs: number;
  /** First column of this conv's heads × C masks in its block's gate output. */
  readonly offset: number;
}

/** A residual block with a gate network: its layers and the names the trained and finished models share. */
interface GatedBlock {
  readonly label: string;
  /** Name of the block input in the dense model. */
  readonly input: string;
  readonly channels: number;
  readonly layers: readonly HeadsLayer[];
  /** Name of the block's hard masks [N, Σ heads·C] (the same in the training and dynamic models). */
  readonly masks: string;
}

export const msgc: Method<MsgcOptions> = {
  name: 'msgc',
  description:
    'middle-spectrum grouped convolution (MSGC, Su et al. 2024): per-image channel masks per head from a gate network on each residual block, trained under a MACs loss; writes a static grouped model and the dynamic gated one beside it',
  learnsStructure: 'msgc learns its masks while fine-tuning',
  tunesLowering:
    "msgc's heads read overlapping channel sets, whose gathers the cost model prices poorly (Fashion-MNIST ResNet at batch 64: modelled 17% faster than dense per layer, measured 0.82× overall)",
  maskedDenseHint:
    'the static form keeps the channels each head reads for most images; --mask-threshold higher keeps fewer',
  flags: [
    {
      flags: '--heads <n>',
      key: 'heads',
      kind: 'positive-int',
      description:
        'msgc: most heads per gated conv, each a group of filters with its own input mask (default 4; fewer where a head would have fewer than --min-group-width filters or the split is not modelled to run faster, see --min-realised; 1 is input-channel pruning)',
    },
    {
      flags: '--mask-threshold <fraction>',
      key: 'maskThreshold',
      kind: 'fraction',
      description:
        "msgc: the static form keeps a channel in a head when the head's mean mask over calibration images is at least this (default 0.5)",
    },
    {
      flags: '--mask-lr-scale <n>',
      key: 'maskLrScale',
      kind: 'positive-int',
      description: `msgc: the gate networks' learning rate over the backbone's (default ${MSGC_MASK_LR_SCALE}; the paper's 5 is for training runs of a hundred epochs and leaves the masks far above the target in a short fine-tuning)`,
    },
    MIN_REALISED_FLAG,
    MIN_GROUP_WIDTH_FLAG,
  ],
  options(raw) {
    const maskThreshold = (raw.maskThreshold as number | undefined) ?? 0.5;
    if (!(maskThreshold > 0))
      throw new RegroupError('usage', '--mask-threshold 0 keeps every channel; use a fraction above 0, e.g. 0.5');
    return {
      heads: (raw.heads as number | undefined) ?? 4,
      maskThreshold,
      maskLrScale: (raw.maskLrScale as number | undefined) ?? MSGC_MASK_LR_SCALE,
      minGroupWidth: raw.minGroupWidth as number | undefined,
      minRealised: (raw.minRealised as number | undefined) ?? REALISED_SHARE,
    };
  },
  async structure(dense, options, keepMacs, ctx): Promise<Structured> {
    if (!ctx.common.hasData || !ctx.measure)
      throw new RegroupError(
        'usage',
        '--method msgc learns its masks while fine-tuning: pass --data (training images) and --epochs',
      );
    const model = dense.clone().model;
    const simdBlock = ctx.common.channelMultiple ?? 8;
    const limits = {
      maxHeads: options.heads,
      minWidth: options.minGroupWidth ?? simdBlock,
      realised: options.minRealised,
      cost: { simdBlock, batch: ctx.common.latencyBatch ?? 1 },
    };
    const { blocks, refused, macs } = gatedBlocks(model, limits);
    if (blocks.length === 0)
      return {
        model,
        connectivity: new Map(),
        macsRatio: 1,
        unchanged:
          'msgc: no residual block to put a gate on — gates go on the input of a block whose Add sums a path of ' +
          'plain spatial convs with the block input (ResNet-style)' +
          (refused.length > 0 ? `; not here: ${refused.join('; ')}` : '; the model has no Add of two computed values'),
      };
    if (refused.length > 0) ctx.note(`msgc: no gate at ${refused.join('; ')}`);
    const describeHeads = blocks.flatMap((b) => b.layers.map((l) => `${l.label}×${l.heads}`)).join(', ');
    ctx.note(
      `msgc: ${blocks.length} gated residual blocks (heads ${describeHeads}), MACs loss ${MSGC_PENALTY}·max(0, F/F₀ − target), ` +
        `target from 1 to ${keepMacs} over the first half of fine-tuning, gate networks at ${options.maskLrScale}× the backbone's learning rate`,
    );
    const gatedMacs = blocks.reduce((s, b) => s + b.layers.reduce((t, l) => t + l.macs, 0), 0);
    const share = { fixed: (macs - gatedMacs) / macs, total: macs };
    const training = gatedModel(model, blocks, 'train', ctx.common.seed, share);
    const perEpoch: number[] = [];
    const hooks = {
      model: training.model,
      stepValue: training.step,
      straightThrough: training.straightThrough,
      lrScale: new Map(training.gateParams.map((name) => [name, options.maskLrScale] as const)),
      // A heads conv reads its weight through per-head Slices, so the weights are named as trainable.
      trainable: blocks.flatMap((b) => b.layers.flatMap((l) => (l.bias ? [l.weight, l.bias] : [l.weight]))),
      lossTerms: [macsLoss(training.macs, keepMacs)],
      monitor: [training.macs],
      afterEpoch(epoch: number, epochs: number, monitored: ReadonlyMap<string, number>): void {
        const mean = monitored.get(training.macs);
        if (mean !== undefined) perEpoch.push(mean);
        if (mean !== undefined)
          ctx.log(
            `msgc, epoch ${epoch + 1}/${epochs}: masks kept ${(100 * mean).toFixed(1)}% of the MACs on average ` +
              `(target now ${targetAt((epoch + 1) / epochs, keepMacs).toFixed(3)})`,
          );
      },
      finish(trained: Model): Model {
        return dynamicForm(model, trained, blocks, share);
      },
    };
    const learned = async (tuned: Model): Promise<Structured> => {
      const epochs = perEpoch.map((m) => `${(100 * m).toFixed(1)}%`).join(', ');
      if (epochs)
        ctx.note(`msgc training: the masks kept ${epochs} of the MACs on average per epoch (target ${keepMacs})`);
      return staticForm(model, tuned, blocks, share, options, keepMacs, ctx);
    };
    return { model, connectivity: new Map(), macsRatio: 1, hooks, learned };
  },
};

/** target(t) = 1 − (1 − keep)·min(1, t/0.5). */
function targetAt(progress: number, keep: number): number {
  return 1 - (1 - keep) * Math.min(1, progress / MSGC_RAMP_END);
}

/** 30·max(0, F/F₀ − target(progress)) on the training model's MACs share. */
function macsLoss(macs: string, keep: number): LossTerm {
  return (e, value, run) => {
    const f = DataType.FLOAT;
    const ramp = e.op('Clip', [e.mul(run.progress, e.scalar(1 / MSGC_RAMP_END, f)), e.scalar(0, f), e.scalar(1, f)]);
    const target = e.sub(e.scalar(1, f), e.mul(ramp, e.scalar(1 - keep, f)));
    return e.mul(e.op('Relu', [e.sub(value(macs), target)]), e.scalar(MSGC_PENALTY, f));
  };
}

/**
 * The residual blocks that get a gate and the heads of each of their spatial convs; the Adds
 * that get none, and convs left alone, with why; the model's dense MACs (batch 1).
 */
function gatedBlocks(model: Model, limits: HeadLimits): { blocks: GatedBlock[]; refused: string[]; macs: number } {
  const { blocks: placements, refused } = gatePlacements(model);
  const cost = computeCost(model, inferShapes(model));
  const macsOf = new Map(cost.layers.map((l) => [l.node, l.macs] as const));
  const labels = nodeLabels(model.graph);
  const seen = new Set<Node>();
  const blocks: GatedBlock[] = [];
  for (const placement of placements) {
    let offset = 0;
    const layers: HeadsLayer[] = [];
    for (const conv of placement.convs) {
      const label = labels.get(conv) ?? conv.name;
      const w = conv.input(1);
      if (seen.has(conv) || w.useCount > 1 || !w.constValue) {
        refused.push(`${label} (its weight is shared or computed)`);
        continue;
      }
      const [outChannels, inChannels] = w.constValue.dims as [number, number];
      const macs = macsOf.get(conv) ?? 0;
      const kernelArea = w.constValue.size / (outChannels * inChannels);
      const positions = macs / (outChannels * inChannels * kernelArea) || 1;
      const geometry = { kernelArea, inputPositions: positions, outputPositions: positions };
      const heads = headsOf(outChannels, inChannels, geometry, limits);
      seen.add(conv);
      const bias = conv.inputs[2]?.name;
      layers.push({ label, weight: w.name, ...(bias ? { bias } : {}), heads, outChannels, inChannels, macs, offset });
      offset += heads * inChannels;
    }
    if (layers.length === 0) continue;
    const channels = channelsOf(placement);
    if (channels === undefined) {
      refused.push(`${placement.label} (the block input's channel count is not known)`);
      continue;
    }
    blocks.push({
      label: placement.label,
      input: placement.input.name,
      channels,
      layers,
      masks: `${placement.label}.msgc_masks`,
    });
  }
  return { blocks, refused, macs: cost.totals.macs };
}

/** How many heads a conv may take: at most `maxHeads`, each of at least `minWidth` filters, modelled to run at their MACs. */
interface HeadLimits {
  readonly maxHeads: number;
  readonly minWidth: number;
  readonly realised: number;
  readonly cost: CostModelOptions;
}

/**
 * The most heads (≤ maxHeads, dividing the filters) whose split — modelled as that many equal
 * groups — keeps `minWidth` filters a head and realises `realised` of its MACs saving at the
 * deployment batch; 1 (input-channel pruning) when none does.
 */
function headsOf(outChannels: number, inChannels: number, geometry: LayerGeometry, limits: HeadLimits): number {
  for (let heads = limits.maxHeads; heads > 1; heads--) {
    if (outChannels % heads !== 0 || outChannels / heads < limits.minWidth) continue;
    const groupable = inChannels % heads === 0;
    if (groupable && realisedShare(outChannels, inChannels, heads, geometry, limits.cost) >= limits.realised)
      return heads;
  }
  return 1;
}

/** Channels of a block input: the first conv on its path reads them all (groups are 1). */
function channelsOf(placement: GatePlacement): number | undefined {
  const first = placement.convs.find((c) => c.input(0) === placement.input) ?? placement.convs[0];
  return first?.input(1).constValue?.dims[1];
}

interface Share {
  /** MACs outside the gated convs over the dense total. */
  readonly fixed: number;
  readonly total: number;
}

/**
 * The gated model: per block, the gate network on its input and the heads convs reading the
 * masks ('train': Gumbel-sigmoid noise from the update count, straight through; 'infer':
 * logit ≥ 0), plus the MACs share F/F₀ as a named scalar. Parameter names depend only on
 * the dense model and the blocks, so the two modes share them.
 */
function gatedModel(
  dense: Model,
  blocks: readonly GatedBlock[],
  mode: 'train' | 'infer',
  seed: number,
  share: Share,
): {
  model: Model;
  step?: string;
  straightThrough: string[];
  gateParams: string[];
  /** The gate networks' tensors: their parameters and BN statistics. */
  gateTensors: string[];
  macs: string;
} {
  const model = dense.clone().model;
  // The gates use input-form Clip and Slice: an older export (PyTorch's opset 9) is upgraded first.
  ensureOpset(model, 13);
  const graph = model.graph;
  const e = new Emitter(graph, model.opset('') ?? 13, 'msgc');
  const f = DataType.FLOAT;
  const random = new Random(seed);
  const step =
    mode === 'train'
      ? graph.addInitializer('msgc.step', Tensor.fromArray(f, [], Float32Array.of(0)), { fresh: true })
      : undefined;
  const values = graph.valueMap();
  const convByWeight = new Map(graph.nodeList().map((n) => [n.inputs[1]?.name, n] as const));
  const straightThrough: string[] = [];
  const gateParams: string[] = [];
  const gateTensors: string[] = [];
  let macs: Value = e.scalar(share.fixed, f);
  blocks.forEach((block, b) => {
    e.scope = block.label;
    const x = values.get(block.input)!;
    const C = block.channels;
    const hidden = gateHidden(C);
    const width = block.layers.reduce((s, l) => s + l.heads * l.inChannels, 0);
    const param = (name: string, dims: number[], data: Float32Array) => {
      const v = graph.addInitializer(`${block.label}.msgc_gate.${name}`, Tensor.fromArray(f, dims, data), {
        fresh: true,
      });
      gateParams.push(v.name);
      return v;
    };
    const w1 = param('fc1.weight', [hidden, C, 1, 1], random.normals(hidden * C, Math.sqrt(2 / C)));
    const bnScale = param('bn.weight', [hidden], new Float32Array(hidden).fill(1));
    const bnBias = param('bn.bias', [hidden], new Float32Array(hidden));
    const stat = (name: string, fill: number) =>
      graph.addInitializer(
        `${block.label}.msgc_gate.${name}`,
        Tensor.fromArray(f, [hidden], new Float32Array(hidden).fill(fill)),
        {
          fresh: true,
        },
      );
    const [mean, variance] = [stat('bn.running_mean', 0), stat('bn.running_var', 1)];
    gateTensors.push(mean.name, variance.name);
    const w2 = param('fc2.weight', [width, hidden, 1, 1], random.normals(width * hidden, 0.01));
    const b2 = param('fc2.bias', [width], new Float32Array(width).fill(MSGC_LOGIT_BIAS));
    const pooled = e.op('GlobalAveragePool', [x]);
    const h = e.op('Conv', [pooled, w1]);
    const normed = e.op('BatchNormalization', [h, bnScale, bnBias, mean, variance], [attr.float('epsilon', 1e-5)]);
    const logits = e.op('Flatten', [e.op('Conv', [e.op('Relu', [normed]), w2, b2])], [attr.int('axis', 1)]);
    let hard: Value;
    if (mode === 'train') {
      const gate = emitGumbelGate(e, logits, emitUniformNoise(e, logits, step!, seed * 131 + b + 1));
      straightThrough.push(...gate.straightThrough.map((v) => v.name));
      hard = gate.hard;
    } else {
      hard = e.cast(e.op('Not', [e.op('Less', [logits, e.scalar(0, f)])]), f);
    }
    const masks = e.op('Identity', [hard]);
    masks.name = graph.names.fresh(block.masks);
    if (masks.name !== block.masks)
      throw new RegroupError('invalid-ir', `msgc: the model already has a value named '${block.masks}'`);
    for (const layer of block.layers) {
      emitHeadsConv(e, convByWeight.get(layer.weight)!, masks, layer.heads, layer.offset);
      const columns = e.op('Slice', [
        masks,
        e.int64([layer.offset]),
        e.int64([layer.offset + layer.heads * layer.inChannels]),
        e.int64([1]),
      ]);
      macs = e.add(macs, e.mul(e.reduceMean(columns, [0, 1], false), e.scalar(layer.macs / share.total, f)));
    }
  });
  const macsShare = e.op('Identity', [macs]);
  macsShare.name = graph.names.fresh('msgc.macs_share');
  graph.sort();
  return {
    model,
    step: step?.name,
    straightThrough,
    gateParams,
    gateTensors: [...gateParams, ...gateTensors],
    macs: macsShare.name,
  };
}

/** The dynamic form: the inference gates (logit ≥ 0) with every trained tensor of `trained`. */
function dynamicForm(dense: Model, trained: Model, blocks: readonly GatedBlock[], share: Share): Model {
  const { model, gateTensors } = gatedModel(dense, blocks, 'infer', 0, share);
  const graph = model.graph;
  // The trained tensors by name: the backbone's and the gates' (never the emitters' constants,
  // whose names the two modes number differently).
  for (const name of [...dense.graph.initializers.keys(), ...gateTensors]) {
    const tensor = trained.graph.initializers.get(name)?.constValue;
    if (!tensor) throw new RegroupError('invalid-ir', `msgc: the trained model has no '${name}'`);
    graph.setInitializer(graph.initializers.get(name)!, tensor);
  }
  // The MACs share is for training; the written model computes only its outputs.
  runPasses(model, [cleanup]);
  return model;
}

/**
 * The static form: mean masks of the dynamic model over calibration images; head h of each
 * conv keeps the channels whose mean is at least the threshold (its strongest one at least);
 * weights outside zeroed in the dense network with the trained tensors; the connectivity the
 * lowering emits. The dynamic model rides along as a companion output.
 */
async function staticForm(
  dense: Model,
  dynamic: Model,
  blocks: readonly GatedBlock[],
  split: Share,
  options: MsgcOptions,
  keep: number,
  ctx: StructureContext,
): Promise<Structured> {
  const values = dynamic.graph.valueMap();
  const maskValues = blocks.map((b) => values.get(b.masks)!);
  ctx.log(`msgc: mean masks over ${MSGC_CALIBRATION_SAMPLES} training images`);
  const means = await ctx.measure!.channelMeanAbs(dynamic, maskValues, MSGC_CALIBRATION_SAMPLES);
  const model = dense.clone().model;
  const graph = model.graph;
  for (const [name, value] of graph.initializers) {
    const tensor = dynamic.graph.initializers.get(name)?.constValue;
    if (tensor) graph.setInitializer(value, tensor);
  }
  const convByWeight = new Map(graph.nodeList().map((n) => [n.inputs[1]?.name, n] as const));
  const connectivity = new Map<Node, Connectivity>();
  let [dynamicMacs, staticMacs] = [split.fixed, split.fixed];
  const sweep = [0.25, 0.5, 0.75].map((t) => ({ t, macs: split.fixed }));
  const lines: string[] = [];
  blocks.forEach((block, b) => {
    const mean = means.get(maskValues[b]!)!;
    for (const layer of block.layers) {
      const C = layer.inChannels;
      const head = (h: number) => mean.subarray(layer.offset + h * C, layer.offset + (h + 1) * C);
      const keptAt = (threshold: number) =>
        Array.from({ length: layer.heads }, (_, h) => keptChannels(head(h), threshold));
      const share = (kept: readonly number[][]) => kept.reduce((s, k) => s + k.length, 0) / (layer.heads * C);
      const kept = keptAt(options.maskThreshold);
      const density = Array.from({ length: layer.heads }, (_, h) => head(h).reduce((s, v) => s + v, 0) / C);
      const weight = layer.macs / split.total;
      dynamicMacs += (weight * density.reduce((s, d) => s + d, 0)) / layer.heads;
      const fraction = share(kept);
      staticMacs += weight * fraction;
      for (const point of sweep) point.macs += weight * share(keptAt(point.t));
      lines.push(`${layer.label}×${layer.heads} ${(100 * fraction).toFixed(0)}%`);
      if (fraction === 1) continue;
      const conv = convByWeight.get(layer.weight)!;
      const per = layer.outChannels / layer.heads;
      const clusters = kept.map((inputs, h) => ({
        filters: Int32Array.from({ length: per }, (_, k) => h * per + k),
        inputs: Int32Array.from(inputs),
      }));
      const conn = { outChannels: layer.outChannels, inChannels: C, clusters };
      graph.setInitializer(conv.input(1), maskedWeight(conv.input(1).constValue!, conn));
      connectivity.set(conv, conn);
    }
  });
  const reach =
    staticMacs > keep + 0.02 ? `; above the target ${keep}: a higher --mask-threshold keeps fewer channels` : '';
  ctx.note(
    `msgc learned masks: the dynamic form keeps ${(100 * dynamicMacs).toFixed(1)}% of the MACs on calibration images ` +
      `(it executes the dense MACs plus its gates); the static form at threshold ${options.maskThreshold} keeps ` +
      `${(100 * staticMacs).toFixed(1)}% (${sweep.map((p) => `${p.t}: ${(100 * p.macs).toFixed(1)}%`).join(', ')}); ` +
      `kept input channels per conv: ${lines.join(', ')}${reach}`,
  );
  return {
    model,
    connectivity,
    macsRatio: staticMacs,
    figures: { dynamicMacsShare: dynamicMacs, staticMacsShare: staticMacs, layersGrouped: connectivity.size },
    companions: [
      {
        suffix: 'dynamic',
        model: dynamic,
        description: `msgc dynamic form (per-image masks from the gate networks; executes the dense MACs plus the gates, masks kept ${(100 * dynamicMacs).toFixed(1)}% on average)`,
      },
    ],
  };
}

/** Channels whose mean mask is at least `threshold`, else the strongest one. */
function keptChannels(mean: ArrayLike<number>, threshold: number): number[] {
  const kept = Array.from(mean, (v, c) => (v >= threshold ? c : -1)).filter((c) => c >= 0);
  if (kept.length > 0) return kept;
  let best = 0;
  for (let c = 1; c < mean.length; c++) if (mean[c]! > mean[best]!) best = c;
  return [best];
}

/** The weight with every connection outside the connectivity set to 0. */
function maskedWeight(w: Tensor, conn: Connectivity): Tensor {
  const [out, inputs] = [w.dims[0]!, w.dims[1]!];
  const kernel = w.size / (out * inputs);
  const values = Float32Array.from(w.toFloat64());
  for (const cluster of conn.clusters) {
    const read = new Set(cluster.inputs);
    for (const o of cluster.filters)
      for (let i = 0; i < inputs; i++)
        if (!read.has(i)) values.fill(0, (o * inputs + i) * kernel, (o * inputs + i + 1) * kernel);
  }
  return Tensor.fromArray(DataType.FLOAT, w.dims, values, { name: w.name });
}
