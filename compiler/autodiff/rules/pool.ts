/**
 * Gradients of pooling.
 *
 *   MaxPool            ∂x = ScatterElements(0[N·C·H·W], Indices, ∂y, reduction = add)
 *                      — Indices (the node's second output, exposed by prepare.ts) index the
 *                      flattened input; 'add' sums the gradient of a maximum that several
 *                      overlapping windows picked.
 *   AveragePool        ∂x = ConvTranspose_group=C(∂y / count, 1[C, 1, k…]) where count is the
 *                      divisor of each output: ∏k with count_include_pad (windows clipped to
 *                      the padded input, as onnxruntime clips ceil-mode windows), else the
 *                      number of real input elements under the window.
 *   GlobalAveragePool  ∂x = broadcast(∂y) / (H·W)   (H·W from Size ratios when not static).
 */
import { attr } from '../../ir/attribute.js';
import { floatTensor } from '../emitter.js';
import type { GradientRule } from './context.js';
import { reshapeLike, staticTail } from './helpers.js';
import { transposeGeometry, windowOf, type Window } from './window.js';

const maxPool: GradientRule = (c) => {
  if (c.node.getInt('storage_order', 0) !== 0)
    c.unsupported('MaxPool with storage_order = 1 (column-major indices) is not supported');
  const x = c.node.input(0);
  const flat = c.e.int64([-1]);
  const zeros = c.e.reshape(c.e.zerosLike(x, c.dtype(x)), flat);
  const indices = c.e.reshape(c.node.output(1), flat);
  const scattered = c.e.op(
    'ScatterElements',
    [zeros, indices, c.e.reshape(c.grad(0)!, flat)],
    [attr.int('axis', 0), attr.string('reduction', 'add')],
  );
  return [reshapeLike(c, scattered, x)];
};

const averagePool: GradientRule = (c) => {
  const x = c.node.input(0);
  const kernel = c.node.getInts('kernel_shape');
  if (!kernel) return c.unsupported('AveragePool has no kernel_shape');
  const window = windowOf(c, x, c.node.output(0), kernel);
  const channels = staticTail(c, x, 1)[0]!;
  const dtype = c.dtype(x);
  const counts = windowCounts(window, c.node.getInt('count_include_pad', 0) === 1);
  const scale = c.e.floats(
    [1, 1, ...window.outSize],
    counts.map((n) => 1 / n),
    dtype,
  );
  const ones = c.e.constant(`ones:${dtype}:${channels}:${kernel.join('x')}`, () =>
    floatTensor(
      dtype,
      [channels, 1, ...kernel],
      new Float64Array(channels * kernel.reduce((p, k) => p * k, 1)).fill(1),
    ),
  );
  const { pads, outputPadding } = transposeGeometry(window);
  return [
    c.e.op(
      'ConvTranspose',
      [c.e.mul(c.grad(0)!, scale), ones],
      [
        attr.ints('kernel_shape', kernel),
        attr.ints('strides', window.strides),
        attr.ints('dilations', window.dilations),
        attr.ints('pads', pads),
        attr.ints('output_padding', outputPadding),
        attr.int('group', channels),
      ],
    ),
  ];
};

/** Divisor of each output position (row-major over the output grid). */
function windowCounts(w: Window, includePad: boolean): number[] {
  const perAxis = w.kernel.map((k, a) => {
    const low = includePad ? -w.padsBegin[a]! : 0;
    const high = includePad ? w.inSize[a]! + w.padsEnd[a]! : w.inSize[a]!;
    return Array.from({ length: w.outSize[a]! }, (_, o) => {
      let n = 0;
      for (let tap = 0; tap < k; tap++) {
        const at = o * w.strides[a]! - w.padsBegin[a]! + tap * w.dilations[a]!;
        if (at >= low && at < high) n++;
      }
      return n;
    });
  });
  let counts = [1];
  for (const axis of perAxis) counts = counts.flatMap((p) => axis.map((n) => p * n));
  return counts;
}

const globalAveragePool: GradientRule = (c) => {
  const x = c.node.input(0);
  const dtype = c.dtype(x);
  const spatial = c.shape(x).slice(2);
  const area = spatial.every((d): d is number => typeof d === 'number')
    ? c.e.scalar(1 / spatial.reduce((p, d) => p * d, 1), dtype)
    : c.e.div(c.e.cast(c.e.op('Size', [c.node.output(0)]), dtype), c.e.cast(c.e.op('Size', [x]), dtype));
  return [c.e.op('Expand', [c.e.mul(c.grad(0)!, area), c.e.shapeOf(x)])];
};

/** MaxPool's gradient reads its Indices output. */
export const POOL_OUTPUTS: Record<string, () => number> = { MaxPool: () => 2 };

export const POOL_RULES: Record<string, GradientRule> = {
  MaxPool: maxPool,
  AveragePool: averagePool,
  GlobalAveragePool: globalAveragePool,
};
