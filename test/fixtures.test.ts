/**
 * The generated fixtures: each builds, verifies, runs in onnxruntime with the declared output
 * shape, has the structure its name promises, and is deterministic; the committed demo model
 * equals a fresh build byte for byte.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AttrType } from '../compiler/ir/attribute.js';
import { DataType } from '../compiler/ir/dtype.js';
import type { Model } from '../compiler/ir/model.js';
import type { Node } from '../compiler/ir/node.js';
import { decodeModel } from '../compiler/onnx/decode.js';
import { encodeModel } from '../compiler/onnx/encode.js';
import { DEMO_MODEL_PATH, writeAllFixtures } from '../fixtures/build.js';
import { FIXTURES, resnetTiny } from '../fixtures/models.js';
import { randomFeeds } from '../runtime/inputs.js';
import { createSession, run } from '../runtime/session.js';

const opCounts = (model: Model): Record<string, number> => {
  const counts: Record<string, number> = {};
  for (const node of model.graph.nodes()) counts[node.opType] = (counts[node.opType] ?? 0) + 1;
  return counts;
};

const convs = (model: Model): Node[] => model.graph.nodeList().filter((n) => n.opType === 'Conv');
const parameterCount = (model: Model): number =>
  [...model.graph.initializers.values()].reduce((sum, v) => sum + v.constValue!.size, 0);

/** Structural promises of each fixture (op counts that must be present). */
const EXPECTED_OPS: Record<string, Record<string, number>> = {
  'vgg-chain': { Conv: 3, BatchNormalization: 3, Relu: 3, MaxPool: 2, Flatten: 1, Gemm: 1 },
  'resnet-basic': { Conv: 6, BatchNormalization: 6, Add: 2, GlobalAveragePool: 1, Flatten: 1, Gemm: 1 },
  'resnet-bottleneck': { Conv: 5, BatchNormalization: 5, Add: 1, GlobalAveragePool: 1, Gemm: 1 },
  'densenet-concat': { Concat: 3, Conv: 5, AveragePool: 1, BatchNormalization: 5, Gemm: 1 },
  'mobilenet-v2-block': { Conv: 4, Clip: 3, Add: 1, BatchNormalization: 4, Gemm: 1 },
  'resnext-block': { Conv: 5, Add: 1, Gemm: 1 },
  'flatten-gemm-head': { Conv: 2, Flatten: 1, Gemm: 2, MaxPool: 1 },
  'gap-gemm-head': { Conv: 2, GlobalAveragePool: 1, Flatten: 1, Gemm: 1 },
  'se-block': { GlobalAveragePool: 2, Conv: 3, Sigmoid: 1, Mul: 1, Relu: 2, Gemm: 1 },
  'resnet-tiny': { Conv: 9, BatchNormalization: 9, Add: 3, Relu: 7, GlobalAveragePool: 1, Flatten: 1, Gemm: 1 },
  'channel-shuffle': { Split: 1, Concat: 1, Reshape: 2, Transpose: 1, Conv: 3, Gemm: 1 },
  'nhwc-transposed': { Transpose: 4, Conv: 2, Add: 2, ReduceMean: 1, Gemm: 1 },
  'unnamed-detector': {
    Conv: 6,
    BatchNormalization: 4,
    Relu: 6,
    Add: 1,
    Concat: 1,
    GlobalAveragePool: 1,
    Flatten: 1,
    Gemm: 1,
  },
};

describe('generated fixtures', () => {
  it('the registry lists every fixture with structural expectations', () => {
    expect(Object.keys(FIXTURES).sort()).toEqual(Object.keys(EXPECTED_OPS).sort());
  });

  for (const [key, build] of Object.entries(FIXTURES)) {
    describe(key, () => {
      const model = build();

      it('verifies, with opset 17, a symbolic-batch float input and a typed [N, 10] output', () => {
        model.graph.verify();
        expect(model.opset()).toBe(17);
        const [input] = model.graph.inputs.filter((v) => !v.isInitializer());
        expect(input!.type!.dtype).toBe(DataType.FLOAT);
        expect(input!.type!.shape![0]).toBe('N');
        expect(model.graph.outputs.map((v) => [v.name, v.type])).toEqual([
          ['logits', { dtype: DataType.FLOAT, shape: ['N', 10] }],
        ]);
        expect(opCounts(model)).toMatchObject(EXPECTED_OPS[key]!);
      });

      it('keeps BatchNormalization with non-trivial seeded statistics and positive variance', () => {
        for (const bn of model.graph.nodeList().filter((n) => n.opType === 'BatchNormalization')) {
          const [scale, bias, mean, variance] = [1, 2, 3, 4].map((i) => bn.input(i).constValue!.toNumbers());
          expect(Math.min(...variance!), bn.name).toBeGreaterThan(0);
          expect(new Set(scale).size, `${bn.name} scale varies`).toBeGreaterThan(1);
          expect(bias!.some((b) => b !== 0) && mean!.some((m) => m !== 0), bn.name).toBe(true);
        }
      });

      it('runs in onnxruntime (batch 2) with finite outputs of shape [2, 10]', async () => {
        const session = await createSession(model, { optimization: 'disabled' });
        try {
          const outputs = await run(session, randomFeeds(model, { seed: 1, batch: 2 }));
          const logits = outputs.logits!;
          expect(logits.dims).toEqual([2, 10]);
          const values = [...(logits.data as Float32Array)];
          expect(values.every(Number.isFinite)).toBe(true);
          expect(new Set(values).size).toBeGreaterThan(10);
        } finally {
          await session.release();
        }
      });

      it('builds to identical bytes every time', () => {
        const first = encodeModel(model).bytes;
        expect(Buffer.from(encodeModel(build()).bytes).equals(Buffer.from(first))).toBe(true);
        expect(Buffer.from(encodeModel(model).bytes).equals(Buffer.from(first))).toBe(true);
      });
    });
  }

  it('mobilenet-v2-block has a depthwise conv (group = C) and Clip with min/max inputs', () => {
    const model = FIXTURES['mobilenet-v2-block']!();
    const depthwise = convs(model).filter((c) => c.getInt('group', 1) > 1);
    expect(depthwise).toHaveLength(1);
    expect(depthwise[0]!.getInt('group')).toBe(depthwise[0]!.input(1).constValue!.dims[0]);
    expect(depthwise[0]!.input(1).constValue!.dims[1]).toBe(1);
    for (const clip of model.graph.nodeList().filter((n) => n.opType === 'Clip')) {
      expect(clip.inputs.map((v) => v?.constValue?.toNumbers())).toEqual([undefined, [0], [6]]);
    }
  });

  it('resnext-block has a grouped 3×3 conv with group 4; resnet-basic a strided 1×1 shortcut', () => {
    const grouped = convs(FIXTURES['resnext-block']!()).filter((c) => c.getInt('group', 1) > 1);
    expect(grouped.map((c) => [c.getInt('group'), c.getInts('kernel_shape')])).toEqual([[4, [3, 3]]]);
    const shortcut = convs(FIXTURES['resnet-basic']!()).filter((c) => c.getInts('kernel_shape')![0] === 1);
    expect(shortcut.map((c) => c.getInts('strides'))).toEqual([[2, 2]]);
  });

  it('densenet-concat concatenates growing features along channels', () => {
    const concats = FIXTURES['densenet-concat']!()
      .graph.nodeList()
      .filter((n) => n.opType === 'Concat');
    expect(concats.map((c) => c.attr('axis'))).toEqual(
      concats.map(() => expect.objectContaining({ type: AttrType.INT, value: 1 })),
    );
    // Each Concat reads the previous one (features grow) plus one new conv output.
    for (let i = 1; i < concats.length; i++) expect(concats[i]!.input(0)).toBe(concats[i - 1]!.output());
  });

  it('se-block gates the features with Sigmoid(Conv(Relu(Conv(GAP(x)))))', () => {
    const model = FIXTURES['se-block']!();
    const mul = model.graph.nodeList().find((n) => n.opType === 'Mul')!;
    const chain: string[] = [];
    let node: Node | undefined = mul.input(1).producer;
    while (node && chain.length < 6) {
      chain.push(node.opType);
      node = node.input(0).producer;
    }
    expect(chain).toEqual(['Sigmoid', 'Conv', 'Relu', 'Conv', 'GlobalAveragePool', 'Relu']);
    // The pooled value is the very tensor the gate multiplies.
    expect(mul.input(0)).toBe(
      model.graph
        .nodeList()
        .find((n) => n.opType === 'GlobalAveragePool')!
        .input(0),
    );
  });
});

describe('resnet-tiny, the shipped demo model', () => {
  it('is a 1×28×28 → 10 ResNet with 16/32/64 channels and under 100k parameters', () => {
    const model = resnetTiny();
    expect(model.graph.inputs[0]!.type!.shape).toEqual(['N', 1, 28, 28]);
    const widths = [...new Set(convs(model).map((c) => c.input(1).constValue!.dims[0]))];
    expect(widths).toEqual([16, 32, 64]);
    const params = parameterCount(model);
    expect(params).toBeGreaterThan(50_000);
    expect(params).toBeLessThan(100_000);
  });

  it('the committed fixtures/models/resnet-tiny.onnx equals a fresh build byte for byte (and is < 1 MB)', () => {
    expect(fs.existsSync(DEMO_MODEL_PATH), `${DEMO_MODEL_PATH} is missing; run node dist/fixtures/build.js`).toBe(true);
    const committed = fs.readFileSync(DEMO_MODEL_PATH);
    expect(committed.byteLength).toBeLessThan(1 << 20);
    expect(
      committed.equals(Buffer.from(encodeModel(resnetTiny()).bytes)),
      'regenerate with node dist/fixtures/build.js, on purpose',
    ).toBe(true);
  });

  it('the build script writes every fixture to a folder, each decoding to its fresh build', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-fixtures-'));
    try {
      const files = writeAllFixtures(dir);
      expect(files.map((f) => path.basename(f, '.onnx')).sort()).toEqual(Object.keys(FIXTURES).sort());
      for (const file of files) {
        const bytes = fs.readFileSync(file);
        const key = path.basename(file, '.onnx');
        expect(bytes.equals(Buffer.from(encodeModel(FIXTURES[key]!()).bytes)), key).toBe(true);
        decodeModel(bytes, { source: file }).graph.verify();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
