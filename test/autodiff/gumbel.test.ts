/**
 * MSGC's building blocks (passes/methods/msgc-gates.ts): the noise drawn in the step graph
 * repeats for the same seed and update and looks uniform; the Gumbel-sigmoid gate with fixed
 * noise has its surrogate's gradient (straight through the hard threshold), checked against
 * central differences — alone and behind a gate network (GAP → 1×1 conv → training-mode BN →
 * ReLU → 1×1 conv) that masks its own input; gates go on residual blocks only.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Emitter } from '../../compiler/autodiff/emitter.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { resnetTiny } from '../../fixtures/models.js';
import {
  emitGumbelGate,
  emitHeadsConv,
  emitUniformNoise,
  gatePlacements,
  MSGC_LOGIT_BIAS,
} from '../../passes/methods/msgc-gates.js';
import { createSession, run } from '../../runtime/session.js';
import { PROJECT_ROOT } from '../helpers/shared.js';
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

describe('noise in the step graph', () => {
  async function draw(seed: number, step: number): Promise<Float32Array> {
    const b = new GraphBuilder({ opset: 17 });
    const like = b.input('like', ['N', 256], F32);
    const s = b.input('step', [], F32);
    b.output(emitUniformNoise(new Emitter(b.graph, 17, 'noise'), like, s, seed));
    const session = await createSession(b.model, { optimization: 'disabled' });
    const out = await run(
      session,
      feedsOf({
        like: { dtype: F32, dims: [64, 256], data: new Float64Array(64 * 256) },
        step: { dtype: F32, dims: [], data: Float64Array.of(step) },
      }),
    );
    await session.release();
    return Object.values(out)[0]!.data as Float32Array;
  }

  it('repeats for the same seed and update, changes with either, and is uniform on (0, 1)', async () => {
    const [a, again, next, other] = [await draw(3, 17), await draw(3, 17), await draw(3, 18), await draw(4, 17)];
    expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(again.buffer))).toBe(0);
    const differ = (x: Float32Array, y: Float32Array) => x.filter((v, i) => v !== y[i]).length / x.length;
    expect(differ(a, next)).toBeGreaterThan(0.99);
    expect(differ(a, other)).toBeGreaterThan(0.99);
    const mean = a.reduce((s, v) => s + v, 0) / a.length;
    const variance = a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length;
    expect(Math.min(...a)).toBeGreaterThan(0);
    expect(Math.max(...a)).toBeLessThan(1);
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(variance - 1 / 12)).toBeLessThan(0.005);
    // Deciles hold about a tenth each.
    for (let d = 0; d < 10; d++) {
      const share = a.filter((v) => v >= d / 10 && v < (d + 1) / 10).length / a.length;
      expect(Math.abs(share - 0.1)).toBeLessThan(0.01);
    }
  });
});

describe('the Gumbel-sigmoid gate', () => {
  it('with fixed noise, has the gradient of its soft gate (straight through the threshold)', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const logits = b.input('input', [2, 6], F32);
    const u = b.input('u', [2, 6], F32);
    const e = new Emitter(b.graph, 17, 'gate');
    const gate = emitGumbelGate(e, logits, u);
    const weights = b.initializer(
      'w',
      Tensor.float32(
        [2, 6],
        Array.from({ length: 12 }, (_, i) => (i % 5) - 2),
      ),
    );
    b.output(projectionLoss(b.graph, e.mul(gate.hard, weights), [2, 6], F32));
    const feeds: Record<string, Input> = {
      input: { ...randomInput([2, 6], F32, 8), data: randomInput([2, 6], F32, 8).data.map((x) => x + 0.3) },
      u: { dtype: F32, dims: [2, 6], data: Float64Array.from({ length: 12 }, (_, i) => 0.05 + (0.9 * i) / 11) },
    };
    const signs = gate.straightThrough.map((v) => v.name);
    const st = await straightThroughGradient(b.model, signs, feeds);
    const sur = await surrogate(b.model, signs, feeds);
    expect((await gradCheck(sur, ['input'], feeds, { eps: 1e-2, directions: 3 })).input).toBeLessThan(5e-3);
    const reference = await surrogateGradient(sur, feeds);
    st.forEach((g, k) => expect(g).toBeCloseTo(reference[k]!, 5));
    expect(st.filter((g) => Math.abs(g) > 1e-4).length).toBeGreaterThan(6);
  });

  it('behind a gate network with training-mode BatchNormalization, end to end', async () => {
    const [N, C, H] = [4, 4, 5];
    const hidden = 3;
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', [N, C, H, H], F32);
    const u = b.input('u', [N, C], F32);
    const w1 = b.input('input', [hidden, C, 1, 1], F32);
    const init = (name: string, dims: number[], seed: number, shift = 0) =>
      b.initializer(
        name,
        Tensor.float32(
          dims,
          Array.from(randomInput(dims, F32, seed).data, (v) => v * 0.5 + shift),
        ),
      );
    const pooled = b.op('GlobalAveragePool', [x]);
    const h = b.op('Conv', [pooled, w1]);
    const bn = b.op('BatchNormalization', [
      h,
      init('gamma', [hidden], 1, 1),
      init('beta', [hidden], 2),
      b.initializer('mean', Tensor.float32([hidden], [0, 0, 0])),
      b.initializer('var', Tensor.float32([hidden], [1, 1, 1])),
    ]);
    const logits4 = b.op('Conv', [
      b.op('Relu', [bn]),
      init('w2', [C, hidden, 1, 1], 3),
      init('b2', [C], 4, MSGC_LOGIT_BIAS - 2),
    ]);
    const e = new Emitter(b.graph, 17, 'gate');
    const logits = e.reshape(logits4, e.int64([N, C]));
    const gate = emitGumbelGate(e, logits, u);
    const masked = e.mul(x, e.reshape(gate.hard, e.int64([N, C, 1, 1])));
    b.output(projectionLoss(b.graph, masked, [N, C, H, H], F32));
    const feeds: Record<string, Input> = {
      x: randomInput([N, C, H, H], F32, 5),
      u: {
        dtype: F32,
        dims: [N, C],
        data: Float64Array.from({ length: N * C }, (_, i) => 0.1 + (0.8 * ((i * 7) % 16)) / 15),
      },
      input: randomInput([hidden, C, 1, 1], F32, 6),
    };
    const signs = gate.straightThrough.map((v) => v.name);
    const st = await straightThroughGradient(b.model, signs, feeds, 'input', true);
    const sur = await surrogate(b.model, signs, feeds);
    const check = await gradCheck(sur, ['input'], feeds, { eps: 1e-2, directions: 3, trainingBatchNorm: true });
    expect(check.input).toBeLessThan(1e-2);
    const reference = await surrogateGradient(sur, feeds, 'input', true);
    st.forEach((g, k) => expect(g).toBeCloseTo(reference[k]!, 4));
    expect(st.some((g) => Math.abs(g) > 1e-3)).toBe(true);
  });
});

describe('MSGC end to end: gate network → Gumbel masks → heads conv', () => {
  it("has the straight-through gradient of its soft surrogate at the gate network's first conv, through the heads", async () => {
    const [N, C, H, heads, hidden] = [3, 4, 5, 2, 3];
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', [N, C, H, H], F32);
    const u = b.input('u', [N, heads * C], F32);
    const w1 = b.input('input', [hidden, C, 1, 1], F32);
    const random = (dims: number[], seed: number, scale = 0.5, shift = 0) =>
      Tensor.float32(
        dims,
        Array.from(randomInput(dims, F32, seed).data, (v) => v * scale + shift),
      );
    const h = b.op('Relu', [b.op('Conv', [b.op('GlobalAveragePool', [x]), w1])]);
    const logits4 = b.op('Conv', [
      h,
      b.initializer('w2', random([heads * C, hidden, 1, 1], 3)),
      b.initializer('b2', random([heads * C], 4, 0.5, 0.2)),
    ]);
    const e = new Emitter(b.graph, 17, 'gate');
    const gate = emitGumbelGate(e, e.reshape(logits4, e.int64([N, heads * C])), u);
    const y = b.op('Conv', [x, b.initializer('w', random([4, C, 3, 3], 7))], { pads: [1, 1, 1, 1] });
    const out = emitHeadsConv(e, y.producer!, gate.hard, heads);
    b.graph.sort();
    b.output(projectionLoss(b.graph, out, [N, 4, H, H], F32));
    const feeds: Record<string, Input> = {
      x: randomInput([N, C, H, H], F32, 5),
      u: {
        dtype: F32,
        dims: [N, heads * C],
        data: Float64Array.from({ length: N * heads * C }, (_, i) => 0.1 + (0.8 * ((i * 5) % 24)) / 23),
      },
      input: randomInput([hidden, C, 1, 1], F32, 6),
    };
    const signs = gate.straightThrough.map((v) => v.name);
    const st = await straightThroughGradient(b.model, signs, feeds, 'input', false);
    const sur = await surrogate(b.model, signs, feeds);
    // A step of 3e-2: the float32 loss's rounding swamps smaller ones here (3e-3: 3% off, 1e-2: 1.5%).
    const check = await gradCheck(sur, ['input'], feeds, { eps: 3e-2, directions: 3 });
    expect(check.input).toBeLessThan(1e-2);
    const reference = await surrogateGradient(sur, feeds, 'input', false);
    st.forEach((g, k) => expect(g).toBeCloseTo(reference[k]!, 4));
    expect(st.some((g) => Math.abs(g) > 1e-3)).toBe(true);
  });
});

describe('where MSGC gates go', () => {
  it('on every residual block, gating its spatial convs; nowhere in a network without one', () => {
    const { blocks, refused } = gatePlacements(resnetTiny());
    expect(blocks.length).toBe(3);
    for (const block of blocks) expect(block.convs.map((n) => n.input(1).constValue!.dims[2])).toEqual([3, 3]);
    expect(refused).toEqual([]);
    const vgg = gatePlacements(loadModel(path.join(PROJECT_ROOT, 'fixtures/models/fmnist-vgg.onnx')));
    expect(vgg.blocks).toEqual([]);
  });
});

describe('the heads conv', () => {
  async function outputs(heads: number | undefined, masks: Float64Array) {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', [2, 4, 6, 6], F32);
    const m = b.input('m', [2, 12], F32);
    const w = b.initializer(
      'w',
      Tensor.float32([6, 4, 3, 3], Float32Array.from(randomInput([6, 4, 3, 3], F32, 9).data)),
    );
    const y = b.op('Conv', [x, w], { pads: [1, 1, 1, 1] });
    b.output(y);
    const conv = y.producer!;
    if (heads) emitHeadsConv(new Emitter(b.graph, 17, 'heads'), conv, m, heads);
    b.graph.sort();
    const session = await createSession(b.model, { optimization: 'disabled' });
    const feeds: Record<string, Input> = {
      x: randomInput([2, 4, 6, 6], F32, 10),
      m: { dtype: F32, dims: [2, 12], data: masks },
    };
    const out = await run(session, feedsOf(feeds));
    await session.release();
    return Object.values(out)[0]!.data as Float32Array;
  }

  it('computes the dense conv with every mask open, and drops a masked channel from its head only', async () => {
    const dense = await outputs(undefined, new Float64Array(24));
    const open = await outputs(3, new Float64Array(24).fill(1));
    open.forEach((v, i) => expect(v).toBeCloseTo(dense[i]!, 5));
    // Head 0 of sample 0 loses input channel 1: only filters 0–1 of sample 0 change.
    const masks = new Float64Array(24).fill(1);
    masks[1] = 0;
    const cut = await outputs(3, masks);
    const plane = 36;
    const changed = (n: number, o: number) =>
      cut
        .slice((n * 6 + o) * plane, (n * 6 + o + 1) * plane)
        .some((v, i) => Math.abs(v - open[(n * 6 + o) * plane + i]!) > 1e-6);
    expect([0, 1, 2, 3, 4, 5].map((o) => changed(0, o))).toEqual([true, true, false, false, false, false]);
    expect([0, 1, 2, 3, 4, 5].some((o) => changed(1, o))).toBe(false);
  });
});
