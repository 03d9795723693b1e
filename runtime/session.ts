/**
 * onnxruntime-node sessions: from a Model, bytes or a file, on a chosen execution provider,
 * with thread count and optimisation level, and a way to expose intermediate values as
 * extra outputs (for shape checks, calibration and layer-wise comparison).
 */
import * as ort from 'onnxruntime-node';
import { RegroupError } from '../compiler/errors.js';
import { encodeModel } from '../compiler/onnx/encode.js';
import type { Model } from '../compiler/ir/model.js';
import { DataType, dtypeName, type TypedArray } from '../compiler/ir/dtype.js';
import type { Value } from '../compiler/ir/node.js';
import { checkProvider, type ExecutionProvider } from './providers.js';

export interface SessionOptions {
  ep?: ExecutionProvider;
  /** Intra-op threads (0 = onnxruntime's default). */
  threads?: number;
  /** 'disabled' for numeric checks, 'all' (default) for latency. */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Record onnxruntime's per-node profile under this file prefix (runtime/profile.ts). */
  profile?: string;
  /**
   * false: intra-op threads sleep as soon as their work is done instead of spinning for more
   * (onnxruntime's session.intra_op.allow_spinning = 0) — for sessions that take turns with
   * others in one process, whose spinning threads would take the cores from them.
   */
  spinning?: boolean;
}

export type Feeds = Record<string, ort.Tensor>;
export type Outputs = Record<string, ort.Tensor>;

/** Create a session; `source` is a Model (emitted on the fly), model bytes, or a file path. */
export async function createSession(
  source: Model | Uint8Array | string,
  options: SessionOptions = {},
): Promise<ort.InferenceSession> {
  const ep = options.ep ?? 'cpu';
  checkProvider(ep);
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: [ep],
    graphOptimizationLevel: options.optimization ?? 'all',
    intraOpNumThreads: options.threads ?? 0,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    ...(options.profile ? { enableProfiling: true, profileFilePrefix: options.profile } : {}),
    ...(options.spinning === false ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
  };
  const input = isModel(source) ? encodeModel(source).bytes : source;
  try {
    return typeof input === 'string'
      ? await ort.InferenceSession.create(input, sessionOptions)
      : await ort.InferenceSession.create(input, sessionOptions);
  } catch (err) {
    const where = typeof input === 'string' ? input : 'model';
    const message = firstLine(err);
    if (ep === 'webgpu' && /adapter/i.test(message)) {
      throw new RegroupError(
        'provider',
        `no WebGPU adapter on this machine (onnxruntime: ${message.replace(/^.*?(Failed to get)/, '$1')}); the webgpu provider needs a GPU with Vulkan drivers (libvulkan.so.1); use --ep cpu`,
      );
    }
    throw new RegroupError('runtime', `onnxruntime (${ep}) could not load ${where}: ${message}`);
  }
}

/** Run a session, wrapping onnxruntime failures in a RegroupError. */
export async function run(session: ort.InferenceSession, feeds: Feeds, fetches?: readonly string[]): Promise<Outputs> {
  try {
    return fetches ? await session.run(feeds, fetches as string[]) : await session.run(feeds);
  } catch (err) {
    throw new RegroupError('runtime', `onnxruntime failed to run the model: ${firstLine(err)}`);
  }
}

/**
 * Run a model with chosen intermediate values exposed as extra outputs. The model is not
 * changed: its graph outputs are extended only for the emitted copy.
 */
export async function runWithIntermediates(
  model: Model,
  feeds: Feeds,
  values: readonly Value[],
  options: SessionOptions = {},
): Promise<Outputs> {
  const session = await createSessionWithOutputs(model, values, options);
  try {
    return await run(session, feeds);
  } finally {
    await session.release();
  }
}

/**
 * A session whose outputs are the model's own plus chosen intermediate values, for
 * streaming statistics over many batches (one session, many runs). The model is not
 * changed; the extra outputs exist only in the emitted copy.
 */
export async function createSessionWithOutputs(
  model: Model,
  values: readonly Value[],
  options: SessionOptions = {},
): Promise<ort.InferenceSession> {
  const outputs = model.graph.outputs;
  const saved = [...outputs];
  const extra = values.filter((v) => !saved.includes(v) && !v.isGraphInput() && !v.isInitializer());
  const savedTypes = extra.map((v) => v.type);
  try {
    for (const v of extra) v.type = undefined;
    outputs.push(...extra);
    return await createSession(encodeModel(model).bytes, { optimization: 'disabled', ...options });
  } finally {
    outputs.length = 0;
    outputs.push(...saved);
    extra.forEach((v, i) => (v.type = savedTypes[i]));
  }
}

const ORT_TYPES: Partial<Record<DataType, ort.Tensor.Type>> = {
  [DataType.FLOAT]: 'float32',
  [DataType.DOUBLE]: 'float64',
  [DataType.FLOAT16]: 'float16',
  [DataType.INT8]: 'int8',
  [DataType.UINT8]: 'uint8',
  [DataType.INT16]: 'int16',
  [DataType.UINT16]: 'uint16',
  [DataType.INT32]: 'int32',
  [DataType.UINT32]: 'uint32',
  [DataType.INT64]: 'int64',
  [DataType.UINT64]: 'uint64',
  [DataType.BOOL]: 'bool',
};

/** onnxruntime's name for an ONNX element type. */
export function ortType(dtype: DataType): ort.Tensor.Type {
  const t = ORT_TYPES[dtype];
  if (!t)
    throw new RegroupError('unsupported', `element type ${dtypeName(dtype)} cannot be fed to onnxruntime from regroup`);
  return t;
}

/** An ORT tensor from a typed array (float16 as its Uint16 bit patterns). */
export function toOrtTensor(dtype: DataType, dims: readonly number[], data: TypedArray): ort.Tensor {
  return new ort.Tensor(ortType(dtype), data as never, dims as number[]);
}

export function isModel(x: unknown): x is Model {
  return typeof x === 'object' && x !== null && 'graph' in x && 'opsetImports' in x;
}

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err)
    .split('\n')[0]!
    .trim();
}

export { ort };
