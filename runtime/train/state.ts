/**
 * The resume file `<checkpoint>.train-state`: everything a stopped run needs to continue and
 * end bitwise where an uninterrupted run would — the carried tensors of the step model
 * (parameters, optimizer slots, BatchNormalization running statistics), the epoch and update
 * counts, the seed (shuffle and augmentation of epoch e derive from (seed, e)), the history so
 * far and the settings that must not change across a resume.
 *
 * Layout (little-endian): 'RGTS', u32 format version (1), u32 header byte length, the header
 * as UTF-8 JSON, zero padding to a multiple of 8, then each tensor's elements at the header's
 * `offset` (relative to the blob start, each a multiple of 8). Written atomically.
 */
import fs from 'node:fs';
import { RegroupError } from '../../compiler/errors.js';
import type { TypedArray } from '../../compiler/ir/dtype.js';
import { writeAtomic } from '../../compiler/onnx/io.js';
import type { EpochRecord, LossPoint } from './types.js';

const MAGIC = 'RGTS';
const FORMAT_VERSION = 1;

/** Element types a state file stores (onnxruntime's names). */
export type StateElementType = 'float32' | 'float64' | 'int64' | 'int32';

/** One tensor carried between steps, as saved. */
export interface SavedTensor {
  /** Step-model input name. */
  input: string;
  /** Inference initializer or slot name. */
  name: string;
  type: StateElementType;
  dims: number[];
  data: TypedArray;
}

/** Everything a resumed run needs (see the header). */
export interface TrainState {
  /** Epochs completed. */
  epoch: number;
  /** Updates done. */
  step: number;
  seed: number;
  /** Epochs the run was planned for (the schedule's length). */
  epochs: number;
  /** Settings a resume must repeat (batch size, optimizer, loss, …), compared key by key. */
  settings: Record<string, string | number | boolean>;
  history: EpochRecord[];
  lossCurve: LossPoint[];
  tensors: SavedTensor[];
}

interface HeaderTensor {
  input: string;
  name: string;
  type: StateElementType;
  dims: number[];
  offset: number;
  byteLength: number;
}

const ARRAYS: Record<
  StateElementType,
  { new (buffer: ArrayBuffer, offset: number, length: number): TypedArray; BYTES_PER_ELEMENT: number }
> = {
  float32: Float32Array,
  float64: Float64Array,
  int64: BigInt64Array,
  int32: Int32Array,
};

/** The resume file beside a checkpoint. */
export function stateFileFor(checkpoint: string): string {
  return `${checkpoint}.train-state`;
}

/** Write the state atomically. */
export function writeTrainState(file: string, state: TrainState): void {
  const tensors: HeaderTensor[] = [];
  let offset = 0;
  for (const t of state.tensors) {
    tensors.push({ input: t.input, name: t.name, type: t.type, dims: t.dims, offset, byteLength: t.data.byteLength });
    offset += align8(t.data.byteLength);
  }
  const { tensors: _dropped, ...rest } = state;
  const header = Buffer.from(JSON.stringify({ ...rest, tensors }), 'utf8');
  const prefix = Buffer.alloc(12);
  prefix.write(MAGIC, 0, 'latin1');
  prefix.writeUInt32LE(FORMAT_VERSION, 4);
  prefix.writeUInt32LE(header.byteLength, 8);
  const headPad = Buffer.alloc(align8(12 + header.byteLength) - 12 - header.byteLength);
  const chunks: Uint8Array[] = [prefix, header, headPad];
  for (const t of state.tensors) {
    chunks.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    chunks.push(new Uint8Array(align8(t.data.byteLength) - t.data.byteLength));
  }
  writeAtomic(file, chunks);
}

/** Read a state file; errors say which file and what is wrong with it. */
export function readTrainState(file: string): TrainState {
  const bytes = readBytes(file);
  if (bytes.byteLength < 12 || bytes.toString('latin1', 0, 4) !== MAGIC)
    throw corrupt(file, 'it does not start with RGTS');
  const version = bytes.readUInt32LE(4);
  if (version !== FORMAT_VERSION)
    throw corrupt(file, `format version ${version}; this regroup reads version ${FORMAT_VERSION}`);
  const headerBytes = bytes.readUInt32LE(8);
  if (12 + headerBytes > bytes.byteLength) throw corrupt(file, 'the header runs past the end of the file');
  let header: Omit<TrainState, 'tensors'> & { tensors: HeaderTensor[] };
  try {
    header = JSON.parse(bytes.toString('utf8', 12, 12 + headerBytes));
  } catch (err) {
    throw corrupt(file, `the header is not JSON (${(err as Error).message})`);
  }
  const blobStart = align8(12 + headerBytes);
  const tensors = header.tensors.map((t) => readTensor(file, bytes, blobStart, t));
  return { ...header, tensors };
}

function readTensor(file: string, bytes: Buffer, blobStart: number, t: HeaderTensor): SavedTensor {
  const array = ARRAYS[t.type];
  if (!array) throw corrupt(file, `tensor '${t.name}' has unknown element type '${t.type}'`);
  const start = blobStart + t.offset;
  if (start + t.byteLength > bytes.byteLength || t.byteLength % array.BYTES_PER_ELEMENT !== 0)
    throw corrupt(file, `tensor '${t.name}' runs past the end of the file`);
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (count * array.BYTES_PER_ELEMENT !== t.byteLength)
    throw corrupt(file, `tensor '${t.name}' holds ${t.byteLength} bytes for dims [${t.dims.join(',')}]`);
  // Copy into a fresh, aligned buffer owned by the tensor.
  const copy = new Uint8Array(t.byteLength);
  copy.set(bytes.subarray(start, start + t.byteLength));
  return { input: t.input, name: t.name, type: t.type, dims: t.dims, data: new array(copy.buffer, 0, count) };
}

function readBytes(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new RegroupError(
        'usage',
        `--resume: there is no ${file} to resume from; run without --resume first (it is written beside the output after every epoch)`,
      );
    throw new RegroupError('io', `cannot read ${file} (${code})`);
  }
}

function corrupt(file: string, why: string): RegroupError {
  return new RegroupError(
    'bad-data',
    `${file} is not a usable training state: ${why}; delete it and train without --resume`,
  );
}

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/**
 * Settings that differ between a saved state and this run, as `key: saved → now` lines;
 * empty when the run may resume.
 */
export function settingsMismatch(saved: TrainState['settings'], now: TrainState['settings']): string[] {
  const keys = [...new Set([...Object.keys(saved), ...Object.keys(now)])].sort();
  return keys.filter((k) => saved[k] !== now[k]).map((k) => `${k}: ${String(saved[k])} → ${String(now[k])}`);
}
