/**
 * onnxruntime as the constant evaluator of passes/prepare.ts: run a model that has no graph
 * inputs once on the CPU, graph optimisations disabled (so each node runs the kernel it runs
 * in the full model), and hand its outputs back as IR tensors with the bytes onnxruntime
 * produced. Outputs of element types regroup does not exchange with onnxruntime are left out.
 */
import { DataType } from '../compiler/ir/dtype.js';
import type { Model } from '../compiler/ir/model.js';
import { Tensor } from '../compiler/ir/tensor.js';
import { createSession, ortType, run } from './session.js';

const EXCHANGED = [
  DataType.FLOAT,
  DataType.DOUBLE,
  DataType.FLOAT16,
  DataType.INT8,
  DataType.UINT8,
  DataType.INT16,
  DataType.UINT16,
  DataType.INT32,
  DataType.UINT32,
  DataType.INT64,
  DataType.UINT64,
  DataType.BOOL,
];
const FROM_ORT = new Map<string, DataType>(EXCHANGED.map((dtype) => [ortType(dtype), dtype]));

/** Every output of `model` (no inputs) as a tensor, by output name. */
export async function evaluateConstants(model: Model): Promise<Map<string, Tensor>> {
  const session = await createSession(model, { optimization: 'disabled', threads: 1 });
  try {
    const outputs = await run(session, {});
    const tensors = new Map<string, Tensor>();
    for (const [name, value] of Object.entries(outputs)) {
      const dtype = FROM_ORT.get(value.type);
      if (dtype === undefined) continue;
      const data = value.data as ArrayBufferView;
      // A copy: the tensor outlives the session, and float16 may come as Float16Array or Uint16Array bits.
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
      tensors.set(name, Tensor.fromRaw(dtype, [...value.dims], bytes));
    }
    return tensors;
  } finally {
    await session.release();
  }
}
