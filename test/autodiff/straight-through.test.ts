/**
 * DGConv's new gradients against central differences (passes/methods/dgconv-gates.ts):
 *
 * - the Kronecker mask U(e) and its density, differentiated in a continuous openness e —
 *   an ordinary smooth function, checked entry by entry and along random directions;
 * - the straight-through Sign: the gradient of y = f(sign θ) must be that of the surrogate
 *   f(s₀ + θ − θ₀) at θ₀ (the identity the sign stands for, s₀ = sign θ₀), whose own
 *   gradient is checked against central differences — for one Sign and for the whole gate
 *   graph (both Signs of the contiguous order).
 */
import { describe, expect, it } from 'vitest';
import { Emitter } from '../../compiler/autodiff/emitter.js';
import { gradientModel } from '../../compiler/autodiff/gradients.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { connected, emitGateMask, emitKronecker, openness } from '../../passes/methods/dgconv-gates.js';
import { createSession, run } from '../../runtime/session.js';
import {
  feedsOf,
  gradCheck,
  projectionLoss,
  randomInput,
  straightThroughGradient,
  surrogate,
  surrogateGradient,
  type Input,
} from './gradcheck.js';

const F32 = DataType.FLOAT;

/** loss = Σ (W ⊙ U)·R + density·r for a layer of `factors` with remainders rOut × rIn and a 3×3 kernel. */
function maskModel(
  factors: number[],
  rOut: number,
  rIn: number,
  build: (e: Emitter, input: Value) => { mask: Value; density: Value },
  inputDims: number[],
): Model {
  const b = new GraphBuilder({ opset: 17 });
  const input = b.input('input', inputDims, F32);
  const d = factors.reduce((p, n) => p * n, 1);
  const dims = [d * rOut, d * rIn, 3, 3];
  const w = b.initializer('w', Tensor.float32(dims, Float32Array.from(randomInput(dims, F32, 3).data)));
  const e = new Emitter(b.graph, 17, 'test');
  const { mask, density } = build(e, input);
  const masked = e.mul(w, mask);
  const both = e.add(
    e.reduceSum(e.mul(masked, e.floats(dims, randomInput(dims, F32, 4).data, F32)), [0, 1, 2, 3], false),
    e.mul(density, e.scalar(7, F32)),
  );
  b.output(projectionLoss(b.graph, e.reshape(both, e.int64([1])), [1], F32));
  return b.model;
}

describe('the Kronecker mask U(e)', () => {
  it('has the connectivity of its factors and the density 1/G', async () => {
    // factors 2·3 with remainders 2 × 1: C_out 12, C_in 6; e = (closed, open) → 2 groups.
    const model = maskModel([2, 3], 2, 1, (e, input) => emitKronecker(e, input, [2, 3], 2, 1, 2), [2]);
    const b = model.graph;
    const mask = [...b.nodes()].find((n) => n.opType === 'Mul' && n.inputs[0]?.name === 'w')!.input(1);
    b.outputs.push(mask);
    const density = [...b.nodes()].find((n) => n.opType === 'ReduceMean')!.output(0);
    b.outputs.push(density);
    const session = await createSession(model, { optimization: 'disabled' });
    const out = await run(session, feedsOf({ input: { dtype: F32, dims: [2], data: Float64Array.of(0, 1) } }));
    await session.release();
    const u = out[mask.name]!.data as Float32Array;
    for (let o = 0; o < 12; o++)
      for (let i = 0; i < 6; i++)
        expect(u[o * 6 + i], `U[${o}, ${i}]`).toBe(connected(o, i, [2, 3], [0, 1], 2, 1) ? 1 : 0);
    // Contiguous: filters 0–5 read inputs 0–2, filters 6–11 inputs 3–5.
    expect(connected(5, 2, [2, 3], [0, 1], 2, 1) && !connected(6, 2, [2, 3], [0, 1], 2, 1)).toBe(true);
    expect((out[density.name]!.data as Float32Array)[0]).toBeCloseTo(1 / 2, 6);
  });

  it('differentiates in a continuous openness as central differences say', async () => {
    const model = maskModel([2, 2, 3], 1, 2, (e, input) => emitKronecker(e, input, [2, 2, 3], 1, 2, 2), [3]);
    const e: Input = { dtype: F32, dims: [3], data: Float64Array.of(0.3, 0.7, 0.45) };
    const errors = await gradCheck(model, ['input'], { input: e }, { eps: 1e-2, entries: 3, directions: 3 });
    expect(errors.input).toBeLessThan(2e-3);
  });
});

describe('straight-through Sign', () => {
  it('passes the gradient through one Sign as the identity would', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('input', [6], F32);
    const s = b.op('Sign', [x]);
    const y = b.op('Mul', [b.op('Mul', [s, b.initializer('a', Tensor.float32([6], [1, 2, 3, 4, 5, 6]))]), x]);
    b.output(projectionLoss(b.graph, y, [6], F32));
    const feeds = { input: { dtype: F32, dims: [6], data: Float64Array.of(0.4, -0.3, 0.9, -1.2, 0.2, -0.6) } };
    const st = await straightThroughGradient(b.model, [s.name], feeds);
    const sur = await surrogate(b.model, [s.name], feeds);
    expect((await gradCheck(sur, ['input'], feeds, { eps: 1e-2, directions: 3 })).input).toBeLessThan(2e-3);
    const reference = await surrogateGradient(sur, feeds);
    st.forEach((g, k) => expect(g).toBeCloseTo(reference[k]!, 5));
    expect(st.some((g) => Math.abs(g) > 1e-3)).toBe(true);
    // Without the straight-through marking a Sign has no gradient rule at all.
    expect(() => gradientModel(b.model, { loss: 'loss', wrt: ['input'] })).toThrow(/Sign/);
  });

  it('refuses a straight-through value that is not a Sign, Round, Floor or Ceil output', () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('input', [2], F32);
    const y = b.op('Relu', [x]);
    b.output(projectionLoss(b.graph, y, [2], F32));
    expect(() => gradientModel(b.model, { loss: 'loss', wrt: ['input'], straightThrough: [y.name] })).toThrow(
      /must be the output of a Sign, Round, Floor or Ceil node.*Relu/,
    );
  });

  for (const order of ['contiguous', 'kronecker'] as const) {
    it(`gives the gate graph (${order} order) the surrogate's gradient, end to end`, async () => {
      const factors = [2, 2, 2];
      const signs: string[] = [];
      const model = maskModel(
        factors,
        2,
        1,
        (e, input) => {
          const gate = emitGateMask(e, input, factors, 2, 1, 2, order);
          signs.push(...gate.straightThrough.map((v) => v.name));
          return gate;
        },
        [3],
      );
      const feeds = { input: { dtype: F32, dims: [3], data: Float64Array.of(-0.3, 0.2, 0.5) } };
      expect(openness(feeds.input.data, order)).toEqual(order === 'contiguous' ? [0, 1, 1] : [0, 1, 1]);
      const st = await straightThroughGradient(model, signs, feeds);
      const sur = await surrogate(model, signs, feeds);
      expect((await gradCheck(sur, ['input'], feeds, { eps: 1e-2, directions: 3 })).input).toBeLessThan(2e-3);
      const reference = await surrogateGradient(sur, feeds);
      st.forEach((g, k) => expect(g).toBeCloseTo(reference[k]!, 4));
      expect(st.some((g) => Math.abs(g) > 1e-3)).toBe(true);
    });
  }
});
