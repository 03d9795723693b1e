/**
 * ONNX element types (TensorProto.DataType) and how regroup holds their elements in memory.
 * float16/bfloat16 and the 8-bit floats keep their bit patterns (Uint16Array / Uint8Array);
 * the 4-bit types stay packed two to a byte, exactly as ONNX stores them.
 */
export enum DataType {
  UNDEFINED = 0,
  FLOAT = 1,
  UINT8 = 2,
  INT8 = 3,
  UINT16 = 4,
  INT16 = 5,
  INT32 = 6,
  INT64 = 7,
  STRING = 8,
  BOOL = 9,
  FLOAT16 = 10,
  DOUBLE = 11,
  UINT32 = 12,
  UINT64 = 13,
  COMPLEX64 = 14,
  COMPLEX128 = 15,
  BFLOAT16 = 16,
  FLOAT8E4M3FN = 17,
  FLOAT8E4M3FNUZ = 18,
  FLOAT8E5M2 = 19,
  FLOAT8E5M2FNUZ = 20,
  UINT4 = 21,
  INT4 = 22,
  FLOAT4E2M1 = 23,
  FLOAT8E8M0 = 24,
  UINT2 = 25,
  INT2 = 26,
}

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

type ArrayCtor = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray;
  new (length: number): TypedArray;
  BYTES_PER_ELEMENT: number;
};

interface DTypeInfo {
  /** ORT / readable name. */
  readonly name: string;
  /** Bits per element as stored in raw_data. */
  readonly bits: number;
  /** The typed array that holds the stored elements (bit patterns for half and 8-bit floats). */
  readonly array: ArrayCtor | undefined;
  /** Elements per stored array entry (2 for complex types, whose parts are interleaved). */
  readonly lanes: number;
}

const info = (name: string, bits: number, array: ArrayCtor | undefined, lanes = 1): DTypeInfo => ({
  name,
  bits,
  array,
  lanes,
});

const TABLE: Record<number, DTypeInfo> = {
  [DataType.FLOAT]: info('float32', 32, Float32Array),
  [DataType.UINT8]: info('uint8', 8, Uint8Array),
  [DataType.INT8]: info('int8', 8, Int8Array),
  [DataType.UINT16]: info('uint16', 16, Uint16Array),
  [DataType.INT16]: info('int16', 16, Int16Array),
  [DataType.INT32]: info('int32', 32, Int32Array),
  [DataType.INT64]: info('int64', 64, BigInt64Array as unknown as ArrayCtor),
  [DataType.STRING]: info('string', 0, undefined),
  [DataType.BOOL]: info('bool', 8, Uint8Array),
  [DataType.FLOAT16]: info('float16', 16, Uint16Array),
  [DataType.DOUBLE]: info('float64', 64, Float64Array),
  [DataType.UINT32]: info('uint32', 32, Uint32Array),
  [DataType.UINT64]: info('uint64', 64, BigUint64Array as unknown as ArrayCtor),
  [DataType.COMPLEX64]: info('complex64', 64, Float32Array, 2),
  [DataType.COMPLEX128]: info('complex128', 128, Float64Array, 2),
  [DataType.BFLOAT16]: info('bfloat16', 16, Uint16Array),
  [DataType.FLOAT8E4M3FN]: info('float8e4m3fn', 8, Uint8Array),
  [DataType.FLOAT8E4M3FNUZ]: info('float8e4m3fnuz', 8, Uint8Array),
  [DataType.FLOAT8E5M2]: info('float8e5m2', 8, Uint8Array),
  [DataType.FLOAT8E5M2FNUZ]: info('float8e5m2fnuz', 8, Uint8Array),
  [DataType.UINT4]: info('uint4', 4, Uint8Array),
  [DataType.INT4]: info('int4', 4, Uint8Array),
  [DataType.FLOAT4E2M1]: info('float4e2m1', 4, Uint8Array),
  [DataType.FLOAT8E8M0]: info('float8e8m0', 8, Uint8Array),
  [DataType.UINT2]: info('uint2', 2, Uint8Array),
  [DataType.INT2]: info('int2', 2, Uint8Array),
};

/** Facts about an element type; throws for numbers ONNX does not define. */
export function dtypeInfo(dtype: DataType): DTypeInfo {
  const found = TABLE[dtype];
  if (!found) throw new RangeError(`unknown ONNX data type ${dtype}`);
  return found;
}

export function isKnownDType(dtype: number): dtype is DataType {
  return TABLE[dtype] !== undefined;
}

export function dtypeName(dtype: DataType): string {
  return TABLE[dtype]?.name ?? `dtype(${dtype})`;
}

/** Bytes needed to store `count` elements (packed sub-byte types round up). */
export function storageBytes(dtype: DataType, count: number): number {
  const { bits } = dtypeInfo(dtype);
  return Math.ceil((bits * count) / 8);
}

/** True for the floating-point types whose values regroup can compute with (fp32/fp64/fp16/bf16). */
export function isFloat(dtype: DataType): boolean {
  return (
    dtype === DataType.FLOAT || dtype === DataType.DOUBLE || dtype === DataType.FLOAT16 || dtype === DataType.BFLOAT16
  );
}
