/** protobufjs gives int64 fields as Long objects (or numbers); these helpers widen them. */
import { RegroupError } from '../errors.js';

export interface LongLike {
  low: number;
  high: number;
  unsigned: boolean;
  toNumber(): number;
  toString(): string;
}

export type Int64 = number | LongLike;

/** An int64 as a number; values past ±2^53 are rounded (callers that need exactness keep the proto). */
export function toNumber(value: Int64 | null | undefined): number {
  if (value === null || value === undefined) return 0;
  return typeof value === 'number' ? value : value.toNumber();
}

/** An int64 that must be exact as a number (dims, offsets); throws otherwise. */
export function toExactNumber(value: Int64 | null | undefined, what: string): number {
  const n = toNumber(value);
  if (!Number.isSafeInteger(n))
    throw new RegroupError(
      'bad-model',
      `${what} is ${typeof value === 'object' && value ? value.toString() : n}, which is not a usable integer`,
    );
  return n;
}

export function toBigInt(value: Int64): bigint {
  if (typeof value === 'number') return BigInt(value);
  const low = BigInt(value.low >>> 0);
  if (value.unsigned) return (BigInt(value.high >>> 0) << 32n) | low;
  return (BigInt(value.high) << 32n) + low;
}
