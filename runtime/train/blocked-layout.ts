/**
 * Whether the step graph's convolutions run in onnxruntime's blocked (NCHWc) kernels
 * (compiler/autodiff/blocked-conv.ts), and at which block size.
 *
 * The block size is the CPU's (8 floats with AVX2, 16 with AVX-512) and is read from
 * onnxruntime itself, once per process: ReorderInput pads a 4-channel tensor to one block. A
 * build or CPU without the blocked kernels (the op missing, or blocks under 8) trains with
 * plain convolutions, as does REGROUP_TRAIN_LAYOUT=plain (for comparisons, or to rule the
 * blocked kernels out when something looks wrong).
 */
import { NCHWC_DOMAIN } from '../../compiler/autodiff/blocked-conv.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { createSession, ort, run, type SessionOptions } from '../session.js';

export type TrainLayout = 'blocked' | 'plain';

let probed: Promise<number> | undefined;

/** onnxruntime's NCHWc block size on this CPU, or 0 when its blocked kernels are not there. */
export function nchwcBlockSize(): Promise<number> {
  probed ??= probe();
  return probed;
}

async function probe(): Promise<number> {
  try {
    const b = new GraphBuilder({ opset: 17 });
    b.model.opsetImports.push({ domain: NCHWC_DOMAIN, version: 1 });
    const x = b.input('x', [1, 4, 1, 1]);
    b.output(b.node('ReorderInput', [x], {}, { domain: NCHWC_DOMAIN }).output(0), { dtype: DataType.FLOAT });
    const session = await createSession(b.model, { optimization: 'disabled', threads: 1 });
    try {
      const out = await run(session, { x: new ort.Tensor('float32', new Float32Array(4), [1, 4, 1, 1]) });
      const channels = Number(Object.values(out)[0]!.dims[1]);
      return channels >= 8 ? channels : 0;
    } finally {
      await session.release();
    }
  } catch {
    return 0;
  }
}

/**
 * The layout a step graph trains in with these session options: blocked on the CPU provider
 * where the kernels exist, unless asked for plain (option or REGROUP_TRAIN_LAYOUT=plain).
 */
export async function trainLayout(
  options: SessionOptions & { layout?: TrainLayout },
): Promise<{ layout: TrainLayout; block: number }> {
  const asked = options.layout ?? (process.env.REGROUP_TRAIN_LAYOUT === 'plain' ? 'plain' : 'blocked');
  if (asked === 'plain' || (options.ep ?? 'cpu') !== 'cpu') return { layout: 'plain', block: 0 };
  const block = await nchwcBlockSize();
  return block > 0 ? { layout: 'blocked', block } : { layout: 'plain', block: 0 };
}
