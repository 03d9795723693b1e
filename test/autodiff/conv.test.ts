/**
 * Conv gradients (∂x via the flipped-kernel Conv at unit strides and ConvTranspose otherwise,
 * or ConvTranspose everywhere; ∂W via patches + MatMul, shifted copies + MatMul, the
 * swapped Conv, or for depthwise layers one Conv over batch × channels; ∂b) against finite
 * differences. The CPU provider has no float64 Conv, so these run in float32 with ε = 1e-2
 * and a random-projection loss (linear in the output, so the differences carry no
 * second-order error): every checked entry and direction within relative error 1e-2.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { AttrInput } from '../../compiler/ir/builder.js';
import { gradientModel } from '../../compiler/autodiff/gradients.js';
import { createSession, run } from '../../runtime/session.js';
import { feedsOf, gradCheck, projectionLoss, randomInput } from './gradcheck.js';

const F32 = DataType.FLOAT;
const TOLERANCE = 1e-2;

interface ConvCase {
  name: string;
  x: number[];
  w: number[];
  bias?: boolean;
  attrs: Record<string, AttrInput>;
  y: number[];
}

const CASES: ConvCase[] = [
  { name: '3×3 pads 1', x: [2, 3, 6, 6], w: [4, 3, 3, 3], bias: true, attrs: { pads: [1, 1, 1, 1] }, y: [2, 4, 6, 6] },
  {
    name: 'group 2, stride 2',
    x: [2, 4, 7, 7],
    w: [6, 2, 3, 3],
    bias: true,
    attrs: { group: 2, strides: [2, 2], pads: [1, 1, 1, 1] },
    y: [2, 6, 4, 4],
  },
  { name: 'depthwise', x: [2, 4, 5, 5], w: [4, 1, 3, 3], attrs: { group: 4, pads: [1, 1, 1, 1] }, y: [2, 4, 5, 5] },
  {
    name: 'depthwise multiplier 2, stride 2',
    x: [2, 3, 7, 7],
    w: [6, 1, 3, 3],
    attrs: { group: 3, strides: [2, 2] },
    y: [2, 6, 3, 3],
  },
  {
    name: 'depthwise 3×3 stride 2 pads 1',
    x: [4, 8, 8, 8],
    w: [8, 1, 3, 3],
    bias: true,
    attrs: { group: 8, strides: [2, 2], pads: [1, 1, 1, 1] },
    y: [4, 8, 4, 4],
  },
  {
    name: 'depthwise 5×5 stride 2 (uncovered rows)',
    x: [2, 4, 11, 9],
    w: [4, 1, 5, 5],
    attrs: { group: 4, strides: [2, 2], pads: [1, 2, 0, 1] },
    y: [2, 4, 4, 4],
  },
  {
    name: 'depthwise 2×3 dilation 2, width stride 2, asymmetric pads',
    x: [2, 4, 7, 8],
    w: [4, 1, 2, 3],
    attrs: { group: 4, dilations: [2, 2], strides: [1, 2], pads: [1, 2, 0, 1] },
    y: [2, 4, 6, 4],
  },
  {
    name: '4×4 stride 2, asymmetric pads',
    x: [2, 3, 8, 8],
    w: [5, 3, 4, 4],
    attrs: { strides: [2, 2], pads: [1, 2, 2, 1] },
    y: [2, 5, 4, 4],
  },
  {
    name: '5×5 stride 3 pads 2',
    x: [2, 3, 9, 9],
    w: [4, 3, 5, 5],
    attrs: { strides: [3, 3], pads: [2, 2, 2, 2] },
    y: [2, 4, 3, 3],
  },
  {
    name: 'dilation 2',
    x: [2, 3, 7, 7],
    w: [4, 3, 3, 3],
    attrs: { dilations: [2, 2], pads: [2, 2, 2, 2] },
    y: [2, 4, 7, 7],
  },
  {
    name: 'asymmetric pads, stride 2 (uncovered rows)',
    x: [2, 3, 6, 7],
    w: [5, 3, 3, 2],
    bias: true,
    attrs: { pads: [0, 1, 2, 0], strides: [2, 3] },
    y: [2, 5, 3, 3],
  },
  {
    name: 'auto_pad SAME_UPPER stride 2',
    x: [2, 2, 6, 5],
    w: [3, 2, 3, 3],
    attrs: { auto_pad: 'SAME_UPPER', strides: [2, 2] },
    y: [2, 3, 3, 3],
  },
  {
    name: 'group 2, 3×2 kernel, width stride 2, asymmetric pads',
    x: [2, 4, 6, 7],
    w: [6, 2, 3, 2],
    attrs: { group: 2, strides: [1, 2], pads: [1, 0, 0, 1] },
    y: [2, 6, 5, 4],
  },
  {
    name: 'dilation 2×1, unequal pads',
    x: [2, 3, 7, 6],
    w: [4, 3, 3, 3],
    bias: true,
    attrs: { dilations: [2, 1], pads: [2, 1, 1, 1] },
    y: [2, 4, 6, 6],
  },
  { name: 'auto_pad SAME_LOWER', x: [2, 2, 5, 5], w: [3, 2, 2, 2], attrs: { auto_pad: 'SAME_LOWER' }, y: [2, 3, 5, 5] },
  { name: 'auto_pad VALID', x: [2, 2, 6, 6], w: [3, 2, 3, 3], attrs: { auto_pad: 'VALID' }, y: [2, 3, 4, 4] },
  { name: '1×1 (no patches)', x: [2, 4, 5, 5], w: [3, 4, 1, 1], bias: true, attrs: {}, y: [2, 3, 5, 5] },
  {
    name: '1×1 stride 2 (projection shortcut)',
    x: [2, 4, 6, 6],
    w: [6, 4, 1, 1],
    attrs: { strides: [2, 2] },
    y: [2, 6, 3, 3],
  },
];

function convModel(c: ConvCase) {
  const b = new GraphBuilder({ opset: 17 });
  const inputs = [b.input('x', c.x, F32), b.input('w', c.w, F32)];
  if (c.bias) inputs.push(b.input('b', [c.w[0]!], F32));
  const y = b.op('Conv', inputs, c.attrs);
  b.output(projectionLoss(b.graph, y, c.y, F32));
  return b.model;
}

type WeightForm = 'auto' | 'patches' | 'shifted' | 'swapped' | 'batch-grouped';

/** Random x, w (and b) for a case, from seeds `seed`, `seed` + 1, `seed` + 2. */
function convInputs(c: ConvCase, seed: number) {
  return {
    x: randomInput(c.x, F32, seed),
    w: randomInput(c.w, F32, seed + 1),
    ...(c.bias ? { b: randomInput([c.w[0]!], F32, seed + 2) } : {}),
  };
}

/** The gradient with respect to `wrt` of a gradient model run by onnxruntime with graph optimisations off. */
async function gradientOf(gm: ReturnType<typeof gradientModel>, inputs: ReturnType<typeof convInputs>, wrt: string) {
  const session = await createSession(gm.model, { optimization: 'disabled' });
  try {
    return (await run(session, feedsOf(inputs)))[gm.gradients.get(wrt)!]!.data as Float32Array;
  } finally {
    await session.release();
  }
}

/** Two formulations agree: max |a − b| ≤ 1e-6 · max |a|. */
function expectSame(a: Float32Array, b: Float32Array): void {
  expect(b.length).toBe(a.length);
  const scale = Math.max(...a.map(Math.abs));
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  expect(worst / scale).toBeLessThanOrEqual(1e-6);
}

async function check(c: ConvCase, convWeightGradient: WeightForm, convInputGradient: 'conv' | 'transpose' = 'conv') {
  const inputs = convInputs(c, 1);
  const wrt = convWeightGradient === 'auto' ? Object.keys(inputs) : ['w'];
  const errors = await gradCheck(convModel(c), wrt, inputs, {
    eps: 1e-2,
    entries: 32,
    options: { convWeightGradient, convInputGradient },
  });
  const variant = `${convWeightGradient === 'auto' ? '' : ` (${convWeightGradient} ∂W)`}${convInputGradient === 'transpose' ? ' (ConvTranspose ∂x)' : ''}`;
  console.log(`[gradcheck] Conv ${c.name}${variant}: ${JSON.stringify(errors)}`);
  for (const error of Object.values(errors)) expect(error).toBeLessThanOrEqual(TOLERANCE);
}

describe('Conv gradient (float32, ε = 1e-2, rel. err ≤ 1e-2)', () => {
  for (const c of CASES) it(c.name, () => check(c, 'auto'));
});

describe('Conv ∂x as ConvTranspose for every stride (the alternative to the flipped-kernel Conv)', () => {
  for (const c of CASES) it(c.name, () => check(c, 'auto', 'transpose'));
});

describe('Conv ∂W by patches everywhere', () => {
  for (const c of CASES) it(c.name, () => check(c, 'patches'));
});

describe('Conv ∂W by shifted copies wherever it applies (2-D, unit height stride)', () => {
  for (const c of CASES) it(c.name, () => check(c, 'shifted'));
});

describe('Conv ∂W as a swapped Conv (the slower alternative, group 1)', () => {
  for (const c of CASES.filter((k) => (k.attrs.group ?? 1) === 1)) it(c.name, () => check(c, 'swapped'));
});

/** A depthwise Conv: one input channel per filter and as many filters as channels. */
const isDepthwise = (c: ConvCase) => c.w[1] === 1 && c.w[0] === c.x[1] && c.attrs.group === c.x[1];

describe('Conv ∂W of depthwise layers as one Conv over batch × channels', () => {
  for (const c of CASES.filter(isDepthwise)) it(c.name, () => check(c, 'batch-grouped'));
});

describe('Conv ∂W over batch × channels equals patches, and when it is taken', () => {
  const weightGradient = async (c: ConvCase, options: { convWeightGradient?: WeightForm; blockedLayout?: boolean }) => {
    const gm = gradientModel(convModel(c), { loss: 'loss', wrt: ['w'], options });
    const pairs = c.x[0]! * c.x[1]!;
    const batchGrouped = gm.model.graph.nodeList().some((n) => n.opType === 'Conv' && n.getInt('group', 1) === pairs);
    return { data: await gradientOf(gm, convInputs(c, 5), 'w'), batchGrouped };
  };
  for (const c of CASES)
    it(c.name, async () => {
      const patches = await weightGradient(c, { convWeightGradient: 'patches' });
      const forced = await weightGradient(c, { convWeightGradient: 'batch-grouped' });
      const blocked = await weightGradient(c, { blockedLayout: true });
      const plain = await weightGradient(c, {});
      const applies = isDepthwise(c) && c.w.length === 4;
      expect(forced.batchGrouped).toBe(applies);
      // the default takes it only for the blocked layout (plain onnxruntime runs it slower),
      // and where batch × channels fill 16-float blocks
      expect(blocked.batchGrouped).toBe(applies && (c.x[0]! * c.x[1]!) % 16 === 0);
      if (c.name === 'depthwise 3×3 stride 2 pads 1') expect(blocked.batchGrouped).toBe(true);
      expect(plain.batchGrouped).toBe(false);
      expect(patches.batchGrouped).toBe(false);
      expectSame(patches.data, forced.data);
    });
  it('needs a static batch: a symbolic one keeps the other forms', async () => {
    const depthwiseConvs = (batch: number | string) => {
      const b = new GraphBuilder({ opset: 17 });
      const y = b.op('Conv', [b.input('x', [batch, 4, 5, 5], F32), b.input('w', [4, 1, 3, 3], F32)], {
        group: 4,
        pads: [1, 1, 1, 1],
      });
      b.output(b.op('ReduceSum', [y], { keepdims: 0 }));
      const gm = gradientModel(b.model, {
        loss: b.model.graph.outputs[0]!.name,
        wrt: ['w'],
        options: { convWeightGradient: 'batch-grouped' },
      });
      return gm.model.graph
        .nodeList()
        .filter((n) => n.opType === 'Conv')
        .map((n) => n.getInt('group', 1));
    };
    expect(depthwiseConvs(2)).toContain(8);
    expect(Math.max(...depthwiseConvs('N'))).toBe(4);
  });
});

describe('Conv ∂W: shifted copies equal patches (graph optimisations off), and which form the default takes', () => {
  const weightGradient = async (c: ConvCase, convWeightGradient: WeightForm) => {
    const gm = gradientModel(convModel(c), { loss: 'loss', wrt: ['w'], options: { convWeightGradient } });
    // the forward Conv, then one patch extraction (none for a plain 1×1) or the two shifted copies
    const convs = gm.model.graph.nodeList().filter((n) => n.opType === 'Conv').length;
    return { data: await gradientOf(gm, convInputs(c, 7), 'w'), shifted: convs === 3 };
  };
  for (const c of CASES)
    it(c.name, async () => {
      const [patches, shifted, auto] = [
        await weightGradient(c, 'patches'),
        await weightGradient(c, 'shifted'),
        await weightGradient(c, 'auto'),
      ];
      const kernel = c.w.slice(2);
      const strides = (c.attrs.strides as number[] | undefined) ?? [1, 1];
      const applies = kernel.length === 2 && strides[0] === 1;
      expect(patches.shifted).toBe(false);
      expect(shifted.shifted).toBe(applies);
      // the default takes the shifted form where its copies are smaller: every square k×k
      // kernel (k ≥ 2) here with O < (k − 1)·C and 'same' height
      const [out, groupIn] = [c.w[0]!, c.w[1]!];
      const inChannels = groupIn * ((c.attrs.group as number | undefined) ?? 1);
      const smaller =
        applies &&
        (kernel[1]! * inChannels + kernel[0]! * out) * c.x[2]! < kernel[0]! * kernel[1]! * inChannels * c.y[2]!;
      expect(auto.shifted).toBe(smaller);
      expectSame(patches.data, shifted.data);
    });
  it('the default takes the shifted form on a 3×3 same-padded layer (16 → 16 channels)', async () => {
    const c: ConvCase = {
      name: '',
      x: [2, 16, 8, 8],
      w: [16, 16, 3, 3],
      attrs: { pads: [1, 1, 1, 1] },
      y: [2, 16, 8, 8],
    };
    expect((await weightGradient(c, 'auto')).shifted).toBe(true);
  });
});

describe('Conv ∂x: the flipped-kernel Conv equals ConvTranspose (graph optimisations off)', () => {
  for (const c of CASES)
    it(c.name, async () => {
      const inputs = convInputs(c, 4);
      const dx = async (convInputGradient: 'conv' | 'transpose') => {
        const gm = gradientModel(convModel(c), { loss: 'loss', wrt: ['x'], options: { convInputGradient } });
        const ops = new Set(gm.model.graph.nodeList().map((n) => n.opType));
        return { data: await gradientOf(gm, inputs, 'x'), ops };
      };
      const [conv, transpose] = [await dx('conv'), await dx('transpose')];
      const unit = ((c.attrs.strides as number[] | undefined) ?? [1]).every((s) => s === 1);
      // Unit-stride layers get the Conv form (no ConvTranspose left); strided ones keep ConvTranspose.
      expect(conv.ops.has('ConvTranspose')).toBe(!unit);
      expect(transpose.ops.has('ConvTranspose')).toBe(true);
      expectSame(transpose.data, conv.data);
    });
});
