/**
 * The DCFF method (passes/methods/dcff.ts) on the Fashion-MNIST fixtures: the baked model is
 * valid ONNX and computes what the training model's in-graph fusion computes on the same
 * weights; residual partners share one fusion matrix; BatchNormalization keeps the kept
 * channels' parameters; groups that cannot be fused are named; --from-scratch is seeded.
 */
import { describe, expect, it } from 'vitest';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { constantOf } from '../../compiler/ir/constants.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node } from '../../compiler/ir/node.js';
const cloneModel = (m: Model): Model => m.clone().model;
import { encodeModel } from '../../compiler/onnx/encode.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { PREPARE, runPasses } from '../../passes/index.js';
import { dcff, refreshCodes } from '../../passes/methods/dcff.js';
import { methodNamed } from '../../passes/methods/index.js';
import type { Structured, StructureContext } from '../../passes/methods/method.js';
import { randomFeeds } from '../../runtime/inputs.js';
import type { Outputs } from '../../runtime/session.js';
import { outputsOf } from './compare.js';

const FIXTURES = new URL('../../fixtures/models/', import.meta.url).pathname;

function prepared(name: string): Model {
  const model = loadModel(`${FIXTURES}${name}.onnx`);
  runPasses(model, PREPARE, {}, { verify: true });
  return model;
}

function context(notes: string[] = [], seed = 0): StructureContext {
  return { common: { keepMacs: 0.5, seed, hasData: false }, log: () => {}, note: (line) => notes.push(line) };
}

/** max |a − b| / max |a| over every output. */
function relativeDifference(a: Outputs, b: Outputs): number {
  let diff = 0;
  let scale = 0;
  for (const [name, want] of Object.entries(a)) {
    const x = want.data as Float32Array;
    const y = b[name]!.data as Float32Array;
    for (let i = 0; i < x.length; i++) {
      diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
      scale = Math.max(scale, Math.abs(x[i]!));
    }
  }
  return diff / scale;
}

function consumerOf(node: Node, opType: string): Node | undefined {
  return node
    .output(0)
    .uses()
    .find((u) => u.node.opType === opType)?.node;
}

describe.each(['fmnist-resnet', 'fmnist-vgg'])('dcff on %s at keepMacs 0.5', (name) => {
  let structured: Structured;
  const notes: string[] = [];
  const dense = prepared(name);

  it('builds a valid narrower model near the MACs target, with its training model', async () => {
    structured = await dcff.structure(dense, dcff.options({}, context().common), 0.5, context(notes));
    structured.model.graph.verify();
    structured.hooks!.model!.graph.verify();
    expect(Math.abs(structured.macsRatio - 0.5)).toBeLessThan(0.05);
    expect(structured.connectivity.size).toBe(0);
    expect(notes.join('\n')).toMatch(/dcff: [1-9]\d* channel group\(s\) fused/);
    expect(notes.join('\n')).toMatch(
      /dcff: group of Gemm 'head.fc' \(10 channels\) stays: pinned \(graph output 'logits'\)/,
    );
    expect(structured.hooks!.frozen!.every((name) => name.endsWith('.weight.p_top'))).toBe(true);
    const ops = (m: Model) => [...m.graph.nodes()].map((n) => n.opType);
    expect(ops(structured.model)).toEqual(ops(dense)); // baked: an ordinary model, same ops
    expect(ops(structured.hooks!.model!).filter((op) => op === 'MatMul').length).toBe(
      structured.hooks!.trainable!.length,
    );
  });

  it("the baked model equals the training graph's fused forward through onnxruntime (relative difference ≤ 1e-5)", async () => {
    const feeds = randomFeeds(dense, { seed: 7, batch: 4 });
    const baked = await outputsOf(encodeModel(structured.model).bytes, feeds);
    const fused = await outputsOf(encodeModel(structured.hooks!.model!).bytes, feeds);
    expect(relativeDifference(fused, baked)).toBeLessThanOrEqual(1e-5);
    // and after the fusion matrix moves (a later epoch's temperature): bake the training model again
    const training = cloneModel(structured.hooks!.model!);
    const current = (n: string) => training.graph.initializers.get(n)!.constValue!;
    for (const [n, tensor] of refreshCodes(groupsOf(structured), 40, current))
      training.graph.setInitializer(training.graph.initializers.get(n)!, tensor);
    const rebaked = structured.hooks!.finish!(training);
    expect(relativeDifference(await outputsOf(training, feeds), await outputsOf(rebaked, feeds))).toBeLessThanOrEqual(
      1e-5,
    );
  });

  it('adopt carries a refit of the baked model into the training model: its forward equals the refit (≤ 1e-5)', async () => {
    // A stand-in for the local phase: every float initializer of the baked model moved by a seeded perturbation.
    const refit = cloneModel(structured.model);
    let seed = 11;
    const noise = () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.2;
    for (const [n, value] of refit.graph.initializers) {
      const t = value.constValue!;
      if (t.dtype !== DataType.FLOAT || value.useCount === 0) continue;
      refit.graph.setInitializer(
        value,
        Tensor.fromArray(
          DataType.FLOAT,
          t.dims,
          (t.data as Float32Array).map((x) => x * (1 + noise())),
          { name: n },
        ),
      );
    }
    const adopted = structured.hooks!.adopt!(refit);
    adopted.graph.verify();
    const feeds = randomFeeds(dense, { seed: 3, batch: 4 });
    const [want, training] = [await outputsOf(refit, feeds), await outputsOf(adopted, feeds)];
    expect(relativeDifference(want, training)).toBeLessThanOrEqual(1e-5);
    expect(relativeDifference(want, await outputsOf(structured.model, feeds))).toBeGreaterThan(1e-3); // the refit did move it
    // every filter of a full bank may move, but P_top does not
    for (const p of structured.hooks!.frozen!)
      expect(adopted.graph.initializers.get(p)!.constValue!.data).toEqual(
        structured.hooks!.model!.graph.initializers.get(p)!.constValue!.data,
      );
  });

  it("regroup's shape inference agrees with onnxruntime's output shapes", async () => {
    const shapes = inferShapes(structured.model);
    const out = await outputsOf(structured.model, randomFeeds(dense, { seed: 1 }));
    for (const v of structured.model.graph.outputs) {
      const [batch, ...rest] = shapes.typeOf(v)!.shape!;
      expect(rest).toEqual(out[v.name]!.dims.slice(1));
      expect(typeof batch === 'string' || batch === out[v.name]!.dims[0]).toBe(true); // a symbolic batch, or the same
    }
    for (const node of structured.model.graph.nodes()) {
      if (node.opType !== 'Conv') continue;
      expect(shapes.typeOf(node.output(0))?.shape?.[1]).toBe(constantOf(node.inputs[1])!.dims[0]);
    }
  });

  it("BatchNormalization after a fused conv keeps the parameters of the kept channels (row r's channel = argmax of P_top[r])", () => {
    const training = structured.hooks!.model!;
    let checked = 0;
    for (const pName of structured.hooks!.frozen!) {
      const p = training.graph.initializers.get(pName)!.constValue!;
      const [m, channels] = p.dims as [number, number];
      const values = p.toFloat64();
      const rows = Array.from({ length: m }, (_, r) =>
        values
          .subarray(r * channels, (r + 1) * channels)
          .indexOf(Math.max(...values.subarray(r * channels, (r + 1) * channels))),
      );
      const matmul = [...training.graph.nodes()].find((n) => n.opType === 'MatMul' && n.inputs[0]!.name === pName)!;
      const conv = matmul.output(0).uses()[0]!.node.output(0).uses()[0]!.node;
      const bn = consumerOf(conv, 'BatchNormalization');
      const denseConv = [...dense.graph.nodes()].find((n) => n.name === conv.name)!;
      const denseBn = consumerOf(denseConv, 'BatchNormalization');
      if (!bn || !denseBn) continue;
      const scale = constantOf(bn.inputs[1])!.toFloat64();
      const denseScale = constantOf(denseBn.inputs[1])!.toFloat64();
      expect(Array.from(scale)).toEqual(rows.map((c) => denseScale[c]));
      checked++;
    }
    expect(checked).toBeGreaterThan(0);
  });
});

/** The fused groups of a structured model, read back from its hooks (what refreshCodes needs). */
function groupsOf(structured: Structured) {
  const training = structured.hooks!.model!;
  return structured.hooks!.frozen!.map((pTop) => {
    const p = training.graph.initializers.get(pTop)!.constValue!;
    const fulls = [...training.graph.nodes()]
      .filter((n) => n.opType === 'MatMul' && n.inputs[0]!.name === pTop)
      .map((n) => n.inputs[1]!.producer!.inputs[0]!.name);
    const weights = fulls.filter((f) => training.graph.initializers.get(f)!.constValue!.dims.length > 1);
    return { pTop, keep: p.dims[0]!, channels: p.dims[1]!, weights, tensors: [] };
  });
}

describe('dcff structure', () => {
  it('residual partners share one fusion matrix: fewer P_top tensors than fused weights on fmnist-resnet', async () => {
    const structured = await dcff.structure(
      prepared('fmnist-resnet'),
      { fromScratch: false, roundTo: 1 },
      0.5,
      context(),
    );
    const training = structured.hooks!.model!;
    const users = structured.hooks!.frozen!.map((p) => training.graph.initializers.get(p)!.useCount);
    expect(Math.max(...users)).toBeGreaterThan(1);
  });

  it('names a group it cannot fuse (depthwise member) and prunes it by L1 selection instead', async () => {
    const notes: string[] = [];
    const structured = await dcff.structure(
      prepared('fmnist-mobilenet'),
      { fromScratch: false, roundTo: 1 },
      0.6,
      context(notes),
    );
    structured.model.graph.verify();
    expect(notes.some((n) => /not fused: .*depthwise-group|not fused: .*not a plain conv/.test(n))).toBe(true);
  });

  it('--from-scratch re-initialises He-normal, seeded: same seed same bytes, other seed other weights', async () => {
    const dense = prepared('fmnist-vgg');
    const run = async (seed: number) =>
      encodeModel((await dcff.structure(dense, { fromScratch: true, roundTo: 1 }, 0.5, context([], seed))).model).bytes;
    const [a, b, c] = [await run(3), await run(3), await run(4)];
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(false);
    const plain = encodeModel(
      (await dcff.structure(dense, { fromScratch: false, roundTo: 1 }, 0.5, context())).model,
    ).bytes;
    expect(Buffer.from(a).equals(Buffer.from(plain))).toBe(false);
  });

  it('keeps everything and brings no hooks at keepMacs 1', async () => {
    const structured = await dcff.structure(prepared('fmnist-vgg'), { fromScratch: false, roundTo: 1 }, 1, context());
    expect(structured.hooks).toBeUndefined();
    expect(structured.macsRatio).toBe(1);
  });

  it('is in the registry with its flag', () => {
    const method = methodNamed('dcff');
    expect(method.flags.map((f) => f.flags)).toEqual(['--round-to <n>', '--from-scratch']);
    expect(method.options({ fromScratch: true, roundTo: 1 }, context().common)).toEqual({
      fromScratch: true,
      roundTo: 1,
    });
  });
});
