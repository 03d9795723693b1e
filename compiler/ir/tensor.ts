/**
 * Tensor: an ONNX constant (initializer, Constant node value, tensor attribute).
 * Elements live either as little-endian raw bytes (how ONNX files usually store them) or as
 * a typed array; each view is made lazily from the other, zero-copy when the raw bytes are
 * aligned for the element type. `storage` remembers which TensorProto field the data came
 * from so an unchanged tensor is written back the same way.
 */
import { DataType, dtypeInfo, storageBytes, type TypedArray } from './dtype.js';
import type { WireShape } from './wire-shape.js';

/** Which TensorProto field holds the elements when encoded. */
export type TensorStorage = 'raw' | 'typed';

/** Where an external tensor's bytes were read from (kept for reporting and reference). */
export interface ExternalRef {
  readonly location: string;
  readonly offset: number;
  readonly length: number;
  /** Other key/value pairs from external_data (checksum, …), kept in order. */
  readonly extra: readonly (readonly [string, string])[];
}

/**
 * Bytes a tensor reads on first use instead of holding from the start (external data that
 * stays in its file until a pass needs the values).
 */
export interface ByteSource {
  readonly byteLength: number;
  /** The file the bytes come from, so a writer can refuse to overwrite it while it is read. */
  readonly file: string;
  /** A fresh copy of the bytes; the caller owns it. */
  read(): Uint8Array;
  /** Whether `bytes` still equal the source's (compared piece by piece, without a second full copy). */
  matches(bytes: Uint8Array): boolean;
}

export interface TensorInit {
  name?: string;
  docString?: string;
  metadataProps?: [string, string][];
  storage?: TensorStorage;
  external?: ExternalRef;
  /** Opaque TensorProto.segment, passed through. */
  segment?: unknown;
  /** How the decoded TensorProto wrote its fields (presence, unknown fields). */
  wire?: WireShape;
}

export class Tensor {
  readonly dtype: DataType;
  readonly dims: readonly number[];
  name: string;
  docString: string | undefined;
  metadataProps: [string, string][] | undefined;
  storage: TensorStorage;
  external: ExternalRef | undefined;
  segment: unknown;
  /** How the decoded TensorProto wrote its fields; a tensor made by withData starts without one. */
  wire: WireShape | undefined;
  #raw: Uint8Array | undefined;
  #data: TypedArray | undefined;
  #strings: Uint8Array[] | undefined;
  /** Where the bytes are read from while neither #raw nor #data holds them. */
  #source: ByteSource | undefined;

  private constructor(dtype: DataType, dims: readonly number[], init: TensorInit) {
    this.dtype = dtype;
    this.dims = Object.freeze([...dims]);
    this.name = init.name ?? '';
    this.docString = init.docString;
    this.metadataProps = init.metadataProps;
    this.storage = init.storage ?? 'raw';
    this.external = init.external;
    this.segment = init.segment;
    this.wire = init.wire;
  }

  /** A tensor over little-endian bytes as stored in raw_data (not copied). */
  static fromRaw(dtype: DataType, dims: readonly number[], raw: Uint8Array, init: TensorInit = {}): Tensor {
    const t = new Tensor(dtype, dims, { storage: 'raw', ...init });
    const expected = storageBytes(dtype, t.size);
    if (raw.byteLength !== expected) {
      throw new RangeError(
        `tensor '${t.name}': ${raw.byteLength} bytes of data for ${dims.join('×') || 'scalar'} ${dtypeInfo(dtype).name} (expected ${expected})`,
      );
    }
    t.#raw = raw;
    return t;
  }

  /** A tensor whose bytes are read from `source` when first needed, then kept (see release()). */
  static fromSource(dtype: DataType, dims: readonly number[], source: ByteSource, init: TensorInit = {}): Tensor {
    const t = new Tensor(dtype, dims, { storage: 'raw', ...init });
    const expected = storageBytes(dtype, t.size);
    if (source.byteLength !== expected) {
      throw new RangeError(
        `tensor '${t.name}': ${source.byteLength} bytes in ${source.file} for ${dims.join('×') || 'scalar'} ${dtypeInfo(dtype).name} (expected ${expected})`,
      );
    }
    t.#source = source;
    return t;
  }

  /** A tensor over a typed array of stored elements (bit patterns for half floats). */
  static fromArray(dtype: DataType, dims: readonly number[], data: TypedArray, init: TensorInit = {}): Tensor {
    const t = new Tensor(dtype, dims, init);
    const { array, lanes, bits } = dtypeInfo(dtype);
    const expected = bits < 8 ? storageBytes(dtype, t.size) : t.size * lanes;
    if (!array || data.length !== expected) {
      throw new RangeError(
        `tensor '${t.name}': ${data.length} elements for shape [${dims.join(',')}] of ${dtypeInfo(dtype).name} (expected ${expected})`,
      );
    }
    t.#data = data;
    return t;
  }

  /** A STRING tensor (UTF-8 bytes per element). */
  static fromStrings(dims: readonly number[], strings: Uint8Array[], init: TensorInit = {}): Tensor {
    const t = new Tensor(DataType.STRING, dims, { ...init, storage: 'typed' });
    t.#strings = strings;
    return t;
  }

  static float32(dims: readonly number[], data: Float32Array | number[], name = ''): Tensor {
    return Tensor.fromArray(DataType.FLOAT, dims, data instanceof Float32Array ? data : Float32Array.from(data), {
      name,
    });
  }

  static int64(dims: readonly number[], data: readonly (number | bigint)[], name = ''): Tensor {
    return Tensor.fromArray(
      DataType.INT64,
      dims,
      BigInt64Array.from(data, (v) => BigInt(v)),
      { name },
    );
  }

  /** Number of elements. */
  get size(): number {
    let n = 1;
    for (const d of this.dims) n *= d;
    return n;
  }

  get byteLength(): number {
    return this.dtype === DataType.STRING
      ? (this.#strings ?? []).reduce((s, b) => s + b.byteLength, 0)
      : storageBytes(this.dtype, this.size);
  }

  /** Stored elements as a typed array (zero-copy over aligned raw bytes). */
  get data(): TypedArray {
    if (this.#data) return this.#data;
    this.#load();
    if (!this.#raw) throw new TypeError(`tensor '${this.name}' of type string has no numeric data`);
    const { array, bits } = dtypeInfo(this.dtype);
    if (!array) throw new TypeError(`tensor '${this.name}' of type string has no numeric data`);
    const raw = this.#raw;
    if (bits <= 8) {
      // Always a plain view: raw may be a Node Buffer, whose slice() aliases instead of copying.
      this.#data = new array(raw.buffer, raw.byteOffset, raw.byteLength);
    } else {
      const length = raw.byteLength / array.BYTES_PER_ELEMENT;
      const aligned = raw.byteOffset % array.BYTES_PER_ELEMENT === 0;
      // Copy into a fresh buffer: on a Node Buffer, slice() is a view at the same unaligned offset.
      const bytes = aligned ? raw : new Uint8Array(raw);
      this.#data = new array(bytes.buffer, bytes.byteOffset, length);
      // From now on the typed array is the one copy: writes to it must reach rawBytes().
      if (!aligned) this.#raw = undefined;
    }
    return this.#data;
  }

  /** The elements of a STRING tensor. */
  get strings(): Uint8Array[] {
    if (!this.#strings) throw new TypeError(`tensor '${this.name}' is not a string tensor`);
    return this.#strings;
  }

  /** Little-endian bytes as raw_data holds them (zero-copy where possible). */
  rawBytes(): Uint8Array {
    if (this.#raw) return this.#raw;
    this.#load();
    if (this.#raw) return this.#raw;
    const data = this.data;
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }

  /** Whether the elements are in memory (false for a tensor still waiting on its ByteSource). */
  get loaded(): boolean {
    return this.#source === undefined || this.#raw !== undefined || this.#data !== undefined;
  }

  /** The file a not-yet-loaded tensor would read its bytes from. */
  get sourceFile(): string | undefined {
    return this.loaded ? undefined : this.#source?.file;
  }

  /**
   * Raw bytes for a caller that reads them once and lets go (writing a file): a tensor not
   * yet loaded reads a copy and keeps none, so streaming a model out holds one tensor at a time.
   */
  streamBytes(): Uint8Array {
    return this.loaded ? this.rawBytes() : this.#source!.read();
  }

  /**
   * Drop elements read from the ByteSource when they still equal it, so the next use reads
   * them again; returns whether they were dropped. Elements that were written to stay. Call it
   * only when no one holds `data` or `rawBytes()` to write to later (between passes): a write
   * to an array the tensor has let go of would be lost.
   */
  release(): boolean {
    if (!this.#source || !this.loaded) return false;
    if (!this.#source.matches(this.rawBytes())) return false;
    this.#raw = undefined;
    this.#data = undefined;
    return true;
  }

  #load(): void {
    if (this.#raw === undefined && this.#data === undefined && this.#source) this.#raw = this.#source.read();
  }

  /** Elements widened to numbers (float16/bfloat16 decoded, int64 converted); a new array. */
  toNumbers(): number[] {
    return Array.from(this.toFloat64());
  }

  /** Elements as float64 (float16/bfloat16 decoded); a new array. */
  toFloat64(): Float64Array {
    const data = this.data;
    if (this.dtype === DataType.FLOAT16) return Float64Array.from(data as Uint16Array, halfToFloat);
    if (this.dtype === DataType.BFLOAT16) return Float64Array.from(data as Uint16Array, bfloatToFloat);
    if (data instanceof BigInt64Array || data instanceof BigUint64Array) return Float64Array.from(data, Number);
    return Float64Array.from(data as ArrayLike<number>);
  }

  /**
   * A deep copy: same dtype, dims, name, metadata and storage form, over a copy of the
   * elements (raw bytes stay raw bytes, so the copy encodes to the same TensorProto).
   */
  clone(): Tensor {
    const t = new Tensor(this.dtype, this.dims, {
      name: this.name,
      docString: this.docString,
      metadataProps: this.metadataProps?.map(([key, value]) => [key, value]),
      storage: this.storage,
      external: this.external,
      segment: this.segment,
      wire: this.wire,
    });
    // new Uint8Array(bytes) copies; a Node Buffer's slice() would alias.
    if (this.#raw) t.#raw = new Uint8Array(this.#raw);
    else if (this.#data) t.#data = this.#data instanceof Uint8Array ? new Uint8Array(this.#data) : this.#data.slice();
    if (this.#strings) t.#strings = this.#strings.map((bytes) => new Uint8Array(bytes));
    // Reading the source again gives the copy its own bytes; release() keeps that true.
    t.#source = this.#source;
    return t;
  }

  /** A new tensor with the same name and metadata over other elements. */
  withData(dims: readonly number[], data: TypedArray): Tensor {
    return Tensor.fromArray(this.dtype, dims, data, {
      name: this.name,
      docString: this.docString,
      metadataProps: this.metadataProps,
      storage: this.storage === 'typed' ? 'typed' : 'raw',
    });
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half bits → number. */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** number → IEEE half bits, round to nearest even. */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    let half = mantissa >> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const midpoint = 1 << (shift - 1);
    if (rest > midpoint || (rest === midpoint && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mantissa >> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++;
  return sign | half;
}

export function bfloatToFloat(bits: number): number {
  u32[0] = bits << 16;
  return f32[0]!;
}
