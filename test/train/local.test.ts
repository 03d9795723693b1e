/**
 * Local reconstruction (runtime/train/local.ts), checked through onnxruntime with graph
 * optimisations disabled on images the refit never saw:
 *  - exactness: an unchanged model stays unchanged (logits within 1e-4 relative);
 *  - geometry: a model with every conv form (asymmetric pads, strides, dilations, auto_pad
 *    SAME_UPPER/SAME_LOWER, grouped, depthwise with multiplier, 1-D) and Gemm (transB = 0,
 *    α, β) / MatMul heads, its weights perturbed by 30%, is refitted back to the dense
 *    weights (ridge 0: the dense output is exactly representable layer by layer);
 *  - masked connectivity (per-cluster input subsets, 50% of each filter's inputs): masked
 *    weights stay exactly zero, and every layer's output error and the final error fall;
 *  - a channel-pruned model from the project's pruner: the output map inferred from
 *    correlations equals the pruner's kept channels, and the final error falls;
 *  - skipped layers say why; bad keptOutputs are refused; inputs are never changed.
 */
import { describe, expect, it } from 'vitest';
import { analyzeChannels } from '../../compiler/analysis/channel-groups.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { RegroupError } from '../../compiler/errors.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { attr } from '../../compiler/ir/attribute.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node } from '../../compiler/ir/node.js';
import { decodeModel } from '../../compiler/onnx/decode.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { Random } from '../../compiler/util/random.js';
import { resnextBlock, resnetTiny } from '../../fixtures/models.js';
import {
  applyChannelMap,
  channelImportance,
  planPruning,
  PREPARE,
  removalSet,
  runPasses,
  TIDY,
} from '../../passes/index.js';
import { mnist } from '../../runtime/data/embedded.js';
import { memoryDataset } from '../../runtime/data/memory.js';
import { inputSpecFor, presetSpec, toTensor } from '../../runtime/data/preprocess.js';
import type { Dataset, InputSpec } from '../../runtime/data/types.js';
import { ort, runWithIntermediates, type Feeds } from '../../runtime/session.js';
import { localReconstruct, type LocalLayerResult } from '../../runtime/train/local.js';
import { keptOutputsOf } from '../../runtime/train/local-map.js';

ort.env.logLevel = 'error';

const clone = (model: Model): Model => decodeModel(encodeModel(model).bytes);
const bytesOf = (model: Model): Buffer => Buffer.from(encodeModel(model).bytes);

/** Seeded noise images (uniform 8-bit pixels). */
function noiseImages(count: number, channels: 1 | 3, height: number, width: number, seed: number): Dataset {
  const random = new Random(seed);
  const pixels = Uint8Array.from({ length: count * channels * height * width }, () => random.int(256));
  return memoryDataset('noise', { width, height, channels }, pixels, new Int32Array(count), undefined, 'noise');
}

/**
 * Seeded smooth images whose channels are correlated, like natural ones: per image three
 * random plane waves shared by all channels (per-channel gains), plus ±8 of pixel noise.
 */
function smoothImages(count: number, size: number, seed: number): Dataset {
  const random = new Random(seed);
  const pixels = new Uint8Array(count * size * size * 3);
  for (let image = 0; image < count; image++) {
    const waves = Array.from({ length: 3 }, () => ({
      a: random.uniform(20, 50),
      fx: random.uniform(-1, 1),
      fy: random.uniform(-1, 1),
      phase: random.uniform(0, 6.3),
    }));
    const gains = Array.from({ length: 3 }, () => random.uniform(0.6, 1.4));
    for (let p = 0; p < size * size; p++) {
      const [y, x] = [Math.floor(p / size), p % size];
      const base = waves.reduce((sum, w) => sum + w.a * Math.sin(w.fx * x + w.fy * y + w.phase), 0);
      for (let c = 0; c < 3; c++)
        pixels[(image * size * size + p) * 3 + c] = Math.max(
          0,
          Math.min(255, Math.round(128 + gains[c]! * base + random.uniform(-8, 8))),
        );
    }
  }
  return memoryDataset(
    'smooth',
    { width: size, height: size, channels: 3 },
    pixels,
    new Int32Array(count),
    undefined,
    'smooth',
  );
}

/** Feeds of the first `count` images of a dataset. */
async function heldOut(dataset: Dataset, spec: InputSpec, count: number): Promise<Feeds> {
  const images = await Promise.all(Array.from({ length: count }, (_, i) => dataset.get(i)));
  return { [spec.name]: toTensor(images, spec) };
}

/**
 * ‖Y_dense[:, keep] − Y‖ / ‖Y_dense[:, keep]‖ of each named node's first output (channels on
 * axis 1), both models run on the same feeds.
 */
async function layerErrors(
  dense: Model,
  candidate: Model,
  feeds: Feeds,
  names: readonly string[],
  kept?: ReadonlyMap<string, Int32Array>,
): Promise<Map<string, number>> {
  const outputOf = (model: Model, name: string) =>
    model.graph
      .nodeList()
      .find((n) => n.name === name)!
      .output(0);
  const a = await runWithIntermediates(
    dense,
    feeds,
    names.map((n) => outputOf(dense, n)),
    { optimization: 'disabled' },
  );
  const b = await runWithIntermediates(
    candidate,
    feeds,
    names.map((n) => outputOf(candidate, n)),
    { optimization: 'disabled' },
  );
  const errors = new Map<string, number>();
  for (const name of names) {
    const [ya, yb] = [a[outputOf(dense, name).name]!, b[outputOf(candidate, name).name]!];
    const [n, cd, c] = [ya.dims[0]!, ya.dims[1]!, yb.dims[1]!];
    const per = ya.data.length / (n * cd);
    const keep = kept?.get(name) ?? Int32Array.from({ length: c }, (_, o) => o);
    let num = 0;
    let den = 0;
    for (let image = 0; image < n; image++) {
      for (let o = 0; o < c; o++) {
        for (let p = 0; p < per; p++) {
          const want = (ya.data as Float32Array)[(image * cd + keep[o]!) * per + p]!;
          const got = (yb.data as Float32Array)[(image * c + o) * per + p]!;
          num += (want - got) ** 2;
          den += want ** 2;
        }
      }
    }
    errors.set(name, Math.sqrt(num / den));
  }
  return errors;
}

function layerNames(model: Model): string[] {
  return model.graph
    .nodeList()
    .filter((n) => ['Conv', 'Gemm', 'MatMul'].includes(n.opType))
    .map((n) => n.name);
}

function refitted(layers: readonly LocalLayerResult[]): LocalLayerResult[] {
  return layers.filter((l) => l.status === 'refitted');
}

/**
 * Self-grouping-style connectivity: in each conv group, filters o ≡ k (mod 4) form cluster k
 * and all read the same random half of the group's input channels; the other weights become
 * exact zeros. Layers with one input channel per group (stem on gray input, depthwise) stay dense.
 */
function maskConnections(model: Model, seed: number): Model {
  const masked = clone(model);
  const random = new Random(seed);
  for (const node of masked.graph.nodes()) {
    if (node.opType !== 'Conv' && node.opType !== 'Gemm') continue;
    const weight = node.input(1);
    const t = weight.constValue!;
    const [outputs, perGroupIn] = [t.dims[0]!, t.dims[1]!];
    if (perGroupIn < 2) continue;
    const groups = node.getInt('group', 1);
    const taps = t.size / (outputs * perGroupIn);
    const data = Float32Array.from(t.data as Float32Array);
    for (let g = 0; g < groups; g++) {
      const keeps = Array.from(
        { length: 4 },
        () => new Set(random.shuffle(Array.from({ length: perGroupIn }, (_, c) => c)).slice(0, perGroupIn / 2)),
      );
      const perGroupOut = outputs / groups;
      for (let o = g * perGroupOut; o < (g + 1) * perGroupOut; o++) {
        for (let c = 0; c < perGroupIn; c++)
          if (!keeps[o % 4]!.has(c)) data.fill(0, (o * perGroupIn + c) * taps, (o * perGroupIn + c + 1) * taps);
      }
    }
    masked.graph.setInitializer(weight, t.withData(t.dims, data));
  }
  return masked;
}

/** The project's pruner as `regroup prune` runs it (l1, keepMacs, roundTo 1), and the kept output channels. */
function pruneModel(model: Model, keepMacs: number): { pruned: Model; kept: Map<Node, Int32Array>; macsRatio: number } {
  const pruned = clone(model);
  runPasses(pruned, PREPARE, {}, { fixpoint: true });
  const shapes = inferShapes(pruned);
  const analysis = analyzeChannels(pruned, shapes);
  const cost = computeCost(pruned, shapes);
  const plan = planPruning(
    analysis,
    cost,
    channelImportance(analysis, { criterion: 'l1' }),
    { keepMacs, roundTo: 1 },
    'l1',
  );
  const removed = removalSet(plan, analysis);
  const kept = keptOutputsOf(analysis, removed);
  applyChannelMap(pruned, analysis, removed);
  runPasses(pruned, TIDY, {}, { fixpoint: true });
  pruned.graph.verify();
  return { pruned, kept, macsRatio: computeCost(pruned, inferShapes(pruned)).totals.macs / cost.totals.macs };
}

/**
 * Every conv form and both linear heads: 3×17×15 input →
 *   conv_a (3×5 kernel, strides 2×1, pads [1,2,0,1], dilations 1×2, bias) → ReLU →
 *   conv_grouped (3×3, stride 2, SAME_UPPER, group 2, no bias) → ReLU →
 *   conv_depthwise (3×3, stride 2, SAME_LOWER, group 8, 2 filters per channel, bias) → ReLU →
 *   Reshape [N, 16, 6] → conv_1d (kernel 3, stride 2, pads [1,1], bias) → ReLU → Flatten →
 *   head_gemm (transB 0, α 0.5, β 2) → head_matmul → Add bias.
 */
function geometryModel(): Model {
  const b = new GraphBuilder({ opset: 17, seed: 31, graphName: 'geometry' });
  const vector = (name: string, n: number) => b.constant(name, [n], Array.from(b.random.normals(n, 0.1)));
  const relu = (x: ReturnType<typeof b.op>) => b.op('Relu', [x]);
  let x = b.input('input', ['N', 3, 17, 15]);
  x = relu(
    b.op(
      'Conv',
      [x, b.weight('a.w', [8, 3, 3, 5]), vector('a.b', 8)],
      { kernel_shape: [3, 5], strides: [2, 1], pads: [1, 2, 0, 1], dilations: [1, 2] },
      'conv_a',
    ),
  );
  x = relu(
    b.op(
      'Conv',
      [x, b.weight('g.w', [8, 4, 3, 3])],
      { kernel_shape: [3, 3], strides: [2, 2], auto_pad: 'SAME_UPPER', group: 2 },
      'conv_grouped',
    ),
  );
  x = relu(
    b.op(
      'Conv',
      [x, b.weight('dw.w', [16, 1, 3, 3]), vector('dw.b', 16)],
      { kernel_shape: [3, 3], strides: [2, 2], auto_pad: 'SAME_LOWER', group: 8 },
      'conv_depthwise',
    ),
  );
  x = b.op('Reshape', [x, b.ints('to_1d', [0, 16, -1])]);
  x = relu(
    b.op(
      'Conv',
      [x, b.weight('c1.w', [6, 16, 3]), vector('c1.b', 6)],
      { kernel_shape: [3], strides: [2], pads: [1, 1] },
      'conv_1d',
    ),
  );
  x = b.op('Flatten', [x], { axis: 1 });
  const gemmAttrs = [attr.float('alpha', 0.5), attr.float('beta', 2), attr.int('transB', 0)];
  // No ReLU here: a feature that is zero on every image would leave its MatMul weight undetermined.
  x = b.graph
    .addNode('Gemm', [x, b.weight('fc.w', [18, 12]), vector('fc.c', 12)], { name: 'head_gemm', attributes: gemmAttrs })
    .output(0);
  x = b.op('MatMul', [x, b.weight('mm.w', [12, 5])], {}, 'head_matmul');
  b.output(b.op('Add', [x, vector('mm.b', 5)], {}, 'head_bias'), { dtype: DataType.FLOAT, shape: ['N', 5] });
  return b.model;
}

/** Multiply every layer weight and bias by (1 + scale·noise), seeded. */
function perturbLayers(model: Model, scale: number, seed: number): Model {
  const out = clone(model);
  const random = new Random(seed);
  for (const node of out.graph.nodes()) {
    if (!['Conv', 'Gemm', 'MatMul'].includes(node.opType)) continue;
    for (const value of node.inputs.slice(1)) {
      if (!value) continue;
      const t = value.constValue!;
      out.graph.setInitializer(
        value,
        t.withData(
          t.dims,
          Float32Array.from(t.data as Float32Array, (w) => w * (1 + scale * random.normal())),
        ),
      );
    }
  }
  return out;
}

function weightOf(model: Model, name: string, input = 1): Float32Array {
  return model.graph
    .nodeList()
    .find((n) => n.name === name)!
    .input(input).constValue!.data as Float32Array;
}

describe('localReconstruct: an unchanged model stays unchanged', () => {
  it('ResNet-tiny refitted against itself on MNIST (default options): logits move ≤ 1e-4 relative, no layer gets worse', async () => {
    const dense = resnetTiny();
    const spec = inputSpecFor(dense);
    const result = await localReconstruct(dense, clone(dense), await mnist('train'), spec, { samples: 128 });
    expect(refitted(result.layers).map((l) => l.name)).toEqual(layerNames(dense));
    for (const layer of result.layers) {
      expect(layer.errorBefore!, layer.name).toBeLessThan(1e-5);
      expect(layer.errorAfter!, layer.name).toBeLessThanOrEqual(layer.errorBefore! + 1e-6);
    }
    const errors = await layerErrors(dense, result.model, await heldOut(await mnist('test'), spec, 200), ['head.fc']);
    expect(errors.get('head.fc')!).toBeLessThanOrEqual(1e-4);
  });
});

describe('localReconstruct: geometry', () => {
  const dense = geometryModel();
  const spec = presetSpec('half', { name: 'input', channels: 3, height: 17, width: 15 });
  const calibration = noiseImages(200, 3, 17, 15, 1);

  it('refits weights perturbed by 30% back to the dense weights, for every conv form, Gemm and MatMul (ridge 0)', async () => {
    const compressed = perturbLayers(dense, 0.3, 2);
    const [denseBytes, compressedBytes] = [bytesOf(dense), bytesOf(compressed)];
    const result = await localReconstruct(dense, compressed, calibration, spec, {
      samples: 200,
      batchSize: 64,
      ridge: 0,
    });
    expect(bytesOf(dense).equals(denseBytes) && bytesOf(compressed).equals(compressedBytes)).toBe(true);
    const names = ['conv_a', 'conv_grouped', 'conv_depthwise', 'conv_1d', 'head_gemm', 'head_matmul'];
    expect(result.layers.map((l) => [l.name, l.status])).toEqual(names.map((n) => [n, 'refitted']));
    for (const layer of result.layers) {
      expect(layer.errorBefore!, layer.name).toBeGreaterThan(0.05);
      expect(layer.errorAfter!, layer.name).toBeLessThan(1e-4);
      const [want, got] = [weightOf(dense, layer.name), weightOf(result.model, layer.name)];
      const scale = Math.max(...want.map(Math.abs));
      expect(Math.max(...want.map((w, i) => Math.abs(w - got[i]!))) / scale, layer.name).toBeLessThan(1e-4);
    }
    // conv_grouped had no bias: the fitted one is added and is zero up to float error.
    const bias = weightOf(result.model, 'conv_grouped', 2);
    expect(bias.length).toBe(8);
    expect(Math.max(...bias.map(Math.abs))).toBeLessThan(1e-4);
    // Gemm stores w/α and b/β.
    const c = weightOf(result.model, 'head_gemm', 2);
    const cWant = weightOf(dense, 'head_gemm', 2);
    expect(Math.max(...c.map((v, i) => Math.abs(v - cWant[i]!)))).toBeLessThan(1e-4);
    const feeds = await heldOut(noiseImages(50, 3, 17, 15, 9), spec, 50);
    const errors = await layerErrors(dense, result.model, feeds, names);
    for (const name of names) expect(errors.get(name)!, name).toBeLessThanOrEqual(1e-4);
  });

  it('repeats to the byte with the same seed', async () => {
    const compressed = perturbLayers(dense, 0.3, 2);
    const options = { samples: 100, batchSize: 32, positionsPerImage: 4, seed: 5 };
    const [a, b] = [
      await localReconstruct(dense, compressed, calibration, spec, options),
      await localReconstruct(dense, compressed, calibration, spec, options),
    ];
    expect(bytesOf(a.model).equals(bytesOf(b.model))).toBe(true);
    expect(a.layers.map((l) => l.rows)).toEqual(b.layers.map((l) => l.rows));
    expect(a.layers[0]!.rows).toBe(100 * 4);
  });

  it('skips layers it cannot match or afford, saying why, and refits the rest', async () => {
    const compressed = perturbLayers(dense, 0.3, 2);
    compressed.graph.nodeList().find((n) => n.name === 'conv_a')!.name = 'conv_a_renamed';
    const result = await localReconstruct(dense, compressed, calibration, spec, { samples: 100, maxFeatures: 40 });
    const byName = new Map(result.layers.map((l) => [l.name, l]));
    expect(byName.get('conv_a_renamed')).toMatchObject({
      status: 'skipped',
      reason: "the dense model has no Conv node named 'conv_a_renamed'",
    });
    expect(byName.get('conv_1d')).toMatchObject({ status: 'skipped' });
    expect(byName.get('conv_1d')!.reason).toMatch(/^each filter reads 48 inputs, over maxFeatures 40/);
    expect(refitted(result.layers).map((l) => l.name)).toEqual([
      'conv_grouped',
      'conv_depthwise',
      'head_gemm',
      'head_matmul',
    ]);
    // A skipped layer keeps its weights.
    expect(weightOf(result.model, 'conv_1d')).toEqual(weightOf(compressed, 'conv_1d'));
  });

  it('refuses a keptOutputs map that does not fit the layer', async () => {
    const convA = dense.graph.nodeList().find((n) => n.name === 'conv_a')!;
    const options = { samples: 20, keptOutputs: new Map([[convA, Int32Array.of(0, 1, 2)]]) };
    await expect(localReconstruct(dense, dense, calibration, spec, options)).rejects.toThrow(RegroupError);
    await expect(localReconstruct(dense, dense, calibration, spec, options)).rejects.toThrow(
      /keptOutputs for 'conv_a' has 3 entries but the layer has 8 outputs/,
    );
  });
});

describe('localReconstruct: masked connectivity (50% of each filter’s inputs, per-cluster subsets)', () => {
  const cases = [
    // Measured after/before on held-out images: layers 0.11–0.28, final 0.033.
    {
      name: 'resnet-tiny on MNIST',
      build: resnetTiny,
      calibration: () => mnist('train'),
      test: () => mnist('test'),
      preset: undefined,
      layerRatio: 0.5,
      finalRatio: 0.1,
    },
    // Measured: layers 0.35–0.60 (the grouped 3×3 reads 4 channels per group, 2 of them masked), final 0.064.
    {
      name: 'resnext-block (group 4) on smooth synthetic images',
      build: resnextBlock,
      calibration: async () => smoothImages(256, 16, 3),
      test: async () => smoothImages(100, 16, 4),
      preset: 'half',
      layerRatio: 0.75,
      finalRatio: 0.15,
    },
  ];
  for (const c of cases) {
    it(`${c.name}: masked weights stay zero; every masked layer's output error and the final error fall`, async () => {
      const dense = c.build();
      const compressed = maskConnections(dense, 7);
      const spec = inputSpecFor(dense, { preset: c.preset });
      const progress: string[] = [];
      const result = await localReconstruct(dense, compressed, await c.calibration(), spec, {
        samples: 256,
        onProgress: (e) => e.phase === 'layer' && progress.push(...e.layers),
      });
      const names = layerNames(dense);
      expect([...progress].sort()).toEqual([...names].sort());
      for (const name of names) {
        const [before, after] = [weightOf(compressed, name), weightOf(result.model, name)];
        const maskedAt = [...before.keys()].filter((i) => before[i] === 0);
        expect(
          maskedAt.every((i) => Object.is(after[i], 0)),
          name,
        ).toBe(true);
        expect([...after.keys()].filter((i) => after[i] === 0).length, name).toBe(maskedAt.length);
      }
      const feeds = await heldOut(await c.test(), spec, 100);
      const [before, after] = [
        await layerErrors(dense, compressed, feeds, names),
        await layerErrors(dense, result.model, feeds, names),
      ];
      const masked = names.filter((n) => weightOf(compressed, n).some((w) => w === 0));
      expect(masked.length).toBeGreaterThanOrEqual(names.length - 2);
      const ratios = Object.fromEntries(names.map((n) => [n, after.get(n)! / before.get(n)!]));
      for (const name of masked)
        expect(ratios[name], `${name}: ${before.get(name)} → ${after.get(name)}`).toBeLessThan(c.layerRatio);
      for (const name of names.filter((n) => !masked.includes(n)))
        expect(after.get(name)!, `unmasked ${name}`).toBeLessThan(Math.max(2 * before.get(name)!, 1e-4));
      const final = names.at(-1)!;
      expect(after.get(final)! / before.get(final)!, `final ${before.get(final)} → ${after.get(final)}`).toBeLessThan(
        c.finalRatio,
      );
    });
  }
});

describe('localReconstruct: a channel-pruned model from the pruner', () => {
  it('ResNet-tiny pruned to 50% MACs (l1): the inferred output map is the pruner’s, and the final error falls', async () => {
    const dense = resnetTiny();
    const { pruned, kept: keptByNode, macsRatio } = pruneModel(dense, 0.5);
    // The fixture's node names are unique: a by-name view reads better in the checks below.
    const kept = new Map([...keptByNode].map(([node, keep]) => [node.name, keep] as const));
    expect(Math.abs(macsRatio - 0.5)).toBeLessThan(0.03);
    const spec = inputSpecFor(dense);
    const train = await mnist('train');
    const inferred = await localReconstruct(dense, pruned, train, spec, { samples: 256 });
    const names = layerNames(pruned);
    expect(refitted(inferred.layers).map((l) => l.name)).toEqual(names);
    const narrowed = inferred.layers.filter((l) => l.outputs! < l.denseOutputs!);
    expect(narrowed.length).toBeGreaterThanOrEqual(3);
    for (const layer of inferred.layers) {
      expect(layer.outputMap).toBe(layer.outputs === layer.denseOutputs ? 'identity' : 'inferred');
      expect([...layer.keptOutputs!], layer.name).toEqual([...kept.get(layer.name)!]);
    }
    const feeds = await heldOut(await mnist('test'), spec, 200);
    const [before, after] = [
      await layerErrors(dense, pruned, feeds, ['head.fc'], kept),
      await layerErrors(dense, inferred.model, feeds, ['head.fc'], kept),
    ];
    expect(
      after.get('head.fc')! / before.get('head.fc')!,
      `${before.get('head.fc')} → ${after.get('head.fc')}`,
    ).toBeLessThan(0.25);
    // The pruner's own map gives the same refit.
    const given = await localReconstruct(dense, pruned, train, spec, { samples: 256, keptOutputs: keptByNode });
    expect(given.layers.filter((l) => l.outputs! < l.denseOutputs!).every((l) => l.outputMap === 'given')).toBe(true);
    expect(bytesOf(given.model).equals(bytesOf(inferred.model))).toBe(true);
  });
});
