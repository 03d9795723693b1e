/**
 * Reading and writing model files. Writes are atomic (a temporary file in the target folder,
 * then rename), so a failure never leaves a half-written model; an input file is never
 * overwritten unless the caller says so, and a data file the model still reads its weights
 * from never is. External tensors load lazily (external-data.ts), and saving streams the ones
 * nobody loaded straight into the new data file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RegroupError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { decodeModel } from './decode.js';
import { encodeModelChunks, type EncodeOptions } from './encode.js';
import { sourceFiles, type Chunk } from './external-data.js';

/** Protobuf cannot encode a message of 2 GiB or more: larger models keep their weights in a side file. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;

/** Load a model file; external data is checked now and read from beside it when first needed. */
export function loadModel(file: string): Model {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EISDIR'
          ? 'is a folder, not a model file'
          : `cannot be read (${code})`;
    throw new RegroupError('io', `${file} ${why}`);
  }
  return decodeModel(bytes, { baseDir: path.dirname(path.resolve(file)), source: file });
}

export interface SaveOptions {
  /** Write tensors of at least `threshold` bytes (default 1024) to `<out>.data` beside the model. */
  externalData?: boolean | { threshold?: number };
  /** Paths that must not be overwritten (the inputs), unless `force`. */
  protect?: readonly string[];
  force?: boolean;
}

export interface SaveResult {
  bytes: number;
  externalFile?: string;
  externalBytes?: number;
}

/** Encode and write a model atomically. */
export function saveModel(model: Model, file: string, options: SaveOptions = {}): SaveResult {
  const target = path.resolve(file);
  const external = options.externalData ? `${path.basename(target)}.data` : undefined;
  const targets = [target, ...(external ? [path.join(path.dirname(target), external)] : [])];
  if (!options.force) {
    for (const t of targets) {
      for (const p of options.protect ?? []) {
        if (sameFile(t, p))
          throw new RegroupError(
            'usage',
            `refusing to overwrite the input ${p}; choose another output path or pass --force`,
          );
      }
    }
  }
  refuseReadSources(model, targets);
  if (!external) refuseOversize(file, constantBytes(model));
  const threshold = typeof options.externalData === 'object' ? options.externalData.threshold : undefined;
  const encodeOptions: EncodeOptions = external ? { externalData: { location: external, threshold } } : {};
  const encoded = encodeModelChunks(model, encodeOptions);
  refuseOversize(file, encoded.byteLength);
  const result: SaveResult = { bytes: encoded.byteLength };
  if (encoded.externalData) {
    writeAtomic(targets[1]!, encoded.externalData.chunks);
    result.externalFile = targets[1];
    result.externalBytes = encoded.externalData.size;
  }
  writeAtomic(target, encoded.chunks);
  return result;
}

/** A data file the model's tensors are still to be read from cannot be replaced while writing them. */
function refuseReadSources(model: Model, targets: readonly string[]): void {
  for (const source of sourceFiles(model)) {
    const target = targets.find((t) => sameFile(t, source));
    if (target)
      throw new RegroupError(
        'usage',
        `cannot write ${target}: the model's weights are still read from it; write to another path (and move the files after)`,
      );
  }
}

/** Bytes of the main graph's initializers (what an inline file must hold at least). */
function constantBytes(model: Model): number {
  let bytes = 0;
  for (const value of model.graph.initializers.values()) bytes += value.constValue?.byteLength ?? 0;
  return bytes;
}

function refuseOversize(file: string, bytes: number): void {
  if (bytes <= PROTOBUF_LIMIT) return;
  throw new RegroupError(
    'usage',
    `cannot write ${file} as one file: its ${(bytes / 2 ** 30).toFixed(2)} GiB pass protobuf's 2 GiB limit; ` +
      'keep the weights in a side file (regroup convert --external-data)',
  );
}

/**
 * Write chunks to a temporary file beside `file`, then rename over it. A chunk that is not
 * in memory yet is read when its turn comes and let go after, so one is held at a time.
 */
export function writeAtomic(file: string, chunks: readonly Chunk[]): void {
  const dir = path.dirname(file);
  if (!fs.existsSync(dir)) throw new RegroupError('io', `cannot write ${file}: folder ${dir} does not exist`);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'w');
    for (const chunk of chunks) {
      const bytes = chunk instanceof Uint8Array ? chunk : chunk.read();
      let done = 0;
      while (done < bytes.byteLength) done += fs.writeSync(fd, bytes, done, bytes.byteLength - done);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    if (err instanceof RegroupError) throw err;
    throw new RegroupError('io', `cannot write ${file}: ${(err as Error).message}`);
  }
}

function sameFile(a: string, b: string): boolean {
  const ra = path.resolve(a);
  const rb = path.resolve(b);
  if (ra === rb) return true;
  try {
    const sa = fs.statSync(ra);
    const sb = fs.statSync(rb);
    return sa.ino === sb.ino && sa.dev === sb.dev;
  } catch {
    return false;
  }
}
