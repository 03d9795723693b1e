/**
 * The op-role table: weight/bias inputs, trained and masked inputs, and the channel axes of
 * each linear layer's weight, checked against the ONNX operator definitions by hand.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import type { Node } from '../../compiler/ir/node.js';
import { inputChannels, isLinearLayer, opRole, outputChannels, weightAxes } from '../../compiler/ir/op-roles.js';

function node(opType: string, attributes: Record<string, number> = {}, domain = ''): Node {
  const b = new GraphBuilder({ opset: 17 });
  return b.node(opType, [b.input('x', [1])], attributes, { domain });
}

describe('op roles', () => {
  it('Conv: weight [Cout, Cin/group, k…] — out dim 0, in dim 1 × group', () => {
    const conv = node('Conv', { group: 2 });
    expect(opRole(conv)).toMatchObject({ weight: 1, bias: 2, trained: [1, 2], masked: [1], linear: true });
    expect(weightAxes(conv, 4)).toEqual({ out: 0, in: 1 });
    expect([outputChannels(conv, [8, 3, 3, 3]), inputChannels(conv, [8, 3, 3, 3])]).toEqual([8, 6]);
  });

  it('ConvTranspose: weight [Cin, Cout/group, k…] — out dim 1 × group, in dim 0', () => {
    const deconv = node('ConvTranspose', { group: 4 });
    expect(weightAxes(deconv, 4)).toEqual({ out: 1, in: 0 });
    expect([outputChannels(deconv, [16, 2, 3, 3]), inputChannels(deconv, [16, 2, 3, 3])]).toEqual([8, 16]);
  });

  it('Gemm: the weight axes follow transB', () => {
    expect(outputChannels(node('Gemm', { transB: 1 }), [10, 64])).toBe(10);
    expect(outputChannels(node('Gemm'), [64, 10])).toBe(10);
    expect(inputChannels(node('Gemm'), [64, 10])).toBe(64);
  });

  it('MatMul: last dim out, second-to-last in; either input may be the masked constant', () => {
    const matmul = node('MatMul');
    expect(weightAxes(matmul, 3)).toEqual({ out: 2, in: 1 });
    expect(outputChannels(matmul, [4, 64, 10])).toBe(10);
    expect(opRole(matmul)).toMatchObject({ trained: [1], masked: [0, 1], params: [0, 1] });
  });

  it('BatchNormalization trains scale and shift but is no linear layer; other normalizations do not train', () => {
    const bn = node('BatchNormalization');
    expect(opRole(bn)).toMatchObject({ weight: 1, bias: 2, params: [1, 2], trained: [1, 2], masked: [] });
    expect([isLinearLayer(bn), weightAxes(bn, 1), outputChannels(bn, [8])]).toEqual([false, undefined, undefined]);
    expect(opRole(node('LayerNormalization'))?.trained).toEqual([]);
  });

  it('quantized forms count integer parameters; other ops and other domains have no role', () => {
    expect(opRole(node('QLinearConv'))).toMatchObject({ weight: 3, params: [3, 8], integer: true, linear: false });
    expect(opRole(node('Relu'))).toBeUndefined();
    expect(opRole(node('Conv', {}, 'com.example'))).toBeUndefined();
    expect(opRole(node('Conv', {}, 'ai.onnx'))?.weight).toBe(1);
  });
});
