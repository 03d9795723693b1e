/**
 * Reading values as constants: initializers, and outputs of `Constant` nodes (some
 * exporters, paddle2onnx among them, store every weight that way).
 */
import { AttrType } from './attribute.js';
import { DataType } from './dtype.js';
import type { Value } from './node.js';
import { Tensor } from './tensor.js';

/** The constant tensor behind a value (through Identity nodes), or undefined when it is computed at run time. */
export function constantOf(value: Value | undefined): Tensor | undefined {
  if (!value) return undefined;
  // An initializer that is also listed as a graph input (IR < 4 requires it) is a default
  // the caller may override; regroup treats the stored tensor as the model's weight.
  if (value.constValue) return value.constValue;
  const node = value.producer;
  if (node?.opType === 'Identity' && node.domain === '') return constantOf(node.inputs[0]);
  if (node?.opType !== 'Constant' || node.domain !== '') return undefined;
  for (const a of node.attributes.values()) {
    switch (a.type) {
      case AttrType.TENSOR:
        return a.value;
      case AttrType.FLOAT:
        return Tensor.fromArray(DataType.FLOAT, [], Float32Array.of(a.value));
      case AttrType.FLOATS:
        return Tensor.fromArray(DataType.FLOAT, [a.value.length], Float32Array.from(a.value));
      case AttrType.INT:
        return Tensor.int64([], [a.value]);
      case AttrType.INTS:
        return Tensor.int64([a.value.length], a.value);
      default:
        break;
    }
  }
  return undefined;
}

/** A constant's elements as plain numbers (int64 converted), or undefined. */
export function constantNumbers(value: Value | undefined): number[] | undefined {
  return constantOf(value)?.toNumbers();
}
