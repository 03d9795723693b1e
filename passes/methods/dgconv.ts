/**
 * `dgconv`: learned group counts (Zhang et al., ICCV 2019, "Differentiable Learning-to-Group
 * Channels via Groupable ConvNets"). Every plain conv whose channel counts share a factor gets
 * one binary gate per prime factor of gcd(C_out, C_in) (passes/methods/dgconv-gates.ts for
 * the mask U(θ) and the contiguous order); fine-tuning trains the gates with the weights
 * through W ⊙ U(θ), straight through the sign, under a MACs penalty
 *
 *   λ · max(0, F(θ)/F₀ − target(t)),   target(t) = 1 − (1 − keep) · min(1, t/0.4)
 *
 * (t = fraction of the run done: the target falls linearly from the dense model to `keep`
 * over the first 40%, then holds; F counts every gated layer at MACs/G and the rest as it
 * is). The penalty only acts above the target, so the gates the task needs stay open. At the
 * start of epoch ⌈E/2⌉ the gates freeze (fed m = 0, c = the gates): if F is still above the
 * target, the open gates nearest to closing (smallest value) close first, and the weights
 * train on for the remaining epochs under the structure they will run with. A run that ends
 * above the target without having frozen (one epoch) closes them in the finished model, and
 * says how many. The finished model is the dense network with W ⊙ U — block-diagonal weights
 * with G contiguous groups per layer — whose connectivity the lowering emits as
 * `Conv(group = G)`.
 *
 * Gates start open (θ = +θ₀: the trained dense model, `--gate-init open`, the default) or
 * closed (θ = −θ₀: every layer as grouped as its widths allow, the unofficial code's start
 * from scratch). A group keeps at least `--min-group-width` input and output channels
 * (default the CPU's SIMD block): narrower groups run no faster on the CPU provider, so the
 * factors that would go below it are not gated (they stay open).
 */
import type { Connectivity } from '../../compiler/analysis/connectivity.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { Emitter } from '../../compiler/autodiff/emitter.js';
import { RegroupError } from '../../compiler/errors.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { nodeLabels } from '../../compiler/ir/label.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { cleanup } from '../cleanup.js';
import { realisedShare } from '../lower-cost.js';
import { runPasses } from '../manager.js';
import {
  connected,
  emitGateMask,
  gateConnectivity,
  gcd,
  groupCount,
  openness,
  primeFactors,
  type GateOrder,
} from './dgconv-gates.js';
import {
  MIN_GROUP_WIDTH_FLAG,
  MIN_REALISED_FLAG,
  REALISED_SHARE,
  type LossTerm,
  type Method,
  type StructureContext,
  type Structured,
  type TrainingHooks,
} from './method.js';

export interface DgconvOptions {
  readonly init: 'open' | 'closed';
  readonly order: GateOrder;
  /** Fewest input and output channels per group (undefined: the pipeline's channel multiple). */
  readonly minGroupWidth?: number;
  /** Share of a grouping's MACs saving it must realise in the latency model to be gated. */
  readonly minRealised: number;
}

/** Penalty weight λ: large against the distillation loss, so the hinge holds F at the target. */
export const DGCONV_PENALTY = 10;
/** Fraction of the run over which the target falls to `keep` (before the gates freeze halfway). */
export const RAMP_END = 0.4;
/**
 * |θ| at the start: the penalty needs tens of updates to flip a gate, so a gate closes on a
 * sustained push rather than one batch's noise (Fashion-MNIST ResNet at half the MACs, 10k
 * images × 2 epochs: 83.3% with 0.5 against 81.6% with 0.05; a penalty weight of 2 instead of
 * 10 left the gates open until they froze, then closed 8 at once: 79.1%).
 */
export const DGCONV_THETA0 = 0.5;

/** A conv that can take gates: its weight, the factors it gates, its size. */
export interface GateableLayer {
  readonly label: string;
  /** Initializer name of the conv's weight (the same in the dense, training and finished models). */
  readonly weight: string;
  readonly factors: readonly number[];
  readonly outChannels: number;
  readonly inChannels: number;
  /** Dense MACs of the layer (batch 1). */
  readonly macs: number;
}

/** A gated conv of the training model: what the hooks need to find it again in a trained or finished model. */
export interface GatedLayer extends GateableLayer {
  /** Initializer name of the gate vector θ in the training model. */
  readonly theta: string;
  /** Name of the layer's density value mean(U) in the training model. */
  readonly density: string;
  /** Initializer name of the layer's fed frozen gates c (the gates read m·θ + c). */
  readonly frozen: string;
}

export const dgconv: Method<DgconvOptions> = {
  name: 'dgconv',
  description:
    'learned group counts (DGConv, Zhang et al. 2019): a binary gate per channel factor, trained with the weights under a MACs penalty; runs as Conv(group)',
  learnsStructure: 'dgconv learns its group counts while fine-tuning',
  flags: [
    {
      flags: '--gate-init <state>',
      key: 'gateInit',
      kind: 'choice',
      choices: ['open', 'closed'],
      description:
        'dgconv: gates start open (dense: the trained model, default) or closed (every layer as grouped as --min-group-width allows, as from scratch)',
    },
    {
      flags: '--gate-order <order>',
      key: 'gateOrder',
      kind: 'choice',
      choices: ['contiguous', 'kronecker'],
      description:
        "dgconv: contiguous (default) closes leading factors first, so groups are contiguous and run as Conv(group) as they are; kronecker is the paper's free order, whose interleaved groups need channel permutations",
    },
    MIN_REALISED_FLAG,
    MIN_GROUP_WIDTH_FLAG,
  ],
  options(raw) {
    return {
      init: (raw.gateInit as 'open' | 'closed' | undefined) ?? 'open',
      order: (raw.gateOrder as GateOrder | undefined) ?? 'contiguous',
      minGroupWidth: raw.minGroupWidth as number | undefined,
      minRealised: (raw.minRealised as number | undefined) ?? REALISED_SHARE,
    };
  },
  async structure(dense, options, keepMacs, ctx): Promise<Structured> {
    if (!ctx.common.hasData)
      throw new RegroupError(
        'usage',
        '--method dgconv learns its groups while fine-tuning: pass --data (training images) and --epochs',
      );
    const simdBlock = ctx.common.channelMultiple ?? 8;
    const minWidth = options.minGroupWidth ?? simdBlock;
    const batch = ctx.common.latencyBatch ?? 1;
    const model = dense.clone().model;
    const {
      layers: candidates,
      skipped,
      macs,
    } = gateableLayers(model, {
      minWidth,
      simdBlock,
      batch,
      realised: options.minRealised,
    });
    if (candidates.length === 0) {
      const why =
        skipped.length > 0 ? `: ${skipped.join('; ')}` : ': the model has no plain Conv with an initializer weight';
      // Groups pay off at larger batches (the per-group cost does not grow with the batch).
      const hint = skipped.some((line) => line.includes('--min-realised'))
        ? ` — grouped convs run faster at larger batches: pass the batch the model runs at (--latency-batch), or lower --min-realised`
        : '';
      return {
        model,
        connectivity: new Map(),
        macsRatio: 1,
        unchanged: `dgconv: no conv can be grouped${why}${hint}`,
      };
    }
    if (skipped.length > 0) ctx.note(`dgconv: left dense — ${skipped.join('; ')}`);
    ctx.note(
      `dgconv: ${candidates.length} gated convs (${options.order} order, gates start ${options.init}, groups of ≥ ${minWidth} channels ` +
        `modelled to realise ≥ ${(100 * options.minRealised).toFixed(0)}% of their saving at batch ${batch}), ` +
        `MACs penalty ${DGCONV_PENALTY}·max(0, F/F₀ − target), target from 1 to ${keepMacs} over the first 40% of fine-tuning, gates frozen halfway`,
    );
    const training = gatedModel(model, candidates, options);
    const layers = training.layers;
    const gated = layers.reduce((s, l) => s + l.macs, 0);
    const fixed = macs - gated;
    const state = { open: new Map<string, number[]>(), forced: 0, ratio: 1 };
    const hooks: TrainingHooks = {
      model: training.model,
      // The weights feed the gate Mul, not the conv, so they are named as well.
      trainable: layers.flatMap((l) => [l.theta, l.weight]),
      frozen: [training.learning, ...layers.map((l) => l.frozen)],
      straightThrough: training.straightThrough,
      lossTerms: [macsPenalty(layers, fixed, macs, keepMacs)],
      beforeEpoch(epoch, epochs, current) {
        const gates = (l: GatedLayer) => effectiveGates(l, current, training.learning);
        if (epoch > 0)
          ctx.log(
            `dgconv, after epoch ${epoch}/${epochs}: ${describe(layers, gates, options.order, macs)} ` +
              `(target now ${(1 - (1 - keepMacs) * Math.min(1, epoch / epochs / RAMP_END)).toFixed(3)})`,
          );
        // Halfway (after the target's ramp), the structure freezes and the weights train on under it.
        if (epoch !== Math.ceil(epochs / 2) || epoch === 0 || current(training.learning).toFloat64()[0] === 0)
          return undefined;
        // Frozen at the target: the gates nearest to closing close now, while the weights can still adapt.
        const values = new Map(layers.map((l) => [l.theta, gates(l)] as const));
        const closed = closeToTarget(layers, values, options.order, macs, keepMacs);
        const closing = closed > 0 ? `, ${closed} more closed to meet the target` : '';
        ctx.log(`dgconv: gates frozen for the remaining ${epochs - epoch} epoch(s)${closing}`);
        const frozenGates = layers.map(
          (l) =>
            [
              l.frozen,
              Tensor.fromArray(DataType.FLOAT, [l.factors.length], Float32Array.from(values.get(l.theta)!)),
            ] as const,
        );
        return new Map([[training.learning, Tensor.fromArray(DataType.FLOAT, [], Float32Array.of(0))], ...frozenGates]);
      },
      finish(trained) {
        const baked = bake(trained, layers, training.learning, options.order, macs, keepMacs);
        Object.assign(state, baked.state);
        return baked.model;
      },
    };
    const learned = (tuned: Model): Structured => {
      const connectivity = new Map<Node, Connectivity>();
      const byWeight = new Map(tuned.graph.nodeList().map((n) => [n.inputs[1]?.name, n] as const));
      const groups = (l: GatedLayer) => groupCount(l.factors, state.open.get(l.theta) ?? []);
      for (const layer of layers) {
        const node = byWeight.get(layer.weight);
        if (groups(layer) > 1 && node)
          connectivity.set(
            node,
            gateConnectivity(layer.outChannels, layer.inChannels, layer.factors, state.open.get(layer.theta)!),
          );
      }
      const text = layers.map((l) => `${l.label}×${groups(l)}`).join(', ');
      const forced = state.forced > 0 ? `; ${state.forced} gate(s) closed after training to meet the target` : '';
      const short =
        state.ratio > keepMacs + 1e-9
          ? `; the target ${keepMacs} is out of reach with every gate closed (lower --min-realised or --min-group-width to gate more)`
          : '';
      ctx.note(`dgconv learned groups: ${text} — ${state.ratio.toFixed(3)} of the MACs${forced}${short}`);
      return {
        model: tuned,
        connectivity,
        macsRatio: state.ratio,
        figures: { layersGrouped: connectivity.size, gatesForced: state.forced },
      };
    };
    return { model, connectivity: new Map(), macsRatio: 1, hooks, learned };
  },
};

/** Where a layer's gates stop: groups no narrower than `minWidth`, realising `realised` of their saving at `batch`. */
export interface GateLimits {
  readonly minWidth: number;
  readonly simdBlock: number;
  readonly batch: number;
  readonly realised: number;
}

/**
 * Plain convs with an unshared initializer weight and the prime factors of gcd(C_out, C_in)
 * they gate (a prefix: each further factor doubles or more the group count while it keeps
 * the groups wide enough and modelled to run at their MACs), and why the others stay dense.
 */
export function gateableLayers(
  model: Model,
  limits: GateLimits,
): { layers: GateableLayer[]; skipped: string[]; macs: number } {
  const cost = computeCost(model, inferShapes(model));
  const labels = nodeLabels(model.graph);
  const layers: GateableLayer[] = [];
  const skipped: string[] = [];
  for (const { node, macs } of cost.layers) {
    if (node.opType !== 'Conv' || node.domain !== '') continue;
    const label = labels.get(node) ?? node.name;
    const w = node.inputs[1];
    if (node.getInt('group', 1) !== 1) {
      skipped.push(`${label} (already grouped, group ${node.getInt('group', 1)})`);
      continue;
    }
    if (!w?.isInitializer() || w.useCount > 1 || w.isGraphOutput() || !(macs > 0)) {
      skipped.push(`${label} (its weight is not an initializer of its own)`);
      continue;
    }
    const [outChannels, inChannels] = w.constValue!.dims as [number, number];
    const kernelArea = w.constValue!.size / (outChannels * inChannels);
    const positions = macs / (outChannels * inChannels * kernelArea) || 1;
    const fast = (groups: number) =>
      realisedShare(
        outChannels,
        inChannels,
        groups,
        { kernelArea, inputPositions: positions, outputPositions: positions },
        limits,
      );
    const all = primeFactors(gcd(outChannels, inChannels));
    const factors: number[] = [];
    let product = 1;
    for (const n of all) {
      const groups = product * n;
      if (Math.min(outChannels, inChannels) / groups < limits.minWidth || fast(groups) < limits.realised) break;
      factors.push(n);
      product = groups;
    }
    if (factors.length === 0) {
      const why =
        all.length === 0
          ? `${outChannels} filters and ${inChannels} inputs share no factor`
          : Math.min(outChannels, inChannels) / all[0]! < limits.minWidth
            ? `${all[0]} groups would be narrower than ${limits.minWidth} channels`
            : `${all[0]} groups would realise ${(100 * fast(all[0]!)).toFixed(0)}% of their MACs saving at batch ${limits.batch} (modelled; ${(100 * limits.realised).toFixed(0)}% wanted, --min-realised)`;
      skipped.push(`${label} (${why})`);
      continue;
    }
    layers.push({ label, weight: w.name, factors, outChannels, inChannels, macs });
  }
  return { layers, skipped, macs: cost.totals.macs };
}

/**
 * The training model: each gated conv reads W ⊙ U(m·θ + c), with m (one fed scalar, 1 while
 * the gates learn) and c (fed per layer, 0 while they learn): the gates freeze when a hook
 * sets m = 0 and c = θ. Returns the layers with their θ, c and density names.
 */
function gatedModel(
  dense: Model,
  candidates: readonly GateableLayer[],
  options: DgconvOptions,
): { model: Model; layers: GatedLayer[]; straightThrough: string[]; learning: string } {
  const model = dense.clone().model;
  const graph = model.graph;
  const e = new Emitter(graph, model.opset('') ?? 17, 'dgconv');
  const byWeight = new Map(graph.nodeList().map((n) => [n.inputs[1]?.name, n] as const));
  const straightThrough: string[] = [];
  const learning = graph.addInitializer(
    'dgconv.gates_learning',
    Tensor.fromArray(DataType.FLOAT, [], Float32Array.of(1)),
    {
      fresh: true,
    },
  );
  const layers = candidates.map((layer): GatedLayer => {
    const node = byWeight.get(layer.weight)!;
    const w = node.input(1);
    const K = layer.factors.length;
    const theta0 = options.init === 'open' ? DGCONV_THETA0 : -DGCONV_THETA0;
    const tensor = (values: Float32Array) => Tensor.fromArray(DataType.FLOAT, [K], values);
    const theta = graph.addInitializer(`${layer.weight}.dgconv_gates`, tensor(new Float32Array(K).fill(theta0)), {
      fresh: true,
    });
    const frozen = graph.addInitializer(`${layer.weight}.dgconv_frozen`, tensor(new Float32Array(K)), { fresh: true });
    e.scope = layer.label;
    const d = layer.factors.reduce((p, n) => p * n, 1);
    const rank = w.constValue!.dims.length - 2;
    const gates = e.add(e.mul(theta, learning), frozen);
    const gate = emitGateMask(
      e,
      gates,
      layer.factors,
      layer.outChannels / d,
      layer.inChannels / d,
      rank,
      options.order,
    );
    node.setInput(1, e.mul(w, gate.mask));
    straightThrough.push(...gate.straightThrough.map((v) => v.name));
    return { ...layer, theta: theta.name, frozen: frozen.name, density: gate.density.name };
  });
  graph.sort();
  return { model, layers, straightThrough, learning: learning.name };
}

/** λ·max(0, F/F₀ − target(progress)) over the gated layers' densities. */
function macsPenalty(layers: readonly GatedLayer[], fixed: number, total: number, keep: number): LossTerm {
  return (e, value, run) => {
    const f = DataType.FLOAT;
    let macs = e.scalar(fixed / total, f);
    for (const layer of layers) macs = e.add(macs, e.mul(value(layer.density), e.scalar(layer.macs / total, f)));
    const ramp = e.op('Clip', [e.mul(run.progress, e.scalar(1 / RAMP_END, f)), e.scalar(0, f), e.scalar(1, f)]);
    const target = e.sub(e.scalar(1, f), e.mul(ramp, e.scalar(1 - keep, f)));
    return e.mul(e.op('Relu', [e.sub(macs, target)]), e.scalar(DGCONV_PENALTY, f));
  };
}

/** Openness per layer from the gate values, and the MACs fraction they give. */
function structureOf(
  layers: readonly GatedLayer[],
  gates: (layer: GatedLayer) => Float32Array | Float64Array,
  order: GateOrder,
  total: number,
): { open: number[][]; ratio: number } {
  const open = layers.map((l) => openness(gates(l), order));
  const saved = layers.reduce((s, l, k) => s + l.macs * (1 - 1 / groupCount(l.factors, open[k]!)), 0);
  return { open, ratio: 1 - saved / total };
}

/** The gates a layer's mask reads: m·θ + c. */
function effectiveGates(layer: GatedLayer, current: (name: string) => Tensor, learningName: string): Float64Array {
  const learning = current(learningName).toFloat64()[0]!;
  const [theta, frozen] = [current(layer.theta).toFloat64(), current(layer.frozen).toFloat64()];
  return Float64Array.from(theta, (t, k) => learning * t + frozen[k]!);
}

/** "MACs 0.62 (groups: a×2, b×4, …)" for the progress lines. */
function describe(
  layers: readonly GatedLayer[],
  gates: (layer: GatedLayer) => Float64Array,
  order: GateOrder,
  total: number,
): string {
  const { open, ratio } = structureOf(layers, gates, order, total);
  const groups = layers.map((l, k) => `${l.label}×${groupCount(l.factors, open[k]!)}`).join(', ');
  return `${ratio.toFixed(3)} of the MACs, groups ${groups}`;
}

/**
 * The finished model: hard gates (closing the open gates with the smallest θ while the MACs
 * exceed `keep`), W ← W ⊙ U per layer, the gate graph removed.
 */
function bake(
  trained: Model,
  layers: readonly GatedLayer[],
  learning: string,
  order: GateOrder,
  total: number,
  keep: number,
): { model: Model; state: { open: Map<string, number[]>; forced: number; ratio: number } } {
  const model = trained.clone().model;
  const graph = model.graph;
  const current = (name: string) => {
    const value = graph.initializers.get(name)?.constValue;
    if (!value) throw new RegroupError('invalid-ir', `dgconv: the trained model has no '${name}'`);
    return value;
  };
  const theta = new Map(layers.map((l) => [l.theta, effectiveGates(l, current, learning)] as const));
  const forced = closeToTarget(layers, theta, order, total, keep);
  const { open, ratio } = structureOf(layers, (l) => theta.get(l.theta)!, order, total);
  const opened = new Map<string, number[]>();
  layers.forEach((layer, k) => {
    const w = graph.initializers.get(layer.weight)!;
    const mul = w.uses()[0]?.node;
    const conv = mul?.output(0).uses()[0]?.node;
    if (mul?.opType !== 'Mul' || conv?.opType !== 'Conv')
      throw new RegroupError('invalid-ir', `dgconv: '${layer.weight}' does not feed its gate Mul and conv`);
    graph.setInitializer(w, masked(w.constValue!, layer, open[k]!));
    conv.setInput(1, w);
    opened.set(layer.theta, open[k]!);
  });
  runPasses(model, [cleanup]);
  return { model, state: { open: opened, forced, ratio } };
}

/**
 * Close the open gates nearest to closing (smallest value) until the MACs fraction is at most
 * `keep` or nothing can close; changes `theta` in place, returns how many closed.
 */
function closeToTarget(
  layers: readonly GatedLayer[],
  theta: ReadonlyMap<string, Float64Array>,
  order: GateOrder,
  total: number,
  keep: number,
): number {
  let forced = 0;
  for (let s = structureOf(layers, (l) => theta.get(l.theta)!, order, total); s.ratio > keep + 1e-9; ) {
    const next = nearestToClosing(layers, theta, s.open, order);
    if (!next) break;
    theta.get(next.layer.theta)![next.factor] = -Math.abs(theta.get(next.layer.theta)![next.factor]!) || -1e-6;
    forced++;
    s = structureOf(layers, (l) => theta.get(l.theta)!, order, total);
  }
  return forced;
}

/** W ⊙ U for hard openness `open`. */
function masked(w: Tensor, layer: GatedLayer, open: readonly number[]): Tensor {
  const d = layer.factors.reduce((p, n) => p * n, 1);
  const [rOut, rIn] = [layer.outChannels / d, layer.inChannels / d];
  const kernel = w.size / (layer.outChannels * layer.inChannels);
  const values = Float32Array.from(w.toFloat64());
  for (let o = 0; o < layer.outChannels; o++)
    for (let i = 0; i < layer.inChannels; i++)
      if (!connected(o, i, layer.factors, open, rOut, rIn))
        values.fill(0, (o * layer.inChannels + i) * kernel, (o * layer.inChannels + i + 1) * kernel);
  return Tensor.fromArray(DataType.FLOAT, w.dims, values, { name: w.name });
}

/** The open gate nearest to closing (smallest θ) whose closing lowers the MACs in the given order. */
function nearestToClosing(
  layers: readonly GatedLayer[],
  theta: ReadonlyMap<string, Float64Array>,
  open: readonly (readonly number[])[],
  order: GateOrder,
): { layer: GatedLayer; factor: number } | undefined {
  let best: { layer: GatedLayer; factor: number; value: number } | undefined;
  layers.forEach((layer, k) => {
    const values = theta.get(layer.theta)!;
    // Contiguous: only the first open factor closes a group boundary; kronecker: any open one.
    const candidates = open[k]!.flatMap((e, factor) => (e === 1 ? [factor] : []));
    for (const factor of order === 'contiguous' ? candidates.slice(0, 1) : candidates) {
      const value = values[factor]!;
      if (!best || value < best.value) best = { layer, factor, value };
    }
  });
  return best && { layer: best.layer, factor: best.factor };
}

export type { StructureContext };
