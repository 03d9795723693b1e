/**
 * Field presence across decode → IR → encode. The decoder records each message's WireShape
 * (the singular scalar fields it wrote with their default value, those it left out, the
 * fields the schema does not know); the encoder builds the message from the IR and then
 * `applyShape` takes the recorded presence wherever the built and the recorded message agree.
 *
 * Only the presence of default values is ever changed, and never for a oneof member (whose
 * presence is its meaning: `dim_value: 0` is not an unknown dimension), so a shape that no
 * longer matches its IR object (a pass renamed the node, bumped an opset) cannot change what
 * the message says. Decoded protos passed through whole are exact already and left alone.
 */
import protobuf from 'protobufjs';
import type { WireShape } from '../ir/wire-shape.js';

// biome-ignore lint/suspicious/noExplicitAny: decoded protobufjs messages and plain objects in their layout
type P = any;

/**
 * Nested messages that each type's encoder rebuilds from the same IR object, so their shape
 * is recorded with it. Other message fields hold IR objects with shapes of their own (nodes,
 * tensors, graphs) or decoded protos written back as they are (functions, segments, …).
 */
const NESTED: Readonly<Record<string, readonly string[]>> = {
  '.onnx.ModelProto': ['opset_import', 'metadata_props'],
  '.onnx.GraphProto': ['metadata_props'],
  '.onnx.NodeProto': ['metadata_props'],
  '.onnx.TensorProto': ['metadata_props'],
  '.onnx.ValueInfoProto': ['type', 'metadata_props'],
  '.onnx.TypeProto': ['tensor_type'],
  '.onnx.TypeProto.Tensor': ['shape'],
  '.onnx.TensorShapeProto': ['dim'],
};

const has = (m: P, field: string): boolean => m != null && Object.hasOwn(m, field);

const singularCache = new Map<protobuf.Type, protobuf.Field[]>();

/** A type's singular fields outside any oneof: those whose presence is not part of their value. */
function presenceFields(type: protobuf.Type): protobuf.Field[] {
  let fields = singularCache.get(type);
  if (!fields) {
    fields = type.fieldsArray.filter((f) => !f.repeated && !f.map && !f.partOf);
    singularCache.set(type, fields);
  }
  return fields;
}

const isMessage = (field: protobuf.Field): boolean => field.resolve().resolvedType instanceof protobuf.Type;

function messageType(type: protobuf.Type, name: string): protobuf.Type {
  const resolved = type.fields[name]?.resolve().resolvedType;
  if (!(resolved instanceof protobuf.Type))
    throw new Error(`internal: ${type.fullName}.${name} is not a message field`);
  return resolved;
}

/** Whether a scalar field holds its type's default: '' , empty bytes, or a zero that is not -0. */
function isDefault(field: protobuf.Field, value: P): boolean {
  if (isMessage(field)) return false;
  if (value == null) return true;
  if (field.type === 'string') return value === '';
  if (field.type === 'bytes') return value.length === 0;
  if (typeof value === 'object') return value.low === 0 && value.high === 0;
  if (typeof value === 'string') return value === '0';
  return Object.is(value, 0);
}

function defaultOf(field: protobuf.Field): P {
  if (field.type === 'string') return '';
  if (field.type === 'bytes') return new Uint8Array(0);
  return 0;
}

/** Shapes without nested parts or unknown fields repeat endlessly (every node of a file alike): share them. */
const interned = new Map<string, WireShape>();

/** The WireShape of a decoded message of `type`. */
export function shapeOf(type: protobuf.Type, message: P): WireShape {
  const explicit: string[] = [];
  const omitted: string[] = [];
  for (const field of presenceFields(type)) {
    if (!has(message, field.name)) omitted.push(field.name);
    else if (!isMessage(field) && isDefault(field, message[field.name])) explicit.push(field.name);
  }
  const unknown: Uint8Array[] | undefined = has(message, '$unknowns') ? message.$unknowns : undefined;
  const nested: Record<string, WireShape | readonly WireShape[]> = {};
  for (const name of NESTED[type.fullName] ?? []) {
    if (!has(message, name)) continue;
    const child = messageType(type, name);
    const value = message[name];
    if (Array.isArray(value)) {
      if (value.length) nested[name] = Object.freeze(value.map((m) => shapeOf(child, m)));
    } else nested[name] = shapeOf(child, value);
  }
  const shape: WireShape = {
    ...(explicit.length ? { explicit: Object.freeze(explicit) } : {}),
    ...(omitted.length ? { omitted: Object.freeze(omitted) } : {}),
    ...(unknown?.length ? { unknown: Object.freeze([...unknown]) } : {}),
    ...(Object.keys(nested).length ? { nested: Object.freeze(nested) } : {}),
  };
  if (shape.unknown || shape.nested) return Object.freeze(shape);
  const key = `${type.fullName}|${explicit.join(',')}|${omitted.join(',')}`;
  return interned.get(key) ?? interned.set(key, Object.freeze(shape)).get(key)!;
}

/**
 * Give a message the encoder built (a plain object, changed in place and returned) the field
 * presence and unknown fields of the message it was decoded from.
 */
export function applyShape<T>(type: protobuf.Type, built: T, shape: WireShape | undefined): T {
  if (!shape) return built;
  const m = built as P;
  for (const name of shape.explicit ?? []) if (m[name] == null) m[name] = defaultOf(type.fields[name]!);
  for (const name of shape.omitted ?? []) if (has(m, name) && isDefault(type.fields[name]!, m[name])) delete m[name];
  if (shape.unknown) setUnknown(m, shape.unknown);
  for (const [name, sub] of Object.entries(shape.nested ?? {})) {
    const child = messageType(type, name);
    const value = m[name];
    if (Array.isArray(sub)) {
      if (Array.isArray(value) && value.length === sub.length)
        value.forEach((element, index) => rebuilt(element) && applyShape(child, element, sub[index]));
    } else if (rebuilt(value)) applyShape(child, value, sub as WireShape);
  }
  return built;
}

/** A plain object the encoder made, as opposed to a decoded message written back whole. */
function rebuilt(value: P): boolean {
  return value != null && typeof value === 'object' && !(value instanceof protobuf.Message);
}

/** Attach raw unknown field records; protobufjs writes them after the known fields. */
export function setUnknown(message: P, records: readonly Uint8Array[]): void {
  Object.defineProperty(message, '$unknowns', {
    value: [...records],
    enumerable: false,
    writable: true,
    configurable: true,
  });
}

/** The unknown field records a message carries, if any. */
export function unknownOf(message: P): readonly Uint8Array[] | undefined {
  return has(message, '$unknowns') && message.$unknowns.length ? message.$unknowns : undefined;
}

/** Whether a decoded message left `field` out. */
export function wasOmitted(shape: WireShape | undefined, field: string): boolean {
  return shape?.omitted?.includes(field) ?? false;
}

/** A reader that keeps the fields the schema does not know, so they can be written back. */
export function keepingReader(bytes: Uint8Array): protobuf.Reader {
  const reader = protobuf.Reader.create(bytes);
  reader.discardUnknown = false;
  return reader;
}
