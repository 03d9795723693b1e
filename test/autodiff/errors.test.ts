/**
 * What the autodiff pass refuses and what it must leave alone: an op without a gradient
 * rule on the path is a typed 'unsupported' error naming the node and op (one off the
 * path is fine); a non-scalar loss is a usage error; old-opset models are raised to opset
 * 17 with the same outputs (onnxruntime, optimisations disabled, float64: equal to 1e-12
 * relative); an opset-18 model (ReduceMean axes as an input) differentiates correctly.
 */
import { describe, expect, it } from 'vitest';
import { gradientModel } from '../../compiler/autodiff/gradients.js';
import { ensureOpset } from '../../compiler/autodiff/opset.js';
import { RegroupError } from '../../compiler/errors.js';
import { attr } from '../../compiler/ir/attribute.js';
import { GraphBuilder, floatAttr } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { toOrtTensor } from '../../runtime/session.js';
import { expectSameOutputs, outputsOf } from '../passes/compare.js';
import { gradCheck, projectionLoss, randomInput } from './gradcheck.js';

const F64 = DataType.DOUBLE;

function chain(second: string, wrtReachesIt: boolean) {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', [2, 3], F64);
  const w = b.input('w', [3, 3], F64);
  const y = b.op('MatMul', [x, w], {}, 'matmul');
  const odd = b.op(second, [wrtReachesIt ? y : x], {}, 'odd_op');
  b.output(projectionLoss(b.graph, b.op('Add', [y, odd]), [2, 3], F64));
  return b.model;
}

describe('refusals', () => {
  it('an op without a rule on the path names the node and op type', () => {
    let caught: unknown;
    try {
      gradientModel(chain('Sin', true), { loss: 'loss', wrt: ['w'] });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RegroupError);
    expect((caught as RegroupError).code).toBe('unsupported');
    expect((caught as RegroupError).message).toMatch(/odd_op \(Sin\).*no gradient rule for Sin/);
  });

  it('an op without a rule off the path is left alone', async () => {
    const errors = await gradCheck(
      chain('Sin', false),
      ['w'],
      { x: randomInput([2, 3], F64, 1), w: randomInput([3, 3], F64, 2) },
      { eps: 1e-6 },
    );
    expect(errors.w).toBeLessThanOrEqual(1e-5);
  });

  it('a non-scalar loss is a usage error', () => {
    const b = new GraphBuilder({ opset: 17 });
    const y = b.graph.addNode('Relu', [b.input('x', [2, 3], F64)], { outputs: ['loss'] }).output(0);
    b.output(y);
    expect(() => gradientModel(b.model, { loss: 'loss', wrt: ['x'] })).toThrow(/scalar loss/);
  });

  it('an unknown value name is a usage error', () => {
    expect(() => gradientModel(chain('Relu', true), { loss: 'loss', wrt: ['nope'] })).toThrow(/'nope' is not in graph/);
  });
});

describe('opset upgrade keeps the forward meaning', () => {
  async function expectSameAfterUpgrade(
    model: ReturnType<typeof chain>,
    feeds: Record<string, ReturnType<typeof toOrtTensor>>,
  ) {
    const upgraded = model.clone().model;
    ensureOpset(upgraded, 17);
    expect(upgraded.opset('')).toBe(17);
    upgraded.graph.verify();
    expectSameOutputs(await outputsOf(model, feeds), await outputsOf(upgraded, feeds), { rtol: 1e-12 });
    return upgraded;
  }

  it('opset 11: Split, Squeeze, Unsqueeze, ReduceSum attributes and a Softmax that flattens at axis 1', async () => {
    const b = new GraphBuilder({ opset: 11 });
    const x = b.input('x', [2, 4, 3, 3], F64);
    const [left, right] = b.ops('Split', [x], 2, { axis: 1, split: [1, 3] });
    const squeezed = b.op('Unsqueeze', [b.op('Squeeze', [left!], { axes: [1] })], { axes: [1] });
    const summed = b.op('ReduceSum', [right!], { axes: [1], keepdims: 1 });
    const soft = b.op('Softmax', [x], { axis: 1 });
    b.output(b.op('Add', [squeezed, summed]));
    b.output(soft);
    const upgraded = await expectSameAfterUpgrade(b.model, {
      x: toOrtTensor(F64, [2, 4, 3, 3], randomInput([2, 4, 3, 3], F64, 3).data),
    });
    expect(upgraded.graph.nodeList().map((n) => n.opType)).toContain('Flatten');
  });

  it('opset 9: Clip, Pad and Slice attributes, Dropout ratio', async () => {
    const b = new GraphBuilder({ opset: 9 });
    const x = b.input('x', [2, 3, 4], DataType.FLOAT);
    const clipped = b.op('Clip', [x], { min: floatAttr(-0.5), max: floatAttr(0.7) });
    const padded = b.op('Pad', [clipped], { pads: [0, 1, 0, 0, 0, 2], value: floatAttr(0.25) });
    const sliced = b.op('Slice', [padded], { starts: [1, 0], ends: [5, 3], axes: [1, 2] });
    b.output(b.op('Dropout', [sliced], { ratio: floatAttr(0.3) }));
    await expectSameAfterUpgrade(b.model, {
      x: toOrtTensor(DataType.FLOAT, [2, 3, 4], Float32Array.from(randomInput([2, 3, 4], F64, 4).data)),
    });
  });

  it('an opset-18 model (ReduceMean axes as input) with training BatchNormalization differentiates', async () => {
    const b = new GraphBuilder({ opset: 18 });
    const x = b.input('x', [3, 2, 4, 4], F64);
    const stat = (name: string, v: number) => b.initializer(name, Tensor.fromArray(F64, [2], Float64Array.of(v, v)));
    const y = b.graph
      .addNode(
        'BatchNormalization',
        [x, b.input('gamma', [2], F64), b.input('beta', [2], F64), stat('m', 0), stat('v', 1)],
        { attributes: [attr.float('epsilon', 1e-3)] },
      )
      .output(0);
    const pooled = b.op('ReduceMean', [b.op('Mul', [y, y]), b.ints('axes', [2, 3])], { keepdims: 0 });
    b.output(projectionLoss(b.graph, pooled, [3, 2], F64));
    const inputs = {
      x: randomInput([3, 2, 4, 4], F64, 5),
      gamma: randomInput([2], F64, 6),
      beta: randomInput([2], F64, 7),
    };
    const errors = await gradCheck(b.model, ['x', 'gamma', 'beta'], inputs, { eps: 1e-4, trainingBatchNorm: true });
    for (const error of Object.values(errors)) expect(error).toBeLessThanOrEqual(1e-5);
  });
});
