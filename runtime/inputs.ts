/**
 * Seeded inputs for a model's graph inputs: normal noise for float inputs (float16 as bit
 * patterns), small non-negative integers for integer inputs. Symbolic dimensions take the
 * batch size when they lead the shape, or a value given by name.
 */
import { RegroupError } from '../compiler/errors.js';
import { DataType, dtypeName, type TypedArray } from '../compiler/ir/dtype.js';
import type { Model } from '../compiler/ir/model.js';
import type { Dim, Value } from '../compiler/ir/node.js';
import { floatToHalf } from '../compiler/ir/tensor.js';
import { Random } from '../compiler/util/random.js';
import { toOrtTensor, type Feeds } from './session.js';

export interface InputOptions {
  seed?: number;
  /** Value for a leading symbolic (batch) dimension; default 1. */
  batch?: number;
  /** Explicit shapes by input name (override the declared ones). */
  shapes?: Record<string, readonly number[]>;
  /** Values for other symbolic dimensions by name. */
  dims?: Record<string, number>;
}

/** The inputs a caller must feed: graph inputs that are not initializers. */
export function feedInputs(model: Model): Value[] {
  return model.graph.inputs.filter((v) => !v.isInitializer());
}

/** Concrete shape of an input, resolving symbolic dims. */
export function concreteShape(input: Value, options: InputOptions = {}): number[] {
  const given = options.shapes?.[input.name];
  if (given) return [...given];
  const shape = input.type?.shape;
  if (!shape)
    throw new RegroupError(
      'usage',
      `input '${input.name}' has no declared shape; pass --input-shape ${input.name}=1x3x224x224`,
    );
  return shape.map((d: Dim, axis) => {
    if (typeof d === 'number' && d > 0) return d;
    if (typeof d === 'string' && options.dims?.[d] !== undefined) return options.dims[d]!;
    if (axis === 0) return options.batch ?? 1;
    throw new RegroupError(
      'usage',
      `input '${input.name}' dimension ${axis} ('${d ?? '?'}') is unknown; pass --input-shape ${input.name}=${shape.map((x) => (typeof x === 'number' ? x : 'N')).join('x')}`,
    );
  });
}

/** Seeded random feeds for every graph input. */
export function randomFeeds(model: Model, options: InputOptions = {}): Feeds {
  const random = new Random(options.seed ?? 0);
  const feeds: Feeds = {};
  for (const input of feedInputs(model)) {
    const dims = concreteShape(input, options);
    const count = dims.reduce((a, b) => a * b, 1);
    const dtype = input.type?.dtype ?? DataType.FLOAT;
    feeds[input.name] = toOrtTensor(dtype, dims, randomData(dtype, count, random, input.name));
  }
  return feeds;
}

function randomData(dtype: DataType, count: number, random: Random, name: string): TypedArray {
  switch (dtype) {
    case DataType.FLOAT:
      return random.normals(count);
    case DataType.DOUBLE:
      return Float64Array.from(random.normals(count));
    case DataType.FLOAT16:
      return Uint16Array.from(random.normals(count), floatToHalf);
    case DataType.INT64:
      return BigInt64Array.from({ length: count }, () => BigInt(random.int(4)));
    case DataType.INT32:
      return Int32Array.from({ length: count }, () => random.int(4));
    case DataType.UINT8:
      return Uint8Array.from({ length: count }, () => random.int(256));
    case DataType.INT8:
      return Int8Array.from({ length: count }, () => random.int(256) - 128);
    case DataType.BOOL:
      return Uint8Array.from({ length: count }, () => random.int(2));
    default:
      throw new RegroupError(
        'unsupported',
        `input '${name}' has type ${dtypeName(dtype)}, which regroup cannot generate data for`,
      );
  }
}
