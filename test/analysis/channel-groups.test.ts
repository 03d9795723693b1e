/**
 * Channel groups and the channel map, checked by the pruning oracle (STYLE.md, Tests 5):
 * after PREPARE, pick channels in every prunable group, zero what will be pruned in a copy
 * of the model (the consumers' weight columns, i.e. every in-channels touch), take that
 * copy's onnxruntime outputs as the reference, prune the same channels from the unzeroed
 * model with applyChannelMap, TIDY, verify, and require equal outputs. Removed channels then
 * contribute nothing on either side, so any difference is a bug in the analysis or the map.
 * Tolerance: max |diff| ≤ 1e-4 · max |reference| per float32 output (only summation order
 * differs); for float16 outputs (SqueezeNet) 1e-3 · max |reference|, about one half-precision
 * ulp at the maximum (2⁻¹⁰), because a changed summation order flips the last bit of small
 * elements on some inputs. The pruned model must also load in onnxruntime,
 * agree with inferShapes (and with its own declared value types) on every node output, and
 * cost fewer MACs.
 *
 * Then structure (which producers share a group, depthwise and grouped convs, Concat
 * offsets, SE gates), pins with their reasons, determinism and copy-on-write of shared
 * weights.
 */
import { describe, expect, it } from 'vitest';
import { analyzeChannels, type ChannelAnalysis, type ChannelGroup } from '../../compiler/analysis/channel-groups.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes, type ShapeResult } from '../../compiler/analysis/shape-inference.js';
import { evaluateDim, isFullyKnown, type Dim } from '../../compiler/analysis/shape-values.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { constantOf } from '../../compiler/ir/constants.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node, Value } from '../../compiler/ir/node.js';
import { halfToFloat } from '../../compiler/ir/tensor.js';
import { decodeModel } from '../../compiler/onnx/decode.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { loadModel } from '../../compiler/onnx/io.js';
import {
  densenetConcat,
  FIXTURES,
  mobilenetV2Block,
  resnetBasic,
  resnextBlock,
  seBlock,
} from '../../fixtures/models.js';
import { applyChannelMap, PREPARE, runPasses, TIDY } from '../../passes/index.js';
import { randomFeeds } from '../../runtime/inputs.js';
import { runWithIntermediates, type Outputs } from '../../runtime/session.js';
import { allSharedModels, haveShared } from '../helpers/shared.js';
import { outputsOf } from '../passes/compare.js';

/** The oracle's tolerance: max |pruned − reference| ≤ RTOL · max |reference|, per output. */
const RTOL = 1e-4;
/** float16 outputs: one ulp at the maximum (2⁻¹⁰ relative) — rounding of a reordered sum, not a pruning error. */
const RTOL_FP16 = 1e-3;

interface ModelInputs {
  /** Shapes for inferShapes (graph inputs by name). */
  inputShapes?: Record<string, Dim[]>;
  /** Concrete shapes to feed. */
  feedShapes?: Record<string, number[]>;
}

/** PaddleOCR's input is [-1, 3, -1, -1]; the others declare their sizes. */
function inputsFor(file: string): ModelInputs {
  return file.includes('ppocr') ? { inputShapes: { x: [1, 3, 48, 192] }, feedShapes: { x: [1, 3, 48, 192] } } : {};
}

// ---------------------------------------------------------------------------------------------
// The oracle

/** Every third unpinned coupled channel of every prunable group (positions 1, 4, 7, …): never all of a group. */
function everyThird(analysis: ChannelAnalysis): Set<number> {
  const removed = new Set<number>();
  for (const group of analysis.groups) {
    if (!group.prunable) continue;
    const free = [...group.roots].filter((r) => analysis.pinReasons(r).length === 0);
    free.forEach((root, position) => {
      if (position % 3 === 1) removed.add(root);
    });
  }
  return removed;
}

/** What the analysis found, as plain data (for determinism checks). */
function summary(analysis: ChannelAnalysis) {
  return analysis.groups.map((g) => ({
    id: g.id,
    channels: g.channels,
    prunableChannels: g.prunableChannels,
    reasons: g.reasons,
    producers: g.producers,
    roots: [...g.roots],
    members: g.members.map((m) => `${m.node.name}:${m.node.opType}:${m.role}@${m.offset}x${m.count}`),
  }));
}

/**
 * Zero, in every in-channels touch, the weight positions whose coupled channel is removed.
 * Each node gets its own zeroed copy of a weight it shares, so other readers keep theirs.
 */
function zeroConsumerColumns(model: Model, analysis: ChannelAnalysis, removed: ReadonlySet<number>): number {
  let zeroed = 0;
  for (const touch of analysis.touches) {
    if (touch.role !== 'in-channels') continue;
    const positions = [...touch.elems.keys()].filter((p) => removed.has(analysis.root(touch.elems[p]!)));
    if (positions.length === 0) continue;
    const value = touch.node.input(touch.inputIndex);
    const tensor = constantOf(value)!;
    const data = tensor.data.slice();
    const dims = tensor.dims;
    const outer = dims.slice(0, touch.axis).reduce((a, b) => a * b, 1);
    const inner = dims.slice(touch.axis + 1).reduce((a, b) => a * b, 1);
    for (let o = 0; o < outer; o++)
      for (const p of positions)
        data.fill(0 as never, (o * dims[touch.axis]! + p) * inner, (o * dims[touch.axis]! + p + 1) * inner);
    const copy = tensor.withData(dims, data);
    if (value.isInitializer() && value.useCount === 1) model.graph.setInitializer(value, copy);
    else
      touch.node.setInput(touch.inputIndex, model.graph.addInitializer(value.name || 'zeroed', copy, { fresh: true }));
    zeroed++;
  }
  return zeroed;
}

/** Elements of an output tensor as numbers (float16 decoded from its bit patterns). */
function numbers(tensor: Outputs[string]): Float64Array {
  const data = tensor.data as ArrayLike<number>;
  return tensor.type === 'float16' && data instanceof Uint16Array
    ? Float64Array.from(data, halfToFloat)
    : Float64Array.from(data);
}

interface OutputDiff {
  type: string;
  /** max |got − want| / max |want|. */
  relative: number;
}

/** Per output: max |got − want| / max |want|. Names, types and dims must agree. */
function relativeDiffs(want: Outputs, got: Outputs): Record<string, OutputDiff> {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  const diffs: Record<string, OutputDiff> = {};
  for (const [name, reference] of Object.entries(want)) {
    const actual = got[name]!;
    expect({ name, type: actual.type, dims: [...actual.dims] }).toEqual({
      name,
      type: reference.type,
      dims: [...reference.dims],
    });
    const [a, b] = [numbers(reference), numbers(actual)];
    let scale = 0;
    let worst = 0;
    for (let i = 0; i < a.length; i++) {
      scale = Math.max(scale, Math.abs(a[i]!));
      worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    }
    diffs[name] = { type: reference.type, relative: worst / (scale || 1) };
  }
  return diffs;
}

const nodeOutputs = (model: Model): Value[] =>
  model.graph.nodeList().flatMap((n) => n.outputs.filter((v): v is Value => v !== undefined));

interface ShapeCheck {
  /** Node outputs with an inferred shape compared against onnxruntime. */
  checked: number;
  /** Inferred shapes that disagree with onnxruntime. */
  inferred: string[];
  /** Declared value types (value_info, outputs) that disagree with onnxruntime. */
  declared: string[];
}

/**
 * Run the pruned model with every node output exposed: each known dim inferShapes gives, and
 * each numeric dim of a declared value type, must be what onnxruntime produced.
 */
async function checkShapesAgainstOrt(
  model: Model,
  shapes: ShapeResult,
  feeds: ReturnType<typeof randomFeeds>,
): Promise<ShapeCheck> {
  const values = nodeOutputs(model);
  const declared = new Map(values.map((v) => [v, v.type?.shape] as const));
  const results = await runWithIntermediates(model, feeds, values);
  const check: ShapeCheck = { checked: 0, inferred: [], declared: [] };
  for (const value of values) {
    const actual = results[value.name];
    if (!actual) continue; // nothing to compare with
    const dims = [...actual.dims];
    const compare = (what: 'inferred' | 'declared', shape: readonly Dim[] | undefined) => {
      if (!shape) return false;
      // Negative declared dims (an exporter's -1 for "any") say nothing.
      const bad =
        shape.length !== dims.length || shape.some((d, i) => typeof d === 'number' && d >= 0 && d !== dims[i]);
      if (bad) check[what].push(`${value.name} (${value.producer}): ${what} [${shape}], onnxruntime [${dims}]`);
      return true;
    };
    const inferred = shapes.typeOf(value)?.shape;
    // Symbols (the batch) are bound to what was fed; an unknown dim stays null and is not compared.
    if (
      compare(
        'inferred',
        inferred && isFullyKnown(inferred) ? inferred.map((d) => evaluateDim(d, () => dims[0]!) ?? null) : inferred,
      )
    )
      check.checked++;
    compare('declared', declared.get(value));
  }
  return check;
}

interface OracleResult {
  /** The pruned model. */
  model: Model;
  /** Analysis of the model before pruning. */
  analysis: ChannelAnalysis;
  removed: Set<number>;
  diffs: Record<string, OutputDiff>;
  shapes: ShapeCheck;
  macsBefore: number;
  macsAfter: number;
}

/**
 * The oracle: PREPARE, analyse, choose, zero the chosen channels' consumer columns in a copy
 * (the reference), prune the original, TIDY, verify, compare outputs and shapes with ORT.
 */
async function pruneExactly(
  model: Model,
  choose: (a: ChannelAnalysis) => Set<number>,
  inputs: ModelInputs = {},
): Promise<OracleResult> {
  runPasses(model, PREPARE, {}, { fixpoint: true });
  const options = { inputShapes: inputs.inputShapes };
  const shapes = inferShapes(model, options);
  const analysis = analyzeChannels(model, shapes);
  expect(analysis.unsupported).toBeUndefined();
  const removed = choose(analysis);
  const reference = decodeModel(encodeModel(model).bytes);
  const referenceAnalysis = analyzeChannels(reference, inferShapes(reference, options));
  // Element ids are positional, so the copy's analysis must be the same one.
  expect(summary(referenceAnalysis)).toEqual(summary(analysis));
  if (removed.size > 0) expect(zeroConsumerColumns(reference, referenceAnalysis, removed)).toBeGreaterThan(0);
  const feeds = randomFeeds(model, { seed: 17, shapes: inputs.feedShapes });
  const want = await outputsOf(encodeModel(reference).bytes, feeds);
  // The chosen channels matter: without zeroing them the outputs differ from the reference.
  const unzeroed = relativeDiffs(want, await outputsOf(model, feeds));
  if (removed.size > 0) expect(Math.max(...Object.values(unzeroed).map((d) => d.relative))).toBeGreaterThan(RTOL_FP16);

  const macsBefore = computeCost(model, shapes).totals.macs;
  applyChannelMap(model, analysis, removed);
  runPasses(model, TIDY, {}, { fixpoint: true });
  model.graph.verify();
  const after = inferShapes(model, options);
  const macsAfter = computeCost(model, after).totals.macs;
  const got = await outputsOf(model, feeds); // throws if onnxruntime cannot load the pruned model
  const diffs = relativeDiffs(want, got);
  return {
    model,
    analysis,
    removed,
    diffs,
    shapes: await checkShapesAgainstOrt(model, after, feeds),
    macsBefore,
    macsAfter,
  };
}

/** Outputs within tolerance, and inferShapes agrees with onnxruntime on the pruned model. */
function expectExact(result: OracleResult): void {
  for (const [name, diff] of Object.entries(result.diffs))
    expect(diff.relative, `output '${name}' (${diff.type})`).toBeLessThanOrEqual(
      diff.type === 'float16' ? RTOL_FP16 : RTOL,
    );
  expect(result.shapes.checked).toBeGreaterThan(0);
  expect(result.shapes.inferred).toEqual([]);
}

/** Log per-model figures when REGROUP_ORACLE_LOG is set (the assertions do not depend on it). */
function log(name: string, r: OracleResult): void {
  if (!process.env.REGROUP_ORACLE_LOG) return;
  const worst = Math.max(...Object.values(r.diffs).map((d) => d.relative));
  console.log(
    `[oracle] ${name}: removed ${r.removed.size}, MACs ${r.macsBefore} → ${r.macsAfter} (${(r.macsAfter / r.macsBefore).toFixed(3)}), max rel diff ${worst.toExponential(2)}`,
  );
}

/** One oracle test and one declared-types test per model, sharing a single run. */
function oracleTests(name: string, run: () => Promise<OracleResult>): void {
  let result: Promise<OracleResult> | undefined;
  const once = () => (result ??= run());
  it(`${name}: pruned outputs equal the zeroed reference (fp32 ${RTOL}, fp16 ${RTOL_FP16} of max |ref|); shapes as onnxruntime; fewer MACs`, async () => {
    const r = await once();
    expect(r.removed.size).toBeGreaterThan(0);
    expectExact(r);
    expect(r.macsAfter).toBeLessThan(r.macsBefore);
    log(name, r);
  });
  it(`${name}: declared value types of the pruned model agree with onnxruntime`, async () => {
    expect((await once()).shapes.declared).toEqual([]);
  });
}

describe('exactness oracle: every fixture', () => {
  for (const [key, build] of Object.entries(FIXTURES)) oracleTests(key, () => pruneExactly(build(), everyThird));
});

describe.skipIf(!haveShared)('exactness oracle: every shared model', () => {
  for (const file of allSharedModels())
    oracleTests(file.split('/models/')[1]!, () => pruneExactly(loadModel(file), everyThird, inputsFor(file)));
});

/**
 * Hand-built structures the fixtures do not have, each through the same oracle. `body`
 * continues from x0 = Relu(Conv 3→8 'conv0') of x [1,3,8,8] and returns a [1,C,H,W] value
 * that a 1×1 conv 'head' (4 out) turns into the output y.
 */
const EDGE_CASES: Record<string, { opset?: number; body: (b: GraphBuilder, x0: Value) => Value }> = {
  'Split (opset 13, sizes input) into two convs, Concat back': {
    body: (b, x) => {
      const [l, r] = b.ops('Split', [x, b.ints('sizes', [3, 5])], 2, { axis: 1 }, 'split');
      const cl = b.op('Conv', [l!, b.weight('wl', [6, 3, 1, 1])], {}, 'convL');
      const cr = b.op('Conv', [r!, b.weight('wr', [6, 5, 1, 1])], {}, 'convR');
      return b.op('Concat', [cl, cr], { axis: 1 }, 'cat');
    },
  },
  'Split (opset 11, split attribute)': {
    opset: 11,
    body: (b, x) => {
      const [l, r] = b.ops('Split', [x], 2, { axis: 1, split: [4, 4] }, 'split');
      return b.op(
        'Add',
        [
          b.op('Conv', [l!, b.weight('wl', [8, 4, 1, 1])], {}, 'convL'),
          b.op('Conv', [r!, b.weight('wr', [8, 4, 1, 1])], {}, 'convR'),
        ],
        {},
        'add',
      );
    },
  },
  'Slice of the channels (opset 13, bounds inputs)': {
    body: (b, x) => b.op('Slice', [x, b.ints('starts', [2]), b.ints('ends', [7]), b.ints('axes', [1])], {}, 'slice'),
  },
  'depthwise conv with channel multiplier 2': {
    body: (b, x) =>
      b.op(
        'Relu',
        [b.op('Conv', [x, b.weight('wdw', [16, 1, 3, 3])], { group: 8, pads: [1, 1, 1, 1] }, 'dw')],
        {},
        'reludw',
      ),
  },
  'PRelu, per-channel Mul and Add constants [C,1,1]': {
    body: (b, x) => {
      const slope = b.constant('slope', [8, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
      const scale = b.weight('scale', [8, 1, 1], 1);
      const shift = b.weight('shift', [1, 8, 1, 1], 1);
      return b.op('Add', [b.op('Mul', [b.op('PRelu', [x, slope], {}, 'prelu'), scale], {}, 'mul'), shift], {}, 'add');
    },
  },
  'a per-channel constant shared by two Muls': {
    body: (b, x) => {
      const scale = b.weight('scale', [8, 1, 1], 1);
      const y = b.op('Conv', [b.op('Mul', [x, scale], {}, 'mul1'), b.weight('w1', [8, 8, 1, 1])], {}, 'conv1');
      return b.op('Add', [b.op('Mul', [y, scale], {}, 'mul2'), x], {}, 'add');
    },
  },
  'Pad (spatial only), MaxPool, Resize': {
    body: (b, x) => {
      const padded = b.op('Pad', [x, b.ints('pads', [0, 0, 1, 1, 0, 0, 1, 1])], { mode: 'reflect' }, 'pad');
      const pooled = b.op('MaxPool', [padded], { kernel_shape: [2, 2], strides: [2, 2] }, 'pool');
      return b.op(
        'Resize',
        [pooled, undefined, b.constant('scales', [4], [1, 1, 2, 2])],
        { mode: 'nearest' },
        'resize',
      );
    },
  },
  'ConvTranspose 8→6 then Conv': {
    body: (b, x) =>
      b.op('ConvTranspose', [x, b.weight('wt', [8, 6, 2, 2]), b.weight('bt', [6], 0.1)], { strides: [2, 2] }, 'deconv'),
  },
  'the same value concatenated twice': {
    body: (b, x) => b.op('Concat', [x, x], { axis: 1 }, 'cat'),
  },
  'InstanceNormalization and a channel-split Reshape [N,2,4,H,W] → Reshape back': {
    body: (b, x) => {
      const norm = b.op(
        'InstanceNormalization',
        [x, b.weight('in_scale', [8], 1), b.weight('in_bias', [8], 1)],
        { epsilon: 1e-5 },
        'inorm',
      );
      const split = b.op('Reshape', [norm, b.ints('to5', [1, 2, 4, 8, 8])], {}, 'reshape5');
      return b.op('Reshape', [b.op('Sigmoid', [split], {}, 'sig'), b.ints('to4', [1, 8, 8, 8])], {}, 'reshape4');
    },
  },
  'channel shuffle: Reshape [N,2,4,H,W] → Transpose → Reshape back (ShuffleNet)': {
    body: (b, x) => {
      const split = b.op('Reshape', [x, b.ints('to5', [1, 2, 4, 8, 8])], {}, 'reshape5');
      const shuffled = b.op('Transpose', [split], { perm: [0, 2, 1, 3, 4] }, 'shuffle');
      // Declared types, as exporters write value_info: the channel map must keep them right.
      split.type = { dtype: 1, shape: [1, 2, 4, 8, 8] };
      shuffled.type = { dtype: 1, shape: [1, 4, 2, 8, 8] };
      return b.op('Reshape', [shuffled, b.ints('to4', [1, 8, 8, 8])], {}, 'reshape4');
    },
  },
  'Flatten → Gemm (transB = 0) → Relu → Gemm head': {
    body: (b, x) => {
      const flat = b.op(
        'Flatten',
        [b.op('MaxPool', [x], { kernel_shape: [4, 4], strides: [4, 4] }, 'pool')],
        { axis: 1 },
        'flatten',
      );
      const hidden = b.op(
        'Relu',
        [b.op('Gemm', [flat, b.weight('fc1', [32, 12]), b.weight('fc1b', [12], 0.1)], {}, 'fc1')],
        {},
        'relu_fc',
      );
      return b.op(
        'Reshape',
        [b.op('Gemm', [hidden, b.weight('fc2', [12, 12], 0.3)], { transB: 1 }, 'fc2'), b.ints('back', [1, 3, 2, 2])],
        {},
        'unflatten',
      );
    },
  },
};

function edgeModel(body: (b: GraphBuilder, x0: Value) => Value, opset = 17): Model {
  const b = new GraphBuilder({ seed: 33, opset });
  const x0 = b.op(
    'Relu',
    [b.op('Conv', [b.input('x', [1, 3, 8, 8]), b.weight('w0', [8, 3, 3, 3])], { pads: [1, 1, 1, 1] }, 'conv0')],
    {},
    'relu0',
  );
  const y = body(b, x0);
  const channels = inferShapes(b.model).typeOf(y)!.shape![1] as number;
  b.output(b.op('Conv', [y, b.weight('head', [4, channels, 1, 1])], {}, 'head'));
  return b.model;
}

describe('exactness oracle: hand-built structures', () => {
  for (const [name, { opset, body }] of Object.entries(EDGE_CASES))
    oracleTests(name, () => pruneExactly(edgeModel(body, opset), everyThird));
});

// ---------------------------------------------------------------------------------------------
// Structure

const groupOfProducer = (analysis: ChannelAnalysis, label: string): ChannelGroup => {
  const group = analysis.groups.find((g) => g.producers.includes(label));
  expect(group, `a group produced by ${label}`).toBeDefined();
  return group!;
};

const nodeNamed = (model: Model, name: string): Node => {
  const node = model.graph.nodeList().find((n) => n.name === name);
  expect(node, `node '${name}'`).toBeDefined();
  return node!;
};

const weightDims = (model: Model, name: string, inputIndex = 1) => [
  ...constantOf(nodeNamed(model, name).input(inputIndex))!.dims,
];

/** Remove the first `count` unpinned channels of the group produced by `label`. */
const firstOf =
  (label: string, count = 1) =>
  (analysis: ChannelAnalysis) => {
    const group = groupOfProducer(analysis, label);
    return new Set([...group.roots].filter((r) => analysis.pinReasons(r).length === 0).slice(0, count));
  };

const prepared = (model: Model) => {
  runPasses(model, PREPARE, {}, { fixpoint: true });
  return analyzeChannels(model);
};

describe('structure', () => {
  it('resnetBasic: residual Adds couple the stem with layer1’s second conv, and layer2’s second conv with its projection', async () => {
    const analysis = prepared(resnetBasic());
    const stem = groupOfProducer(analysis, "Conv 'stem.conv'");
    expect(stem.producers).toEqual(["Conv 'stem.conv'", "Conv 'layer1.1.conv'"]);
    expect(stem.channels).toBe(8);
    expect(stem.prunable).toBe(true);
    // Everything that reads the residual stream takes its columns from this group.
    const readers = stem.members.filter((m) => m.role === 'in-channels').map((m) => m.node.name);
    expect(readers).toEqual(['layer1.0.conv', 'layer2.0.conv', 'layer2.downsample.conv']);
    const layer2 = groupOfProducer(analysis, "Conv 'layer2.1.conv'");
    expect(layer2.producers).toEqual(["Conv 'layer2.1.conv'", "Conv 'layer2.downsample.conv'"]);
    expect(layer2.members.filter((m) => m.role === 'in-channels').map((m) => m.node.name)).toEqual(['head.fc']);
    // The first conv of a block is a group of its own.
    expect(groupOfProducer(analysis, "Conv 'layer1.0.conv'").producers).toEqual(["Conv 'layer1.0.conv'"]);

    // Pruning two channels of the residual group shrinks every producer and reader at once, exactly.
    const result = await pruneExactly(resnetBasic(), firstOf("Conv 'stem.conv'", 2));
    expectExact(result);
    const m = result.model;
    expect(weightDims(m, 'stem.conv')[0]).toBe(6);
    expect(weightDims(m, 'layer1.1.conv')[0]).toBe(6);
    expect(weightDims(m, 'layer1.0.conv')[1]).toBe(6);
    expect(weightDims(m, 'layer2.0.conv')[1]).toBe(6);
    expect(weightDims(m, 'layer2.downsample.conv')[1]).toBe(6);
    expect(weightDims(m, 'stem.bn', 1)).toEqual([6]);
    expect(weightDims(m, 'layer1.1.bn', 4)).toEqual([6]);
  });

  it('mobilenetV2Block: the depthwise conv makes no group of its own and its `group` follows the channel count', async () => {
    const model = mobilenetV2Block();
    const analysis = prepared(model);
    expect(analysis.groups.flatMap((g) => g.producers)).not.toContain("Conv 'block.depthwise.conv'");
    const expand = nodeNamed(model, 'block.expand.conv');
    const depthwise = nodeNamed(model, 'block.depthwise.conv');
    expect([...analysis.layouts.get(depthwise.output(0))!.elems]).toEqual([
      ...analysis.layouts.get(expand.output(0))!.elems,
    ]);
    const hidden = groupOfProducer(analysis, "Conv 'block.expand.conv'");
    expect(hidden.channels).toBe(64);
    expect(
      hidden.members
        .filter((m) => m.node === depthwise)
        .map((m) => m.role)
        .sort(),
    ).toEqual(['depthwise-group', 'out-channels']);

    const result = await pruneExactly(mobilenetV2Block(), firstOf("Conv 'block.expand.conv'", 5));
    expectExact(result);
    const pruned = nodeNamed(result.model, 'block.depthwise.conv');
    expect(pruned.getInt('group')).toBe(59);
    expect(weightDims(result.model, 'block.depthwise.conv')).toEqual([59, 1, 3, 3]);
    expect(weightDims(result.model, 'block.expand.conv')[0]).toBe(59);
    expect(weightDims(result.model, 'block.project.conv')[1]).toBe(59);
  });

  it('resnextBlock: a grouped conv keeps equal counts per group (one coupled channel = one position in every group)', async () => {
    const analysis = prepared(resnextBlock());
    const spatialOut = groupOfProducer(analysis, "Conv 'layer1.spatial.conv'");
    const spatialIn = groupOfProducer(analysis, "Conv 'layer1.reduce.conv'");
    expect([spatialOut.channels, spatialIn.channels]).toEqual([4, 4]); // 16 channels / group 4

    const output = await pruneExactly(resnextBlock(), firstOf("Conv 'layer1.spatial.conv'", 1));
    expectExact(output);
    expect(nodeNamed(output.model, 'layer1.spatial.conv').getInt('group')).toBe(4);
    expect(weightDims(output.model, 'layer1.spatial.conv')).toEqual([12, 4, 3, 3]); // 3 filters in each of 4 groups
    expect(weightDims(output.model, 'layer1.expand.conv')[1]).toBe(12);

    const input = await pruneExactly(resnextBlock(), firstOf("Conv 'layer1.reduce.conv'", 1));
    expectExact(input);
    expect(weightDims(input.model, 'layer1.reduce.conv')[0]).toBe(12);
    expect(weightDims(input.model, 'layer1.spatial.conv')).toEqual([16, 3, 3, 3]); // 3 inputs per group
    expect(nodeNamed(input.model, 'layer1.spatial.conv').getInt('group')).toBe(4);
  });

  it('densenetConcat: Concat members report each producer’s offset in the concatenated channels', () => {
    const analysis = prepared(densenetConcat());
    const at = (label: string, node: string) =>
      groupOfProducer(analysis, label)
        .members.filter((m) => m.node.name === node && m.role === 'in-channels')
        .map((m) => [m.offset, m.count]);
    // transition.conv reads [stem 8 | dense.0 4 | dense.1 4 | dense.2 4]
    expect(at("Conv 'stem.conv'", 'transition.conv')).toEqual([[0, 8]]);
    expect(at("Conv 'dense.0.conv'", 'transition.conv')).toEqual([[8, 4]]);
    expect(at("Conv 'dense.1.conv'", 'transition.conv')).toEqual([[12, 4]]);
    expect(at("Conv 'dense.2.conv'", 'transition.conv')).toEqual([[16, 4]]);
    expect(at("Conv 'dense.1.conv'", 'dense.2.conv')).toEqual([[12, 4]]);
    // A Concat input member is at the offset within that input.
    const concat = groupOfProducer(analysis, "Conv 'dense.0.conv'")
      .members.filter((m) => m.role === 'concat')
      .map((m) => [m.node.name, m.offset, m.count]);
    expect(concat).toEqual([
      ['dense.0.concat', 0, 4],
      ['dense.1.concat', 8, 4],
      ['dense.2.concat', 8, 4],
    ]);
  });

  it('densenetConcat: pruning one producer of a Concat shifts the later offsets, exactly', async () => {
    const result = await pruneExactly(densenetConcat(), firstOf("Conv 'dense.0.conv'", 2));
    expectExact(result);
    expect(weightDims(result.model, 'dense.0.conv')[0]).toBe(2);
    expect(weightDims(result.model, 'transition.conv')[1]).toBe(18);
    expect(weightDims(result.model, 'transition.bn', 1)).toEqual([18]);
  });

  it('seBlock: the SE expand conv’s output channels are the block’s channels (same group)', async () => {
    const analysis = prepared(seBlock());
    const block = groupOfProducer(analysis, "Conv 'stem.conv'");
    expect(block.producers).toEqual(["Conv 'stem.conv'", "Conv 'se.expand'"]);
    expect(groupOfProducer(analysis, "Conv 'se.reduce'").producers).toEqual(["Conv 'se.reduce'"]);

    const result = await pruneExactly(seBlock(), firstOf("Conv 'stem.conv'", 3));
    expectExact(result);
    expect(weightDims(result.model, 'stem.conv')[0]).toBe(13);
    expect(weightDims(result.model, 'se.expand')[0]).toBe(13);
    expect(weightDims(result.model, 'se.expand', 2)).toEqual([13]);
    expect(weightDims(result.model, 'se.reduce')[1]).toBe(13);
  });
});

// ---------------------------------------------------------------------------------------------
// Pins

/** x [1,3,8,8] → conv1 (8) → Relu → [middle] → conv2 (4) → y. */
function chain(middle?: (b: GraphBuilder, x: Value) => Value, conv2Weight?: (b: GraphBuilder) => Value): Model {
  const b = new GraphBuilder({ seed: 21 });
  const x = b.input('x', [1, 3, 8, 8]);
  let y = b.op('Relu', [b.op('Conv', [x, b.weight('w1', [8, 3, 3, 3])], { pads: [1, 1, 1, 1] }, 'conv1')], {}, 'relu1');
  if (middle) y = middle(b, y);
  y = b.op('Conv', [y, conv2Weight ? conv2Weight(b) : b.weight('w2', [4, 8, 1, 1])], {}, 'conv2');
  b.output(y, { dtype: 1, shape: [1, 4, 8, 8] });
  return b.model;
}

const conv1Group = (analysis: ChannelAnalysis) => groupOfProducer(analysis, "Conv 'conv1'");

describe('pins, with reasons', () => {
  it('a graph output pins its group', () => {
    const model = chain();
    const analysis = analyzeChannels(model);
    const out = groupOfProducer(analysis, "Conv 'conv2'");
    expect(out.prunable).toBe(false);
    expect(out.reasons).toEqual([`graph output '${nodeNamed(model, 'conv2').output(0).name}'`]);
    expect(conv1Group(analysis).prunable).toBe(true);
    expect(conv1Group(analysis).reasons).toEqual([]);
  });

  it('an intermediate value that is also a graph output pins its group', () => {
    const b = new GraphBuilder({ seed: 2 });
    const x = b.input('x', [1, 3, 8, 8]);
    const features = b.op('Relu', [b.op('Conv', [x, b.weight('w1', [8, 3, 3, 3])], {}, 'conv1')], {}, 'relu1');
    b.output(features);
    b.output(b.op('Conv', [features, b.weight('w2', [4, 8, 1, 1])], {}, 'conv2'));
    const analysis = analyzeChannels(b.model);
    expect(conv1Group(analysis).reasons).toEqual([`graph output '${features.name}'`]);
    expect(conv1Group(analysis).prunable).toBe(false);
  });

  it('an op regroup has no rule for (custom domain) pins what it reads, naming the op and the node', () => {
    const model = chain((b, y) => b.node('FancyNorm', [y], {}, { name: 'mystery', domain: 'com.example' }).output(0));
    model.opsetImports.push({ domain: 'com.example', version: 1 });
    const group = conv1Group(analyzeChannels(model));
    expect(group.prunable).toBe(false);
    expect(group.reasons).toHaveLength(1);
    expect(group.reasons[0]).toMatch(/FancyNorm/);
    expect(group.reasons[0]).toMatch(/'mystery'/);
    expect(group.reasons[0]).toMatch(/com\.example/);
  });

  it('a weight that is a graph input without an initializer is pinned as not a constant', () => {
    const model = chain(undefined, (b) => b.input('w2', [4, 8, 1, 1]));
    const analysis = analyzeChannels(model);
    const group = conv1Group(analysis);
    expect(group.prunable).toBe(false);
    expect(group.reasons.join('\n')).toMatch(/conv2.*'w2'.*not a constant/);
    expect(analysis.touches.filter((t) => t.node.name === 'conv2')).toEqual([]);
  });

  it('a Softmax over channels pins; one over the width does not', () => {
    const over = (axis: number) => chain((b, y) => b.op('Softmax', [y], { axis }, 'softmax'));
    const channels = conv1Group(analyzeChannels(over(1)));
    expect(channels.prunable).toBe(false);
    expect(channels.reasons).toEqual(["Softmax 'softmax': normalises across channels"]);
    const width = conv1Group(analyzeChannels(over(-1)));
    expect(width.prunable).toBe(true);
    expect(width.reasons).toEqual([]);
  });

  it('a model whose only conv output is the graph output has nothing prunable', () => {
    const b = new GraphBuilder({ seed: 4 });
    b.output(b.op('Conv', [b.input('x', [1, 3, 8, 8]), b.weight('w', [8, 3, 3, 3])], {}, 'conv'));
    const analysis = analyzeChannels(b.model);
    expect(analysis.groups.filter((g) => g.prunable)).toEqual([]);
    expect(groupOfProducer(analysis, "Conv 'conv'").reasons).toEqual([
      `graph output '${b.model.graph.outputs[0]!.name}'`,
    ]);
    expect(everyThird(analysis).size).toBe(0);
  });

  it('applyChannelMap refuses to remove a pinned channel', () => {
    const model = chain();
    const analysis = analyzeChannels(model);
    const pinned = groupOfProducer(analysis, "Conv 'conv2'").roots[0]!;
    expect(() => applyChannelMap(model, analysis, new Set([pinned]))).toThrow(
      `cannot remove a pinned channel: graph output '${model.graph.outputs[0]!.name}'`,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Invariants

describe('invariants', () => {
  it('analysis is deterministic: the same groups twice on one model and on a rebuilt one', () => {
    for (const build of Object.values(FIXTURES)) {
      const model = build();
      runPasses(model, PREPARE, {}, { fixpoint: true });
      const first = summary(analyzeChannels(model));
      expect(summary(analyzeChannels(model))).toEqual(first);
      expect(summary(prepared(build()))).toEqual(first);
    }
  });

  /** conv0 (3→8) → ReLU → convA(W) → ReLU → convB(W) → ReLU → head (1×1, 4) → y; W [8,8,3,3] is shared. */
  function sharedWeight(): Model {
    const b = new GraphBuilder({ seed: 9 });
    const shared = b.weight('shared', [8, 8, 3, 3]);
    const pads = { pads: [1, 1, 1, 1] };
    let y = b.op(
      'Relu',
      [b.op('Conv', [b.input('x', [1, 3, 8, 8]), b.weight('w0', [8, 3, 3, 3])], pads, 'conv0')],
      {},
      'relu0',
    );
    y = b.op('Relu', [b.op('Conv', [y, shared], pads, 'convA')], {}, 'reluA');
    y = b.op('Relu', [b.op('Conv', [y, shared], pads, 'convB')], {}, 'reluB');
    b.output(b.op('Conv', [y, b.weight('head', [4, 8, 1, 1])], {}, 'head'), { dtype: 1, shape: [1, 4, 8, 8] });
    return b.model;
  }

  it('a weight shared by two convs is copied on write: the other reader keeps the original tensor, outputs stay exact', async () => {
    const original = sharedWeight();
    const sharedTensor = constantOf(nodeNamed(original, 'convB').input(1))!;
    const bytes = Float32Array.from(sharedTensor.data as Float32Array);
    // conv0's channels are read only by convA: pruning them rewrites convA's columns of the shared weight.
    const result = await pruneExactly(original, firstOf("Conv 'conv0'", 3));
    expectExact(result);
    const [convA, convB] = [nodeNamed(result.model, 'convA'), nodeNamed(result.model, 'convB')];
    expect(convA.input(1)).not.toBe(convB.input(1));
    expect(convB.input(1).name).toBe('shared');
    expect([...constantOf(convB.input(1))!.dims]).toEqual([8, 8, 3, 3]);
    expect(constantOf(convB.input(1))!.data).toEqual(bytes);
    expect([...constantOf(convA.input(1))!.dims]).toEqual([8, 5, 3, 3]);
  });

  it('a shared weight rewritten for both readers (rows for one, columns for the other) stays exact', async () => {
    // convA's output channels are convB's input channels: both readers change, differently.
    const result = await pruneExactly(sharedWeight(), firstOf("Conv 'convA'", 2));
    expectExact(result);
    expect(weightDims(result.model, 'convA')).toEqual([6, 8, 3, 3]);
    expect(weightDims(result.model, 'convB')).toEqual([8, 6, 3, 3]);
  });

  it('pruning nothing changes nothing', async () => {
    const model = resnetBasic();
    runPasses(model, PREPARE, {}, { fixpoint: true });
    const before = encodeModel(model).bytes;
    const stats = applyChannelMap(model, analyzeChannels(model), new Set());
    expect(stats).toEqual({ tensorsRewritten: 0, structuralRewrites: 0, valuesRetyped: 0 });
    expect(Buffer.compare(Buffer.from(encodeModel(model).bytes), Buffer.from(before))).toBe(0);
  });
});
