/**
 * External data: tensors whose bytes live in side files next to the model
 * (TensorProto.data_location = EXTERNAL, external_data = location/offset/length[/checksum]).
 * A location may only name a file inside the model's directory: absolute paths, `..`
 * segments and links that lead out are refused, because a model file is untrusted input.
 *
 * Loading checks every span (path, bounds, length) but reads no bytes: each tensor reads its
 * span when a pass first needs the values (FileSpan, a Tensor ByteSource), and a writer
 * streams tensors nobody loaded from the old file to the new one, one at a time. A model
 * larger than memory can thus be inspected, converted and pruned holding at most its
 * weights once (see README, Large models).
 */
import fs from 'node:fs';
import path from 'node:path';
import { RegroupError } from '../errors.js';
import { AttrType } from '../ir/attribute.js';
import type { Model } from '../ir/model.js';
import type { ByteSource, Tensor } from '../ir/tensor.js';

export interface ExternalSpan {
  location: string;
  offset: number;
  /** undefined: to the end of the file. */
  length: number | undefined;
  extra: [string, string][];
}

/** Parse TensorProto.external_data key/value pairs. */
export function parseExternalData(
  entries: readonly { key?: string; value?: string }[],
  tensorName: string,
): ExternalSpan {
  let location: string | undefined;
  let offset = 0;
  let length: number | undefined;
  const extra: [string, string][] = [];
  for (const { key = '', value = '' } of entries) {
    if (key === 'location') location = value;
    else if (key === 'offset') offset = parseCount(value, 'offset', tensorName);
    else if (key === 'length') length = parseCount(value, 'length', tensorName);
    else extra.push([key, value]);
  }
  if (!location)
    throw new RegroupError(
      'external-data',
      `tensor '${tensorName}' is marked EXTERNAL but has no 'location' entry; re-export the model with its data`,
    );
  return { location, offset, length, extra };
}

function parseCount(text: string, key: string, tensorName: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n))
    throw new RegroupError(
      'external-data',
      `tensor '${tensorName}': external_data ${key} '${text}' is not a byte count`,
    );
  return n;
}

/** Reads external spans relative to one model directory, refusing paths that leave it. */
export class ExternalDataReader {
  readonly #baseDir: string;
  readonly #realBase: string;
  readonly #files = new Map<string, OpenFile>();

  constructor(baseDir: string) {
    this.#baseDir = path.resolve(baseDir);
    this.#realBase = fs.realpathSync(this.#baseDir);
  }

  /** Check a span now and read it when first needed (the file is opened per read). */
  source(span: ExternalSpan, tensorName: string, expectedBytes: number): ByteSource {
    const file = this.#open(span.location, tensorName);
    const length = this.#checkSpan(span, file, tensorName, expectedBytes);
    return new FileSpan(file.path, span.location, span.offset, length, tensorName);
  }

  /** Read a span now. */
  read(span: ExternalSpan, tensorName: string, expectedBytes: number): Uint8Array {
    const file = this.#open(span.location, tensorName);
    const length = this.#checkSpan(span, file, tensorName, expectedBytes);
    return readSpan(file.fd, span.offset, length, () => `tensor '${tensorName}': unexpected end of '${span.location}'`);
  }

  #checkSpan(span: ExternalSpan, file: OpenFile, tensorName: string, expectedBytes: number): number {
    const length = span.length ?? file.size - span.offset;
    if (length !== expectedBytes) {
      throw new RegroupError(
        'external-data',
        `tensor '${tensorName}': external data '${span.location}' gives ${length} bytes but its shape and type need ${expectedBytes}`,
      );
    }
    if (span.offset + length > file.size) {
      throw new RegroupError(
        'external-data',
        `tensor '${tensorName}': bytes ${span.offset}..${span.offset + length} lie past the end of '${span.location}' (${file.size} bytes); the data file is truncated or belongs to another model`,
      );
    }
    return length;
  }

  close(): void {
    for (const { fd } of this.#files.values()) fs.closeSync(fd);
    this.#files.clear();
  }

  #open(location: string, tensorName: string): OpenFile {
    const cached = this.#files.get(location);
    if (cached) return cached;
    const full = this.#resolve(location, tensorName);
    let fd: number;
    try {
      fd = fs.openSync(full, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`;
      throw new RegroupError(
        'external-data',
        `tensor '${tensorName}': external data file '${location}' ${why} (looked in ${this.#baseDir}); keep the data file next to the model`,
      );
    }
    const entry = { fd, size: fs.fstatSync(fd).size, path: full };
    this.#files.set(location, entry);
    return entry;
  }

  #resolve(location: string, tensorName: string): string {
    const refuse = (why: string): never => {
      throw new RegroupError(
        'external-data',
        `tensor '${tensorName}': external data location '${location}' ${why}; only files inside the model's folder are read`,
      );
    };
    if (path.isAbsolute(location) || /^[A-Za-z]:/.test(location)) refuse('is an absolute path');
    if (location.split(/[\\/]/).includes('..')) refuse('climbs out with ..');
    const full = path.resolve(this.#baseDir, location);
    if (!full.startsWith(this.#baseDir + path.sep)) refuse('resolves outside the model folder');
    if (fs.existsSync(full)) {
      const real = fs.realpathSync(full);
      if (!real.startsWith(this.#realBase + path.sep)) refuse(`is a link to ${real}, outside the model folder`);
    }
    return full;
  }
}

interface OpenFile {
  fd: number;
  size: number;
  path: string;
}

/** `length` bytes at `offset` of an open file, read fully (into `into` when given). */
function readSpan(fd: number, offset: number, length: number, short: () => string, into?: Uint8Array): Uint8Array {
  const bytes = into ? into.subarray(0, length) : new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, bytes, done, length - done, offset + done);
    if (n === 0) throw new RegroupError('external-data', short());
    done += n;
  }
  return bytes;
}

/** One tensor's span of a data file, read on demand (a Tensor ByteSource). */
export class FileSpan implements ByteSource {
  /** How much `matches` reads at a time. */
  static readonly PIECE = 16 << 20;

  constructor(
    readonly file: string,
    readonly location: string,
    readonly offset: number,
    readonly byteLength: number,
    readonly tensorName: string,
  ) {}

  read(): Uint8Array {
    return this.#withFile((fd) => readSpan(fd, this.offset, this.byteLength, () => this.#changed('ends early')));
  }

  matches(bytes: Uint8Array): boolean {
    if (bytes.byteLength !== this.byteLength) return false;
    const given = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const buffer = new Uint8Array(Math.min(FileSpan.PIECE, this.byteLength));
    return this.#withFile((fd) => {
      for (let at = 0; at < this.byteLength; at += FileSpan.PIECE) {
        const length = Math.min(FileSpan.PIECE, this.byteLength - at);
        const piece = readSpan(fd, this.offset + at, length, () => this.#changed('ends early'), buffer);
        if (Buffer.compare(piece, given.subarray(at, at + length)) !== 0) return false;
      }
      return true;
    });
  }

  #withFile<T>(use: (fd: number) => T): T {
    let fd: number;
    try {
      fd = fs.openSync(this.file, 'r');
    } catch (err) {
      throw new RegroupError(
        'external-data',
        this.#changed(`cannot be opened (${(err as NodeJS.ErrnoException).code})`),
      );
    }
    try {
      return use(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  #changed(what: string): string {
    return `tensor '${this.tensorName}': its external data file '${this.location}' (${this.file}) ${what} since the model was loaded; keep the data file in place and unchanged while the model is in use`;
  }
}

/** A piece of a file to write: bytes in hand, or bytes read when their turn comes. */
export type Chunk = Uint8Array | { readonly byteLength: number; read(): Uint8Array };

/**
 * Collects tensor bytes for one side file, each span aligned for mmap-friendly loading. A
 * tensor still on disk is queued, not read: it is read when the file is written.
 */
export class ExternalDataWriter {
  readonly location: string;
  readonly chunks: Chunk[] = [];
  #size = 0;
  static readonly ALIGN = 4096;

  constructor(location: string) {
    this.location = location;
  }

  get size(): number {
    return this.#size;
  }

  /** Append bytes; returns the span to write into external_data. */
  add(bytes: Chunk): { offset: number; length: number } {
    const pad = (ExternalDataWriter.ALIGN - (this.#size % ExternalDataWriter.ALIGN)) % ExternalDataWriter.ALIGN;
    if (pad) this.chunks.push(new Uint8Array(pad));
    const offset = this.#size + pad;
    this.chunks.push(bytes);
    this.#size = offset + bytes.byteLength;
    return { offset, length: bytes.byteLength };
  }

  /** Append a tensor's bytes: in hand when loaded, otherwise read from its source at write time. */
  addTensor(tensor: Tensor): { offset: number; length: number } {
    if (tensor.loaded) return this.add(tensor.rawBytes());
    return this.add({ byteLength: tensor.byteLength, read: () => tensor.streamBytes() });
  }
}

/** The main graph's constants: initializers and Constant nodes' values. */
function* constants(model: Model): Generator<Tensor> {
  for (const value of model.graph.initializers.values()) if (value.constValue) yield value.constValue;
  for (const node of model.graph.nodes()) {
    const value = node.opType === 'Constant' ? node.attributes.get('value') : undefined;
    if (value?.type === AttrType.TENSOR) yield value.value;
  }
}

/** Whether any of the model's constants was read from external data (so a rewrite should write it that way too). */
export function usesExternalData(model: Model): boolean {
  for (const tensor of constants(model)) if (tensor.external) return true;
  return false;
}

/**
 * Let go of the bytes constants read from their data files and did not change (Tensor.release):
 * after a read-only pass over every weight, the model holds none of them again. Returns the bytes freed.
 */
export function releaseExternalBytes(model: Model): number {
  let freed = 0;
  for (const tensor of constants(model)) if (tensor.loaded && tensor.release()) freed += tensor.byteLength;
  return freed;
}

/** Data files the model's constants still read from: a writer must not replace them. */
export function sourceFiles(model: Model): Set<string> {
  const files = new Set<string>();
  for (const tensor of constants(model)) {
    const file = tensor.sourceFile;
    if (file) files.add(file);
  }
  return files;
}
