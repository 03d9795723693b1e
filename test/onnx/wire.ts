/**
 * An independent protobuf reader for ONNX files, used as the oracle of the exact round-trip
 * tests. It shares no code with compiler/onnx (no protobufjs): the field table below is
 * written from onnx.proto (IR version 11) by hand.
 *
 * `parseWire` turns a message into the fields it holds, in file order, with presence: a
 * field written with its default value is there, an omitted one is not. Fields the table
 * does not know are kept as raw records. `canonicalBytes` writes a parsed message back the
 * way the reference C++ serializer does (known fields by number, packing as declared,
 * minimal varints, unknown fields last in the order read), so `canonicalBytes(parse(file))`
 * equals the file exactly when the file was written canonically.
 */

type Scalar = 'varint' | 'fixed32' | 'fixed64' | 'bytes';
/** A field: its name and either a scalar kind (packed when declared so) or a message name. */
type FieldSpec = readonly [name: string, kind: Scalar | `packed ${Scalar}` | `.${string}`];

const SSE = '.StringStringEntryProto';
const F = (fields: Record<number, FieldSpec>) => fields;

/** Field number → spec for every message of onnx.proto. */
export const ONNX_FIELDS: Record<string, Record<number, FieldSpec>> = {
  ModelProto: F({
    1: ['ir_version', 'varint'],
    2: ['producer_name', 'bytes'],
    3: ['producer_version', 'bytes'],
    4: ['domain', 'bytes'],
    5: ['model_version', 'varint'],
    6: ['doc_string', 'bytes'],
    7: ['graph', '.GraphProto'],
    8: ['opset_import', '.OperatorSetIdProto'],
    14: ['metadata_props', SSE],
    20: ['training_info', '.TrainingInfoProto'],
    25: ['functions', '.FunctionProto'],
    26: ['configuration', '.DeviceConfigurationProto'],
  }),
  OperatorSetIdProto: F({ 1: ['domain', 'bytes'], 2: ['version', 'varint'] }),
  StringStringEntryProto: F({ 1: ['key', 'bytes'], 2: ['value', 'bytes'] }),
  GraphProto: F({
    1: ['node', '.NodeProto'],
    2: ['name', 'bytes'],
    5: ['initializer', '.TensorProto'],
    10: ['doc_string', 'bytes'],
    11: ['input', '.ValueInfoProto'],
    12: ['output', '.ValueInfoProto'],
    13: ['value_info', '.ValueInfoProto'],
    14: ['quantization_annotation', '.TensorAnnotation'],
    15: ['sparse_initializer', '.SparseTensorProto'],
    16: ['metadata_props', SSE],
  }),
  NodeProto: F({
    1: ['input', 'bytes'],
    2: ['output', 'bytes'],
    3: ['name', 'bytes'],
    4: ['op_type', 'bytes'],
    5: ['attribute', '.AttributeProto'],
    6: ['doc_string', 'bytes'],
    7: ['domain', 'bytes'],
    8: ['overload', 'bytes'],
    9: ['metadata_props', SSE],
    10: ['device_configurations', '.NodeDeviceConfigurationProto'],
  }),
  AttributeProto: F({
    1: ['name', 'bytes'],
    2: ['f', 'fixed32'],
    3: ['i', 'varint'],
    4: ['s', 'bytes'],
    5: ['t', '.TensorProto'],
    6: ['g', '.GraphProto'],
    7: ['floats', 'fixed32'],
    8: ['ints', 'varint'],
    9: ['strings', 'bytes'],
    10: ['tensors', '.TensorProto'],
    11: ['graphs', '.GraphProto'],
    13: ['doc_string', 'bytes'],
    14: ['tp', '.TypeProto'],
    15: ['type_protos', '.TypeProto'],
    20: ['type', 'varint'],
    21: ['ref_attr_name', 'bytes'],
    22: ['sparse_tensor', '.SparseTensorProto'],
    23: ['sparse_tensors', '.SparseTensorProto'],
  }),
  ValueInfoProto: F({
    1: ['name', 'bytes'],
    2: ['type', '.TypeProto'],
    3: ['doc_string', 'bytes'],
    4: ['metadata_props', SSE],
  }),
  TensorProto: F({
    1: ['dims', 'varint'],
    2: ['data_type', 'varint'],
    3: ['segment', '.TensorProto.Segment'],
    4: ['float_data', 'packed fixed32'],
    5: ['int32_data', 'packed varint'],
    6: ['string_data', 'bytes'],
    7: ['int64_data', 'packed varint'],
    8: ['name', 'bytes'],
    9: ['raw_data', 'bytes'],
    10: ['double_data', 'packed fixed64'],
    11: ['uint64_data', 'packed varint'],
    12: ['doc_string', 'bytes'],
    13: ['external_data', SSE],
    14: ['data_location', 'varint'],
    16: ['metadata_props', SSE],
  }),
  'TensorProto.Segment': F({ 1: ['begin', 'varint'], 2: ['end', 'varint'] }),
  SparseTensorProto: F({ 1: ['values', '.TensorProto'], 2: ['indices', '.TensorProto'], 3: ['dims', 'varint'] }),
  TensorShapeProto: F({ 1: ['dim', '.TensorShapeProto.Dimension'] }),
  'TensorShapeProto.Dimension': F({
    1: ['dim_value', 'varint'],
    2: ['dim_param', 'bytes'],
    3: ['denotation', 'bytes'],
  }),
  TypeProto: F({
    1: ['tensor_type', '.TypeProto.Tensor'],
    4: ['sequence_type', '.TypeProto.Sequence'],
    5: ['map_type', '.TypeProto.Map'],
    6: ['denotation', 'bytes'],
    7: ['opaque_type', '.TypeProto.Opaque'],
    8: ['sparse_tensor_type', '.TypeProto.SparseTensor'],
    9: ['optional_type', '.TypeProto.Optional'],
  }),
  'TypeProto.Tensor': F({ 1: ['elem_type', 'varint'], 2: ['shape', '.TensorShapeProto'] }),
  'TypeProto.Sequence': F({ 1: ['elem_type', '.TypeProto'] }),
  'TypeProto.Map': F({ 1: ['key_type', 'varint'], 2: ['value_type', '.TypeProto'] }),
  'TypeProto.Optional': F({ 1: ['elem_type', '.TypeProto'] }),
  'TypeProto.SparseTensor': F({ 1: ['elem_type', 'varint'], 2: ['shape', '.TensorShapeProto'] }),
  'TypeProto.Opaque': F({ 1: ['domain', 'bytes'], 2: ['name', 'bytes'] }),
  TensorAnnotation: F({ 1: ['tensor_name', 'bytes'], 2: ['quant_parameter_tensor_names', SSE] }),
  TrainingInfoProto: F({
    1: ['initialization', '.GraphProto'],
    2: ['algorithm', '.GraphProto'],
    3: ['initialization_binding', SSE],
    4: ['update_binding', SSE],
  }),
  FunctionProto: F({
    1: ['name', 'bytes'],
    4: ['input', 'bytes'],
    5: ['output', 'bytes'],
    6: ['attribute', 'bytes'],
    7: ['node', '.NodeProto'],
    8: ['doc_string', 'bytes'],
    9: ['opset_import', '.OperatorSetIdProto'],
    10: ['domain', 'bytes'],
    11: ['attribute_proto', '.AttributeProto'],
    12: ['value_info', '.ValueInfoProto'],
    13: ['overload', 'bytes'],
    14: ['metadata_props', SSE],
  }),
  DeviceConfigurationProto: F({ 1: ['name', 'bytes'], 2: ['num_devices', 'varint'], 3: ['device', 'bytes'] }),
  NodeDeviceConfigurationProto: F({
    1: ['configuration_id', 'bytes'],
    2: ['sharding_spec', '.ShardingSpecProto'],
    3: ['pipeline_stage', 'varint'],
  }),
  ShardingSpecProto: F({
    1: ['tensor_name', 'bytes'],
    2: ['device', 'varint'],
    3: ['index_to_device_group_map', '.IntIntListEntryProto'],
    4: ['sharded_dim', '.ShardedDimProto'],
  }),
  IntIntListEntryProto: F({ 1: ['key', 'varint'], 2: ['value', 'varint'] }),
  ShardedDimProto: F({ 1: ['axis', 'varint'], 2: ['simple_sharding', '.SimpleShardedDimProto'] }),
  SimpleShardedDimProto: F({ 1: ['dim_value', 'varint'], 2: ['dim_param', 'bytes'], 3: ['num_shards', 'varint'] }),
};

/** A scalar as read: varints and fixed-width numbers as their 64-bit pattern, bytes as bytes. */
export type WireValue = bigint | Uint8Array | WireMessage;

export interface WireMessage {
  readonly type: string;
  /** Known fields that were present, in first-appearance order, each with all its values. */
  readonly fields: Map<number, WireValue[]>;
  /** Unknown field records (tag included), in file order. */
  readonly unknown: Uint8Array[];
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

const wireOf: Record<Scalar, number> = { varint: WIRE_VARINT, fixed32: WIRE_FIXED32, fixed64: WIRE_FIXED64, bytes: 2 };

class Cursor {
  pos = 0;
  constructor(
    readonly bytes: Uint8Array,
    readonly end = bytes.byteLength,
  ) {}

  varint(): bigint {
    let value = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (this.pos >= this.end) throw new Error(`truncated varint at byte ${this.pos}`);
      const b = this.bytes[this.pos++]!;
      value |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asUintN(64, value);
    }
  }

  fixed(width: number): bigint {
    if (this.pos + width > this.end) throw new Error(`truncated fixed${width * 8} at byte ${this.pos}`);
    let value = 0n;
    for (let i = width - 1; i >= 0; i--) value = (value << 8n) | BigInt(this.bytes[this.pos + i]!);
    this.pos += width;
    return value;
  }

  take(length: number): Uint8Array {
    if (this.pos + length > this.end) throw new Error(`length ${length} at byte ${this.pos} runs past the end`);
    const out = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  /** Skip one value of the given wire type (groups are not used by ONNX and are rejected). */
  skip(wire: number): void {
    if (wire === WIRE_VARINT) this.varint();
    else if (wire === WIRE_FIXED64) this.fixed(8);
    else if (wire === WIRE_FIXED32) this.fixed(4);
    else if (wire === WIRE_BYTES) this.take(Number(this.varint()));
    else throw new Error(`unsupported wire type ${wire} at byte ${this.pos}`);
  }
}

/** Parse `bytes` as the ONNX message `type` (default ModelProto). */
export function parseWire(bytes: Uint8Array, type = 'ModelProto'): WireMessage {
  const spec = ONNX_FIELDS[type];
  if (!spec) throw new Error(`no field table for message ${type}`);
  const message: WireMessage = { type, fields: new Map(), unknown: [] };
  const cur = new Cursor(bytes);
  while (cur.pos < cur.end) {
    const start = cur.pos;
    const tag = cur.varint();
    const field = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    const value = readKnown(cur, spec[field], wire);
    if (value === undefined) {
      cur.skip(wire);
      message.unknown.push(bytes.subarray(start, cur.pos));
      continue;
    }
    const list = message.fields.get(field) ?? message.fields.set(field, []).get(field)!;
    list.push(...value);
  }
  return message;
}

/** The values of one known field record, or undefined when the field or its wire type is not the declared one. */
function readKnown(cur: Cursor, spec: FieldSpec | undefined, wire: number): WireValue[] | undefined {
  if (!spec) return undefined;
  const kind = spec[1];
  if (kind.startsWith('.'))
    return wire === WIRE_BYTES ? [parseWire(cur.take(Number(cur.varint())), kind.slice(1))] : undefined;
  const scalar = kind.replace('packed ', '') as Scalar;
  if (wire === wireOf[scalar]) return [readScalar(cur, scalar)];
  // A packed run: accepted for any numeric repeated field, whichever way it was declared.
  if (wire !== WIRE_BYTES || scalar === 'bytes') return undefined;
  const length = Number(cur.varint());
  const run = new Cursor(cur.bytes, cur.pos + length);
  run.pos = cur.pos;
  const values: WireValue[] = [];
  while (run.pos < run.end) values.push(readScalar(run, scalar));
  cur.pos = run.end;
  return values;
}

function readScalar(cur: Cursor, kind: Scalar): WireValue {
  if (kind === 'varint') return cur.varint();
  if (kind === 'fixed32') return cur.fixed(4);
  if (kind === 'fixed64') return cur.fixed(8);
  return cur.take(Number(cur.varint()));
}

/** The bytes the reference serializer writes for a parsed message. */
export function canonicalBytes(message: WireMessage): Uint8Array {
  const sink = new Sink();
  writeMessage(message, sink);
  sink.flush();
  return Buffer.concat(sink.chunks, sink.length);
}

/** Output as a list of chunks: big byte fields are referenced, not copied. */
class Sink {
  readonly chunks: Uint8Array[] = [];
  length = 0;
  #small: number[] = [];

  push(...bytes: number[]): void {
    for (const b of bytes) this.#small.push(b);
  }

  varint(value: bigint): void {
    let v = value;
    while (v >= 0x80n) {
      this.#small.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.#small.push(Number(v));
  }

  bytes(chunk: Uint8Array): void {
    this.flush();
    this.chunks.push(chunk);
    this.length += chunk.byteLength;
  }

  /** Append another sink's output. */
  append(other: Sink): void {
    other.flush();
    this.flush();
    this.chunks.push(...other.chunks);
    this.length += other.length;
  }

  flush(): void {
    if (!this.#small.length) return;
    this.chunks.push(Uint8Array.from(this.#small));
    this.length += this.#small.length;
    this.#small = [];
  }
}

function writeMessage(message: WireMessage, out: Sink): void {
  const spec = ONNX_FIELDS[message.type]!;
  const numbers = [...message.fields.keys()].sort((a, b) => a - b);
  for (const field of numbers) {
    const kind = spec[field]![1];
    const values = message.fields.get(field)!;
    if (kind.startsWith('packed ')) {
      const body = new Sink();
      for (const v of values) writeScalar(v as bigint, kind.slice(7) as Scalar, body);
      writeDelimited(field, body, out);
      continue;
    }
    for (const v of values) {
      if (kind.startsWith('.')) {
        const body = new Sink();
        writeMessage(v as WireMessage, body);
        writeDelimited(field, body, out);
        continue;
      }
      const scalar = kind as Scalar;
      out.varint(BigInt((field << 3) | wireOf[scalar]));
      writeScalar(v as bigint | Uint8Array, scalar, out);
    }
  }
  for (const record of message.unknown) out.bytes(record);
}

function writeDelimited(field: number, body: Sink, out: Sink): void {
  body.flush();
  out.varint(BigInt((field << 3) | WIRE_BYTES));
  out.varint(BigInt(body.length));
  out.append(body);
}

function writeScalar(value: bigint | Uint8Array, kind: Scalar, out: Sink): void {
  if (kind === 'bytes') {
    const bytes = value as Uint8Array;
    out.varint(BigInt(bytes.byteLength));
    out.bytes(bytes);
    return;
  }
  if (kind === 'varint') return out.varint(value as bigint);
  const width = kind === 'fixed32' ? 4 : 8;
  for (let i = 0; i < width; i++) out.push(Number(((value as bigint) >> BigInt(8 * i)) & 0xffn));
}

/**
 * The first place two parsed messages differ, field for field with presence (a field set to
 * its default and an omitted field differ), as a readable path; undefined when equal.
 * Unknown fields must match record for record.
 */
export function wireDifference(a: WireMessage, b: WireMessage, at = a.type): string | undefined {
  const spec = ONNX_FIELDS[a.type]!;
  const numbers = new Set([...a.fields.keys(), ...b.fields.keys()]);
  for (const field of [...numbers].sort((x, y) => x - y)) {
    const name = spec[field]![0];
    const va = a.fields.get(field);
    const vb = b.fields.get(field);
    if (!va || !vb) return `${at}.${name}: ${va ? 'present' : 'absent'} vs ${vb ? 'present' : 'absent'}`;
    if (va.length !== vb.length) return `${at}.${name}: ${va.length} values vs ${vb.length}`;
    for (let i = 0; i < va.length; i++) {
      const d = valueDifference(va[i]!, vb[i]!, va.length > 1 ? `${at}.${name}[${i}]` : `${at}.${name}`);
      if (d) return d;
    }
  }
  if (a.unknown.length !== b.unknown.length)
    return `${at}: ${a.unknown.length} unknown field records vs ${b.unknown.length}`;
  for (let i = 0; i < a.unknown.length; i++)
    if (!sameBytes(a.unknown[i]!, b.unknown[i]!)) return `${at}: unknown field record ${i} differs`;
  return undefined;
}

function valueDifference(a: WireValue, b: WireValue, at: string): string | undefined {
  if (typeof a === 'bigint' || typeof b === 'bigint') return a === b ? undefined : `${at}: ${show(a)} vs ${show(b)}`;
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && sameBytes(a, b)
      ? undefined
      : `${at}: ${show(a)} vs ${show(b)}`;
  }
  return wireDifference(a, b, at);
}

function show(v: WireValue): string {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) {
    const text = Buffer.from(v.subarray(0, 60)).toString('utf8');
    return v.byteLength > 60 ? `'${text}…' (${v.byteLength} bytes)` : `'${text}'`;
  }
  return `a ${v.type}`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Whether a file is written the way the reference serializer writes it. */
export function isCanonical(bytes: Uint8Array): boolean {
  return sameBytes(canonicalBytes(parseWire(bytes)), bytes);
}

/** What a field may be given when building a message: numbers, text, bytes or a message. */
export type FieldInput = bigint | number | string | Uint8Array | WireMessage;

/**
 * Build a message of `type` from field names. An undefined field is left out (so `''` and
 * `0` are written, as proto2 writes a field set to its default); an array is a repeated field.
 * Floats go in fixed32/fixed64 fields as IEEE bits, negative integers as 64-bit two's complement.
 */
export function wireMessage(
  type: string,
  fields: Record<string, FieldInput | readonly FieldInput[] | undefined>,
  unknown: readonly Uint8Array[] = [],
): WireMessage {
  const spec = ONNX_FIELDS[type];
  if (!spec) throw new Error(`no field table for message ${type}`);
  const byName = new Map(Object.entries(spec).map(([number, [name, kind]]) => [name, { number: +number, kind }]));
  const message: WireMessage = { type, fields: new Map(), unknown: [...unknown] };
  for (const [name, input] of Object.entries(fields)) {
    if (input === undefined) continue;
    const field = byName.get(name);
    if (!field) throw new Error(`${type} has no field '${name}'`);
    const list = (Array.isArray(input) ? input : [input]) as FieldInput[];
    const scalar = field.kind.replace('packed ', '') as Scalar;
    message.fields.set(
      field.number,
      list.map((v) => (field.kind.startsWith('.') ? (v as WireMessage) : toWire(v, scalar))),
    );
  }
  return message;
}

function toWire(value: FieldInput, kind: Scalar): WireValue {
  if (kind === 'bytes') return typeof value === 'string' ? new TextEncoder().encode(value) : (value as Uint8Array);
  if (typeof value === 'bigint') return BigInt.asUintN(64, value);
  if (typeof value !== 'number') throw new Error(`a ${kind} field needs a number, got ${typeof value}`);
  if (kind === 'varint') return BigInt.asUintN(64, BigInt(value));
  const view = new DataView(new ArrayBuffer(8));
  if (kind === 'fixed32') {
    view.setFloat32(0, value, true);
    return BigInt(view.getUint32(0, true));
  }
  view.setFloat64(0, value, true);
  return view.getBigUint64(0, true);
}

/** One record of a field the schema does not know: tag and value. */
export function unknownRecord(field: number, value: bigint | number | string | Uint8Array): Uint8Array {
  const sink = new Sink();
  if (typeof value === 'string' || value instanceof Uint8Array) {
    const bytes = typeof value === 'string' ? new TextEncoder().encode(value) : value;
    sink.varint(BigInt((field << 3) | WIRE_BYTES));
    sink.varint(BigInt(bytes.byteLength));
    sink.bytes(bytes);
  } else if (typeof value === 'bigint') {
    sink.varint(BigInt((field << 3) | WIRE_FIXED64));
    writeScalar(BigInt.asUintN(64, value), 'fixed64', sink);
  } else if (Number.isInteger(value)) {
    sink.varint(BigInt((field << 3) | WIRE_VARINT));
    sink.varint(BigInt.asUintN(64, BigInt(value)));
  } else {
    sink.varint(BigInt((field << 3) | WIRE_FIXED32));
    writeScalar(toWire(value, 'fixed32') as bigint, 'fixed32', sink);
  }
  sink.flush();
  return Buffer.concat(sink.chunks, sink.length);
}

/**
 * A message's bytes with its top-level fields in the given order (field numbers; the rest
 * follow in number order, unknown fields last unless `unknownFirst`): a valid encoding that
 * the reference serializer would not write.
 */
export function reorderedBytes(message: WireMessage, order: readonly number[], unknownFirst = false): Uint8Array {
  const numbers = [...new Set([...order, ...[...message.fields.keys()].sort((a, b) => a - b)])];
  const parts = numbers
    .filter((n) => message.fields.has(n))
    .map((n) => canonicalBytes({ type: message.type, fields: new Map([[n, message.fields.get(n)!]]), unknown: [] }));
  return Buffer.concat(unknownFirst ? [...message.unknown, ...parts] : [...parts, ...message.unknown]);
}
