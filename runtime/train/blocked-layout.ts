/**
 * Whether the step graph's convolutions run in onnxruntime's blocked (NCHWc) kernels
 * (compiler/autodiff/blocked-conv.ts), and at which block size.
 *
 * The block size is the CPU's (8 floats with AVX2, 16 with AVX-512) and is read from
 * onnxruntime itself, once per process: ReorderInput pads a 4-channel tensor to one block.
 * Then a blocked 3×3 Conv and a blocked depthwise one, their weights reordered by blockConvs,
 * must give the plain Convs' output on random data: a build or CPU without the blocked kernels (the op missing,
 * blocks under 8) or whose kernels expect another weight layout trains with plain
 * convolutions, as does REGROUP_TRAIN_LAYOUT=plain (for comparisons, or to rule the blocked
 * kernels out when something looks wrong).
 */
import { blockConvs, NCHWC_DOMAIN } from '../../compiler/autodiff/blocked-conv.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import { Random } from '../../compiler/util/random.js';
import { createSession, ort, run, type SessionOptions } from '../session.js';

export type TrainLayout = 'blocked' | 'plain';

let kernelBlock: Promise<number> | undefined;
let checkedBlock: Promise<number> | undefined;

/** onnxruntime's NCHWc block size on this CPU, or 0 when its blocked kernels are not there. */
export function nchwcKernelBlock(): Promise<number> {
  kernelBlock ??= probeBlock();
  return kernelBlock;
}

/** The block size training uses: nchwcKernelBlock() once a blocked Conv checked out, else 0. */
export function nchwcBlockSize(): Promise<number> {
  checkedBlock ??= nchwcKernelBlock().then(async (block) =>
    block > 0 && (await blockedConvAgrees(block).catch(() => false)) ? block : 0,
  );
  return checkedBlock;
}

async function probeBlock(): Promise<number> {
  try {
    const b = new GraphBuilder({ opset: 17 });
    b.model.opsetImports.push({ domain: NCHWC_DOMAIN, version: 1 });
    const x = b.input('x', [1, 4, 1, 1]);
    b.output(b.node('ReorderInput', [x], {}, { domain: NCHWC_DOMAIN }).output(0), { dtype: DataType.FLOAT });
    const out = await runOnce(b.model, { x: new ort.Tensor('float32', new Float32Array(4), [1, 4, 1, 1]) });
    const block = Number(out[0]!.dims[1]);
    return block >= 8 ? block : 0;
  } catch {
    return 0;
  }
}

/**
 * A 3×3 Conv (2·block → block channels, 5×5, bias) and a depthwise 3×3 Conv after it give the
 * same output plain and blocked, to 1e-4.
 */
async function blockedConvAgrees(block: number): Promise<boolean> {
  const b = new GraphBuilder({ opset: 17, seed: 7 });
  const [c, o] = [2 * block, block];
  const x = b.input('x', [2, c, 5, 5]);
  const w = b.input('w', [o, c, 3, 3]);
  const wd = b.input('wd', [o, 1, 3, 3]);
  const y = b.op('Conv', [x, w, b.weight('bias', [o], 0.5)], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
  const depthwise = b.op('Conv', [y, wd], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], group: o });
  b.output(depthwise, { dtype: DataType.FLOAT });
  const plain = b.model.clone().model;
  if (blockConvs(b.model, block).blocked !== 2) return false;
  const random = new Random(11);
  const feeds = {
    x: new ort.Tensor('float32', random.normals(2 * c * 25), [2, c, 5, 5]),
    w: new ort.Tensor('float32', random.normals(o * c * 9), [o, c, 3, 3]),
    wd: new ort.Tensor('float32', random.normals(o * 9), [o, 1, 3, 3]),
  };
  const [expected, got] = [await runOnce(plain, feeds), await runOnce(b.model, feeds)];
  const [a, z] = [expected[0]!.data as Float32Array, got[0]!.data as Float32Array];
  return a.length === z.length && a.every((v, i) => Math.abs(v - z[i]!) <= 1e-4 * Math.max(1, Math.abs(v)));
}

async function runOnce(model: Model, feeds: Record<string, ort.Tensor>): Promise<ort.Tensor[]> {
  const session = await createSession(model, { optimization: 'disabled', threads: 1 });
  try {
    const out = await run(session, feeds);
    return session.outputNames.map((name) => out[name]!);
  } finally {
    await session.release();
  }
}

/** The layout a step graph trains in: blocked at `block`, or plain and why. */
export type LayoutChoice = { layout: 'blocked'; block: number } | { layout: 'plain'; why: string };

/**
 * The layout a step graph trains in with these session options: blocked on the CPU provider
 * where the kernels exist, unless asked for plain (option or REGROUP_TRAIN_LAYOUT=plain).
 */
export async function trainLayout(options: SessionOptions & { layout?: TrainLayout }): Promise<LayoutChoice> {
  const asked = options.layout ?? (process.env.REGROUP_TRAIN_LAYOUT === 'plain' ? 'plain' : 'blocked');
  if (asked === 'plain') return { layout: 'plain', why: 'as asked' };
  const ep = options.ep ?? 'cpu';
  if (ep !== 'cpu') return { layout: 'plain', why: `the ${ep} provider` };
  const block = await nchwcBlockSize();
  return block > 0
    ? { layout: 'blocked', block }
    : { layout: 'plain', why: "onnxruntime's blocked kernels are not available or did not check out on this CPU" };
}
