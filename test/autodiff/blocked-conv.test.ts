/**
 * Blocked (NCHWc) convolutions in the training step graph (compiler/autodiff/blocked-conv.ts):
 * which Convs the pass rewrites and which it leaves, and — run through onnxruntime — the
 * blocked step graph giving the plain one's loss, logits and updated tensors step after step
 * (a wrong weight layout, a lost bias or a misplaced reorder would change them at 1e-1).
 */
import { describe, expect, it } from 'vitest';
import { blockConvs, NCHWC_DOMAIN } from '../../compiler/autodiff/blocked-conv.js';
import { buildTrainingGraph } from '../../compiler/autodiff/training.js';
import type { TrainingSpec } from '../../compiler/autodiff/types.js';
import { attr } from '../../compiler/ir/attribute.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { nchwcBlockSize, nchwcKernelBlock } from '../../runtime/train/blocked-layout.js';
import { createSession, ort, run, toOrtTensor } from '../../runtime/session.js';
import { Random } from '../../compiler/util/random.js';
import { StepRunner } from '../../runtime/train/step-runner.js';
import { syntheticBatch } from './step.js';

ort.env.logLevel = 'error';

/**
 * 3×12×12 → 10: a 3-input stem (unblocked input), 3×3 and 1×1 convs at a multiple of 16
 * channels with and without bias, a stride-2 conv, a grouped conv, one with 12 outputs (not a
 * block multiple), BatchNormalization and ReLU, a residual Add.
 */
function network(): Model {
  const b = new GraphBuilder({ opset: 17, seed: 5 });
  const x = b.input('x', ['N', 3, 12, 12]);
  const conv = (
    name: string,
    input: Value,
    out: number,
    inC: number,
    k: number,
    extra: Record<string, number | number[]> = {},
    bias = false,
  ) => {
    const group = (extra.group as number | undefined) ?? 1;
    const w = b.weight(`${name}.weight`, [out, inC / group, k, k]);
    const inputs = bias
      ? [input, w, b.initializer(`${name}.bias`, Tensor.float32([out], b.random.normals(out, 0.1)))]
      : [input, w];
    const pad = (k - 1) / 2;
    return b.op('Conv', inputs, { kernel_shape: [k, k], pads: [pad, pad, pad, pad], ...extra }, name);
  };
  const bnRelu = (name: string, input: Value, channels: number) => {
    const bn = b.op(
      'BatchNormalization',
      [
        input,
        b.constant(`${name}.g`, [channels], 1),
        b.constant(`${name}.b`, [channels], 0),
        b.constant(`${name}.m`, [channels], 0),
        b.constant(`${name}.v`, [channels], 1),
      ],
      { epsilon: { float: 1e-5 } },
      name,
    );
    return b.op('Relu', [bn]);
  };
  const stem = bnRelu('stem.bn', conv('stem', x, 16, 3, 3), 16);
  const a = bnRelu('a.bn', conv('a', stem, 16, 16, 3, {}, true), 16);
  const res = b.op('Add', [conv('b', a, 16, 16, 1), stem]);
  const down = bnRelu('down.bn', conv('down', res, 32, 16, 3, { strides: [2, 2] }), 32);
  const depthwise = bnRelu('dw.bn', conv('dw', down, 32, 32, 3, { group: 32 }), 32);
  const grouped = b.op('Relu', [conv('grouped', depthwise, 32, 32, 3, { group: 4 })]);
  const odd = b.op('Relu', [conv('odd', grouped, 12, 32, 3, {}, true)]);
  const pooled = b.op('GlobalAveragePool', [odd]);
  const flat = b.op('Flatten', [pooled], { axis: 1 });
  const w = b.weight('fc.weight', [10, 12], 0.3);
  const logits = b.graph
    .addNode('Gemm', [flat, w, b.constant('fc.bias', [10], 0)], {
      name: 'fc',
      outputs: ['logits'],
      attributes: [attr.int('transB', 1)],
    })
    .output(0);
  b.output(logits, { dtype: DataType.FLOAT, shape: ['N', 10] });
  return b.model;
}

const SPEC: TrainingSpec = {
  loss: { kind: 'cross-entropy' },
  optimizer: { kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
};

describe('blocked convolutions in the step graph', () => {
  it('rewrites the forward and input-gradient Convs the blocked kernel runs, and names why it keeps the others', () => {
    const graph = buildTrainingGraph(network(), SPEC);
    const before = graph.model.graph.nodeList().filter((n) => n.opType === 'Conv').length;
    const summary = blockConvs(graph.model, 16);
    const nodes = graph.model.graph.nodeList();
    const blocked = nodes.filter((n) => n.opType === 'Conv' && n.domain === NCHWC_DOMAIN);
    expect(blocked).toHaveLength(summary.blocked);
    expect(summary.blocked + summary.kept.length).toBe(before);
    // Forward: stem (3 inputs, read unblocked), a, b (1×1), down (stride 2), dw (depthwise);
    // odd has 12 outputs, grouped is grouped (4 groups of 8).
    for (const name of ['stem', 'a', 'b', 'down', 'dw', 'grad/dw/Conv'])
      expect(blocked.some((n) => n.name.startsWith(`${name}/nchwc/`))).toBe(true);
    expect(summary.kept).toContainEqual({ node: 'odd', why: '12 output channels, not a multiple of 16' });
    expect(summary.kept).toContainEqual({ node: 'grouped', why: 'grouped' });
    // the depthwise Convs keep their group, read a blocked input and take an OIHWBo weight
    for (const n of blocked.filter((n) => n.name.startsWith('dw/') || n.name.startsWith('grad/dw/'))) {
      expect(n.getInt('group', 1)).toBe(32);
      expect(n.input(0).producer?.opType).toBe('ReorderInput');
      expect(n.input(1).producer?.input(0).producer?.getInts('perm')).toEqual([0, 2, 3, 4, 1]);
    }
    // Convs with fewer than 16 input channels read them as they are: the stem (3) and the
    // input gradient of `odd` (12 gradient channels in); all others behind a ReorderInput.
    const unblockedInput = blocked.filter((n) => n.input(0).producer?.opType !== 'ReorderInput').map((n) => n.name);
    expect(unblockedInput.sort()).toEqual(['grad/odd/Conv/nchwc/Conv', 'stem/nchwc/Conv']);
    // Input gradients of unit-stride layers (Convs in the gradient) are blocked too.
    expect(blocked.some((n) => n.name.startsWith('grad/'))).toBe(true);
    expect(graph.model.opsetImports).toContainEqual({ domain: NCHWC_DOMAIN, version: 1 });
  });

  it('leaves a model with nothing to block unchanged', () => {
    const graph = buildTrainingGraph(network(), SPEC);
    const summary = blockConvs(graph.model, 64);
    expect(summary.blocked).toBe(0);
    expect(graph.model.opsetImports.some((o) => o.domain === NCHWC_DOMAIN)).toBe(false);
  });

  it('trains step for step like the plain graph through onnxruntime', async (ctx) => {
    const block = await nchwcKernelBlock();
    if (block === 0) {
      console.log('skipped: onnxruntime has no blocked (NCHWc) kernels on this CPU');
      ctx.skip();
    }
    // Training's own check of a blocked Conv passes here, so layout 'blocked' really blocks.
    expect(await nchwcBlockSize()).toBe(block);
    const graph = buildTrainingGraph(network(), SPEC);
    const plain = await StepRunner.create(graph, { optimization: 'all', layout: 'plain' });
    const blocked = await StepRunner.create(graph, { optimization: 'all', layout: 'blocked' });
    try {
      for (let step = 1; step <= 3; step++) {
        const batch = syntheticBatch([8, 3, 12, 12], 10, step);
        const a = await plain.step({ ...batch, lr: 0.05, step });
        const b = await blocked.step({ ...batch, lr: 0.05, step });
        expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5 * Math.max(1, Math.abs(a.loss)));
        expectClose(a.logits.data as Float32Array, b.logits.data as Float32Array, 1e-5);
        const [pa, pb] = [plain.snapshot(), blocked.snapshot()];
        expect(pb.map((t) => t.name)).toEqual(pa.map((t) => t.name));
        pa.forEach((t, i) => expectClose(t.data as Float32Array, pb[i]!.data as Float32Array, 1e-5));
      }
    } finally {
      await Promise.all([plain.release(), blocked.release()]);
    }
  });
});

describe('a step built for its batch: the depthwise weight gradient over batch × channels', () => {
  it('reads the blocked x and ∂y the forward and input-gradient Convs already reorder', () => {
    const graph = buildTrainingGraph(network(), SPEC, { batch: 8, blockedLayout: true });
    blockConvs(graph.model, 16);
    const nodes = graph.model.graph.nodeList();
    const wide = nodes.filter((n) => n.opType === 'Conv' && n.getInt('group', 1) === 8 * 32);
    expect(wide).toHaveLength(1);
    const conv = wide[0]!;
    expect(conv.domain).toBe(NCHWC_DOMAIN);
    // input: Reshape(ReorderInput(x)), the forward depthwise Conv's own ReorderInput
    const [input, weight] = [conv.input(0).producer!, conv.input(1).producer!];
    expect(input.opType).toBe('Reshape');
    expect(weight.opType).toBe('Reshape');
    const forward = nodes.find((n) => n.name === 'dw/nchwc/Conv')!;
    expect(input.input(0)).toBe(forward.input(0));
    // weight: Reshape(ReorderInput(∂y)), shared with the input gradient's Conv (unit stride)
    const inputGradient = nodes.find((n) => n.name.startsWith('grad/dw/') && n.opType === 'Conv' && n !== conv)!;
    expect(inputGradient.domain).toBe(NCHWC_DOMAIN);
    expect(weight.input(0)).toBe(inputGradient.input(0));
    expect(weight.input(0).producer?.opType).toBe('ReorderInput');
    // one ReorderInput per value
    const reordered = nodes.filter((n) => n.opType === 'ReorderInput').map((n) => n.input(0));
    expect(new Set(reordered).size).toBe(reordered.length);
    // no Reshape left without a use
    expect(nodes.filter((n) => n.opType === 'Reshape' && n.output(0).useCount === 0)).toEqual([]);
  });

  it('trains step for step like the plain any-batch graph, other batch sizes included', async (ctx) => {
    const block = await nchwcKernelBlock();
    if (block === 0) {
      console.log('skipped: onnxruntime has no blocked (NCHWc) kernels on this CPU');
      ctx.skip();
    }
    const plain = await StepRunner.create(buildTrainingGraph(network(), SPEC), {
      optimization: 'all',
      layout: 'plain',
    });
    const fixed = await StepRunner.build(network(), SPEC, 8, { optimization: 'all' });
    expect(fixed.graph.batch).toBe(8);
    try {
      // batches of 8 run the fixed-batch step, the one of 5 the any-batch step on the same tensors
      for (const [step, size] of [8, 5, 8, 8].entries()) {
        const batch = syntheticBatch([size, 3, 12, 12], 10, step + 1);
        const a = await plain.step({ ...batch, lr: 0.05, step: step + 1 });
        const b = await fixed.step({ ...batch, lr: 0.05, step: step + 1 });
        expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5 * Math.max(1, Math.abs(a.loss)));
        const [pa, pb] = [plain.snapshot(), fixed.snapshot()];
        expect(pb.map((t) => t.name)).toEqual(pa.map((t) => t.name));
        pa.forEach((t, i) => expectClose(t.data as Float32Array, pb[i]!.data as Float32Array, 1e-5));
      }
      const probe = syntheticBatch([3, 3, 12, 12], 10, 9);
      expectClose(
        (await plain.forward(probe.data, probe.labels)).data as Float32Array,
        (await fixed.forward(probe.data, probe.labels)).data as Float32Array,
        1e-5,
      );
    } finally {
      await Promise.all([plain.release(), fixed.release()]);
    }
  });

  it('a runner made for one batch size says so when given another and no way to build one', async () => {
    const graph = buildTrainingGraph(network(), SPEC, { batch: 8 });
    const runner = await StepRunner.create(graph, { optimization: 'disabled', layout: 'plain' });
    try {
      const batch = syntheticBatch([4, 3, 12, 12], 10, 1);
      await expect(runner.step({ ...batch, lr: 0.05, step: 1 })).rejects.toThrow(/batches of exactly 8; got 4/);
    } finally {
      await runner.release();
    }
  });
});

describe('a blocked Conv equals the plain one for every geometry the kernel takes', () => {
  const CASES: {
    name: string;
    c: number;
    o: number;
    k: number;
    attrs: Record<string, number[] | string | number>;
  }[] = [
    { name: 'depthwise 3×3 pads 1, 16 channels', c: 16, o: 16, k: 3, attrs: { group: 16, pads: [1, 1, 1, 1] } },
    { name: 'depthwise 5×5 stride 2, 32 channels', c: 32, o: 32, k: 5, attrs: { group: 32, strides: [2, 2] } },
    {
      name: 'depthwise 3×3 dilation 2, asymmetric pads',
      c: 16,
      o: 16,
      k: 3,
      attrs: { group: 16, dilations: [2, 2], pads: [2, 1, 1, 2] },
    },
    { name: '1×1, 4 inputs (read unblocked)', c: 4, o: 16, k: 1, attrs: {} },
    { name: '1×1 stride 2, 3 inputs', c: 3, o: 8, k: 1, attrs: { strides: [2, 2] } },
    { name: '5×5 pads 2, 1 input', c: 1, o: 8, k: 5, attrs: { pads: [2, 2, 2, 2] } },
    { name: '3×3 SAME_UPPER stride 2', c: 8, o: 16, k: 3, attrs: { auto_pad: 'SAME_UPPER', strides: [2, 2] } },
    { name: '3×3 dilation 2', c: 16, o: 8, k: 3, attrs: { dilations: [2, 2], pads: [2, 2, 2, 2] } },
    {
      name: '7×7 stride 2 pads 3 (an ImageNet stem)',
      c: 3,
      o: 16,
      k: 7,
      attrs: { strides: [2, 2], pads: [3, 3, 3, 3] },
    },
    { name: '3×3, 6 inputs (fewer than a block)', c: 6, o: 8, k: 3, attrs: { pads: [1, 1, 1, 1] } },
  ];
  for (const c of CASES)
    it(c.name, async (ctx) => {
      const block = await nchwcKernelBlock();
      if (block === 0) {
        console.log('skipped: onnxruntime has no blocked (NCHWc) kernels on this CPU');
        ctx.skip();
      }
      const weightDims = [c.o, c.c / ((c.attrs.group as number | undefined) ?? 1), c.k, c.k];
      const make = () => {
        const b = new GraphBuilder({ opset: 17 });
        const [x, w, bias] = [b.input('x', [2, c.c, 11, 11]), b.input('w', weightDims), b.input('b', [c.o])];
        b.output(b.op('Conv', [x, w, bias], { kernel_shape: [c.k, c.k], ...c.attrs }), { dtype: DataType.FLOAT });
        return b.model;
      };
      const blocked = make();
      const summary = blockConvs(blocked, block);
      // 8 outputs are not a multiple of a 16-float block (AVX-512): those stay plain there.
      expect(summary.blocked).toBe(c.o % block === 0 ? 1 : 0);
      const random = new Random(c.k * 31 + c.c);
      const tensor = (dims: number[]) =>
        toOrtTensor(DataType.FLOAT, dims, random.normals(dims.reduce((p, q) => p * q, 1)));
      const feeds = { x: tensor([2, c.c, 11, 11]), w: tensor(weightDims), b: tensor([c.o]) };
      const outputs = async (model: Model) => {
        const session = await createSession(model, { optimization: 'disabled' });
        try {
          return Object.values(await run(session, feeds))[0]!;
        } finally {
          await session.release();
        }
      };
      const [plain, fast] = [await outputs(make()), await outputs(blocked)];
      expect(fast.dims).toEqual(plain.dims);
      expectClose(plain.data as Float32Array, fast.data as Float32Array, 1e-5);
    });
});

/** |a − b| ≤ tol · max(1, max |a|) element by element. */
function expectClose(a: Float32Array, b: Float32Array, tol: number): void {
  expect(b.length).toBe(a.length);
  let scale = 1;
  for (const v of a) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  expect(worst).toBeLessThanOrEqual(tol * scale);
}
