/**
 * Cost model: published MACs and parameter counts of real models (within 2%), per-layer
 * figures adding up to the totals, and exact counts on hand-built layers (grouped conv,
 * ConvTranspose, batched MatMul, shared weights, what counts as a parameter).
 */
import { describe, expect, it } from 'vitest';
import { computeCost, type CostReport } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { haveShared, sharedModel } from '../helpers/shared.js';

function costOf(b: GraphBuilder, batch?: number): CostReport {
  return computeCost(b.model, inferShapes(b.model), { batch });
}

function expectSumsMatchTotals(report: CostReport): void {
  const sum = (pick: (l: CostReport['layers'][number]) => number) => report.layers.reduce((acc, l) => acc + pick(l), 0);
  expect(sum((l) => l.macs)).toBe(report.totals.macs);
  expect(sum((l) => l.params)).toBe(report.totals.params);
  expect(sum((l) => l.bytes)).toBe(report.totals.bytes);
}

const PUBLISHED = [
  { key: 'resnet18', macs: 1.81e9, params: 11.69e6 },
  { key: 'mobilenetV2', macs: 0.3e9, params: 3.5e6 },
  { key: 'resnet20', macs: 41e6, params: 0.27e6 },
];

describe.skipIf(!haveShared)('published figures', () => {
  for (const { key, macs, params } of PUBLISHED) {
    it(`${key}: ${macs / 1e6}M MACs and ${params / 1e6}M params within 2%, per layer adding up`, () => {
      const model = loadModel(sharedModel(key));
      const report = computeCost(model, inferShapes(model));
      expect(Math.abs(report.totals.macs / macs - 1)).toBeLessThan(0.02);
      expect(Math.abs(report.totals.params / params - 1)).toBeLessThan(0.02);
      expectSumsMatchTotals(report);
      expect(report.layers.some((l) => l.opType === 'Constant')).toBe(false);
    });
  }

  it('scales with the batch given for a symbolic batch dim', () => {
    const model = loadModel(sharedModel('resnet18'));
    const shapes = inferShapes(model);
    const one = computeCost(model, shapes);
    const eight = computeCost(model, shapes, { batch: 8 });
    expect(eight.totals.macs).toBe(8 * one.totals.macs);
    expect(eight.totals.params).toBe(one.totals.params);
    expect(eight.totals.bytes).toBeGreaterThan(one.totals.bytes);
  });

  it('finds weights held in Constant nodes (PaddleOCR has no initializers)', () => {
    const model = loadModel(sharedModel('ppocr'));
    const report = computeCost(model, inferShapes(model, { inputShapes: { x: [1, 3, 48, 192] } }));
    const convs = report.layers.filter((l) => l.opType === 'Conv');
    expect(convs.length).toBe(53);
    expect(convs.every((l) => l.params > 0 && l.macs > 0)).toBe(true);
    expectSumsMatchTotals(report);
  });
});

describe('exact counts on hand-built layers', () => {
  it('grouped conv: N·Cout·H·W·(Cin/group)·kh·kw MACs, weight + bias params, bytes read and written', () => {
    const b = new GraphBuilder();
    const x = b.input('x', ['N', 8, 10, 10]);
    b.output(
      b.op('Conv', [x, b.weight('w', [16, 2, 3, 3]), b.constant('bias', [16], 0)], { group: 4, pads: [1, 1, 1, 1] }),
    );
    const report = costOf(b);
    const [conv] = report.layers;
    expect(conv!.macs).toBe(1 * 16 * 10 * 10 * (8 / 4) * 3 * 3);
    expect(conv!.params).toBe(16 * 2 * 3 * 3 + 16);
    expect(conv!.bytes).toBe(4 * (8 * 100 + 16 * 2 * 9 + 16 + 16 * 100));
    expect(conv!.outputShape).toEqual(['N', 16, 10, 10]);
    expect(costOf(b, 3).totals.macs).toBe(3 * conv!.macs);
  });

  it('depthwise conv with stride and dilation', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [1, 32, 15, 15]);
    b.output(b.op('Conv', [x, b.weight('w', [32, 1, 3, 3])], { group: 32, strides: [2, 2], dilations: [2, 2] }));
    expect(costOf(b).totals.macs).toBe(32 * 6 * 6 * 9);
  });

  it('ConvTranspose: N·Cin·H·W·(Cout/group)·kh·kw', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [2, 4, 5, 5]);
    b.output(b.op('ConvTranspose', [x, b.weight('w', [4, 3, 3, 3])], { strides: [2, 2], group: 2 }));
    const report = costOf(b);
    expect(report.layers[0]!.outputShape).toEqual([2, 6, 11, 11]);
    expect(report.totals.macs).toBe(2 * 4 * 5 * 5 * 3 * 3 * 3);
  });

  it('Gemm with transA, batched and 1-D MatMul', () => {
    const b = new GraphBuilder();
    b.output(b.op('Gemm', [b.input('a', [7, 4]), b.weight('bw', [7, 5])], { transA: 1 }));
    b.output(b.op('MatMul', [b.input('m', [2, 3, 4, 5]), b.weight('mw', [5, 6])]));
    b.output(b.op('MatMul', [b.input('v', [5]), b.weight('vw', [5, 6])]));
    const [gemm, matmul, vector] = costOf(b).layers;
    expect(gemm!.macs).toBe(4 * 5 * 7);
    expect(matmul!.macs).toBe(2 * 3 * 4 * 6 * 5);
    expect(vector!.macs).toBe(6 * 5);
    expect([gemm!.params, matmul!.params, vector!.params]).toEqual([35, 30, 30]);
  });

  it('a shared weight counts once, for its first consumer; both still cost MACs', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [1, 4, 6, 6]);
    const w = b.weight('w', [4, 4, 1, 1]);
    b.output(b.op('Conv', [b.op('Conv', [x, w]), w]));
    const report = costOf(b);
    expect(report.layers.map((l) => l.params)).toEqual([16, 0]);
    expect(report.layers.map((l) => l.macs)).toEqual([576, 576]);
    expect(report.totals.params).toBe(16);
  });

  it('counts BN scale and bias (not running statistics), PRelu slopes and per-channel Mul/Add, not scalars or pools', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [1, 8, 4, 4]);
    const bn = b.op('BatchNormalization', [
      x,
      b.weight('g', [8]),
      b.weight('beta', [8]),
      b.weight('mean', [8]),
      b.constant('var', [8], 1),
    ]);
    const prelu = b.op('PRelu', [bn, b.weight('slope', [8, 1, 1])]);
    const scaled = b.op('Mul', [prelu, b.weight('scale', [8, 1, 1])]);
    const shifted = b.op('Add', [scaled, b.constant('three', [], 3)]);
    b.output(b.op('MaxPool', [shifted], { kernel_shape: [2, 2] }));
    const report = costOf(b);
    expect(report.layers.map((l) => [l.opType, l.params, l.macs])).toEqual([
      ['BatchNormalization', 16, 0],
      ['PRelu', 8, 0],
      ['Mul', 8, 0],
      ['Add', 0, 0],
      ['MaxPool', 0, 0],
    ]);
  });

  it('quantized convs: QLinearConv integer weights, and float Conv weights behind DequantizeLinear', () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', [1, 4, 6, 6]);
    const scale = b.initializer('s', Tensor.float32([], [0.1]));
    const zp = b.initializer('zp', Tensor.fromArray(DataType.UINT8, [], Uint8Array.of(128)));
    const q = b.op('QuantizeLinear', [x, scale, zp]);
    const w = b.initializer('w', Tensor.fromArray(DataType.UINT8, [8, 4, 3, 3], new Uint8Array(288)));
    b.output(b.op('QLinearConv', [q, scale, zp, w, scale, zp, scale, zp], { pads: [1, 1, 1, 1] }));
    const wq = b.initializer('wq', Tensor.fromArray(DataType.INT8, [8, 4, 1, 1], new Int8Array(32)));
    const dq = b.op('DequantizeLinear', [wq, scale]);
    b.output(b.op('Conv', [x, dq]));
    const report = costOf(b);
    const byOp = (op: string) => report.layers.find((l) => l.opType === op)!;
    expect(byOp('QLinearConv').macs).toBe(8 * 36 * 4 * 9);
    expect(byOp('QLinearConv').params).toBe(288);
    expect(byOp('Conv').macs).toBe(8 * 36 * 4);
    expect(byOp('Conv').params).toBe(32);
  });

  it('counts nothing it cannot size, and says so through zero rather than a guess', () => {
    const b = new GraphBuilder();
    const x = b.input('x', [1, 4, 6, 6]);
    const custom = b.node('Mystery', [x], {}, { domain: 'com.example' }).output();
    b.output(b.op('Conv', [custom, b.weight('w', [4, 4, 3, 3])]));
    const report = costOf(b);
    const conv = report.layers.find((l) => l.opType === 'Conv')!;
    expect(conv.macs).toBe(0);
    expect(conv.params).toBe(144);
    expect(conv.outputShape).toBeUndefined();
  });
});
