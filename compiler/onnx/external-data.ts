/**
 * External data: tensors whose bytes live in side files next to the model
 * (TensorProto.data_location = EXTERNAL, external_data = location/offset/length[/checksum]).
 * A location may only name a file inside the model's directory: absolute paths, `..`
 * segments and links that lead out are refused, because a model file is untrusted input.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RegroupError } from '../errors.js';

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
  readonly #files = new Map<string, { fd: number; size: number }>();

  constructor(baseDir: string) {
    this.#baseDir = path.resolve(baseDir);
    this.#realBase = fs.realpathSync(this.#baseDir);
  }

  read(span: ExternalSpan, tensorName: string, expectedBytes: number): Uint8Array {
    const file = this.#open(span.location, tensorName);
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
    const bytes = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(file.fd, bytes, done, length - done, span.offset + done);
      if (n === 0)
        throw new RegroupError('external-data', `tensor '${tensorName}': unexpected end of '${span.location}'`);
      done += n;
    }
    return bytes;
  }

  close(): void {
    for (const { fd } of this.#files.values()) fs.closeSync(fd);
    this.#files.clear();
  }

  #open(location: string, tensorName: string): { fd: number; size: number } {
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
    const entry = { fd, size: fs.fstatSync(fd).size };
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

/** Collects tensor bytes for one side file, each span aligned for mmap-friendly loading. */
export class ExternalDataWriter {
  readonly location: string;
  readonly chunks: Uint8Array[] = [];
  #size = 0;
  static readonly ALIGN = 4096;

  constructor(location: string) {
    this.location = location;
  }

  get size(): number {
    return this.#size;
  }

  /** Append bytes; returns the span to write into external_data. */
  add(bytes: Uint8Array): { offset: number; length: number } {
    const pad = (ExternalDataWriter.ALIGN - (this.#size % ExternalDataWriter.ALIGN)) % ExternalDataWriter.ALIGN;
    if (pad) this.chunks.push(new Uint8Array(pad));
    const offset = this.#size + pad;
    this.chunks.push(bytes);
    this.#size = offset + bytes.byteLength;
    return { offset, length: bytes.byteLength };
  }
}
