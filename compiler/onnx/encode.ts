/**
 * IR → ModelProto bytes. Everything decode kept (doc strings, metadata, functions,
 * unchanged attribute protos, storage form of each tensor) goes back where it came from,
 * and each rebuilt message takes the field presence and unknown fields its WireShape
 * recorded, so an unchanged model comes back as the message it was read from (and, when the
 * file was written canonically, as the same bytes). Large tensors can be moved to a side
 * file (external data) on request.
 */
import { AttrType, type Attribute } from '../ir/attribute.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { TensorType, Value } from '../ir/node.js';
import type { ValueInfoShapes } from '../ir/wire-shape.js';
import type { Tensor } from '../ir/tensor.js';
import { ExternalDataWriter } from './external-data.js';
import { applyShape, setUnknown, unknownOf, wasOmitted } from './presence.js';
import { proto } from './schema.js';

// biome-ignore lint/suspicious/noExplicitAny: plain objects in protobufjs field layout
type P = any;

export interface EncodeOptions {
  /** Move tensors of at least `threshold` bytes into a side file named `location`. */
  externalData?: { location: string; threshold?: number };
}

export interface EncodedModel {
  bytes: Uint8Array;
  /** The side file's contents in order, when external data was requested. */
  externalData?: ExternalDataWriter;
}

const utf8 = new TextEncoder();
const entries = (list: readonly (readonly [string, string])[] | undefined): P[] | undefined =>
  list?.length ? list.map(([key, value]) => ({ key, value })) : undefined;

/** Encode a model to protobuf bytes (and optionally a side file of tensor data). */
export function encodeModel(model: Model, options: EncodeOptions = {}): EncodedModel {
  const { chunks, byteLength, externalData } = encodeModelChunks(model, options);
  const bytes = Buffer.concat(chunks, byteLength);
  return externalData ? { bytes, externalData } : { bytes };
}

export interface EncodedChunks {
  /** The model's bytes in order; large tensor data are views of the tensors, not copies. */
  chunks: Uint8Array[];
  byteLength: number;
  externalData?: ExternalDataWriter;
}

/**
 * Encode a model as a list of chunks whose concatenation is the protobuf. Initializer data
 * is framed by hand and left in place, so writing a model to disk never holds a second
 * copy of its weights; fields stay in field-number order, as protobufjs writes them.
 */
export function encodeModelChunks(model: Model, options: EncodeOptions = {}): EncodedChunks {
  const external = options.externalData ? new ExternalDataWriter(options.externalData.location) : undefined;
  const ctx: Ctx = { external, threshold: options.externalData?.threshold ?? 1024 };
  const { graph, initializers } = encodeGraphParts(model.graph, ctx);
  const m: P = {
    ir_version: model.irVersion,
    opset_import: model.opsetImports.map((o) => ({ domain: o.domain, version: o.version })),
  };
  if (model.producerName !== undefined) m.producer_name = model.producerName;
  if (model.producerVersion !== undefined) m.producer_version = model.producerVersion;
  if (model.domain !== undefined) m.domain = model.domain;
  if (model.modelVersion !== undefined) m.model_version = model.modelVersion;
  if (model.docString !== undefined) m.doc_string = model.docString;
  if (model.metadataProps.length) m.metadata_props = entries(model.metadataProps);
  if (model.trainingInfo.length) m.training_info = model.trainingInfo;
  if (model.functions.length) m.functions = model.functions;
  if (model.configuration.length) m.configuration = model.configuration;
  applyShape(proto.ModelProto, m, model.wire);
  const graphChunks = around(
    proto.GraphProto,
    graph,
    GRAPH_INITIALIZER,
    initializers.flatMap((t) => frame(GRAPH_INITIALIZER, t)),
  );
  const chunks = around(proto.ModelProto, m, MODEL_GRAPH, frame(MODEL_GRAPH, graphChunks));
  const byteLength = chunks.reduce((n, c) => n + c.byteLength, 0);
  return external ? { chunks, byteLength, externalData: external } : { chunks, byteLength };
}

const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
const TENSOR_RAW_DATA = 9;

/**
 * Encode `obj`'s fields numbered below `field`, then `middle`, then the rest and the unknown
 * fields: field order is kept.
 */
function around(type: typeof proto.ModelProto, obj: P, field: number, middle: Uint8Array[]): Uint8Array[] {
  const head: P = {};
  const tail: P = {};
  for (const [key, value] of Object.entries(obj)) (type.fields[key]!.id < field ? head : tail)[key] = value;
  const unknown = unknownOf(obj);
  if (unknown) setUnknown(tail, unknown);
  return [type.encode(head).finish(), ...middle, type.encode(tail).finish()].filter((c) => c.byteLength > 0);
}

/** A length-delimited field: tag, length, then the body chunks. */
function frame(field: number, body: Uint8Array[]): Uint8Array[] {
  const length = body.reduce((n, c) => n + c.byteLength, 0);
  return [Uint8Array.from([...varint((field << 3) | 2), ...varint(length)]), ...body];
}

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

/** An initializer's TensorProto as chunks, its raw data left as a view. */
function tensorChunks(tensor: Tensor, ctx: Ctx): Uint8Array[] {
  const t = encodeTensor(tensor, ctx);
  if (!t.raw_data) return [proto.TensorProto.encode(t).finish()];
  const raw: Uint8Array = t.raw_data;
  delete t.raw_data;
  return around(proto.TensorProto, t, TENSOR_RAW_DATA, frame(TENSOR_RAW_DATA, [raw]));
}

/** The main graph without its initializers, and the initializers as chunks. */
function encodeGraphParts(graph: Graph, ctx: Ctx): { graph: P; initializers: Uint8Array[][] } {
  const initializers = [...graph.initializers.values()].map((v) => tensorChunks(v.constValue!, ctx));
  const g = encodeGraph(graph, ctx, false);
  return { graph: g, initializers };
}

interface Ctx {
  external: ExternalDataWriter | undefined;
  threshold: number;
}

function encodeGraph(graph: Graph, ctx: Ctx, withInitializers = true): P {
  const g: P = { name: graph.name };
  g.node = graph.nodeList().map((node) => {
    const n: P = {
      input: node.inputs.map((v) => v?.name ?? ''),
      output: node.outputs.map((v) => v?.name ?? ''),
      op_type: node.opType,
    };
    if (node.name !== '') n.name = node.name;
    if (node.domain !== '') n.domain = node.domain;
    if (node.attributes.size) n.attribute = [...node.attributes.values()].map((a) => encodeAttribute(a, ctx));
    const x = node.extras;
    if (x.docString !== undefined) n.doc_string = x.docString;
    if (x.metadataProps?.length) n.metadata_props = entries(x.metadataProps);
    if (x.overload !== undefined) n.overload = x.overload;
    if (x.deviceConfigurations?.length) n.device_configurations = x.deviceConfigurations;
    return applyShape(proto.NodeProto, n, x.wire);
  });
  if (withInitializers) g.initializer = [...graph.initializers.values()].map((v) => encodeTensor(v.constValue!, ctx));
  g.input = graph.inputs.map((v) => valueInfo(v, 'input'));
  g.output = graph.outputs.map((v) => valueInfo(v, 'output'));
  g.value_info = graph.valueInfo.map((v) => valueInfo(v, 'valueInfo'));
  if (graph.extras.orphanValueInfo?.length) g.value_info.push(...graph.extras.orphanValueInfo);
  if (graph.extras.docString !== undefined) g.doc_string = graph.extras.docString;
  if (graph.extras.metadataProps?.length) g.metadata_props = entries(graph.extras.metadataProps);
  if (graph.extras.quantizationAnnotation?.length) g.quantization_annotation = graph.extras.quantizationAnnotation;
  if (graph.extras.sparseInitializers?.length) g.sparse_initializer = graph.extras.sparseInitializers;
  return applyShape(proto.GraphProto, g, graph.extras.wire);
}

function valueInfo(value: Value, role: keyof ValueInfoShapes): P {
  const vi: P = { name: value.name };
  const info = value.info;
  const shape = info?.wire?.[role];
  // An initializer listed as an input without a type has the initializer's type: still implied, not written.
  const implied = wasOmitted(shape, 'type') && typeOfInitializer(value);
  if (value.type && !implied) vi.type = encodeType(value.type);
  else if (info?.typeProto) vi.type = info.typeProto;
  if (info?.docString !== undefined) vi.doc_string = info.docString;
  if (info?.metadataProps?.length) vi.metadata_props = entries(info.metadataProps);
  return applyShape(proto.ValueInfoProto, vi, shape);
}

/** Whether a value's type is exactly what its initializer says (dtype and dims, nothing more). */
function typeOfInitializer(value: Value): boolean {
  const tensor = value.isInitializer() ? value.constValue : undefined;
  const type = value.type;
  if (!tensor || !type?.shape || type.denotation !== undefined || type.dimDenotations) return false;
  return (
    type.dtype === tensor.dtype &&
    type.shape.length === tensor.dims.length &&
    type.shape.every((d, i) => d === tensor.dims[i])
  );
}

/** TensorType → TypeProto. */
export function encodeType(type: TensorType): P {
  const t: P = { elem_type: type.dtype };
  if (type.shape) {
    t.shape = {
      dim: type.shape.map((d, i) => {
        const dim: P = d === null ? {} : typeof d === 'number' ? { dim_value: d } : { dim_param: d };
        const denotation = type.dimDenotations?.[i];
        if (denotation !== undefined) dim.denotation = denotation;
        return dim;
      }),
    };
  }
  const tp: P = { tensor_type: t };
  if (type.denotation !== undefined) tp.denotation = type.denotation;
  return tp;
}

function encodeAttribute(a: Attribute, ctx: Ctx): P {
  const rebuilt = (value: P) => applyShape(proto.AttributeProto, { ...attrBase(a), ...value }, a.wire);
  switch (a.type) {
    case AttrType.TENSOR:
      return rebuilt({ t: encodeTensor(a.value, ctx) });
    case AttrType.TENSORS:
      return rebuilt({ tensors: a.value.map((t) => encodeTensor(t, ctx)) });
    case AttrType.GRAPH:
      return rebuilt({ g: encodeGraph(a.value, ctx) });
    case AttrType.GRAPHS:
      return rebuilt({ graphs: a.value.map((g) => encodeGraph(g, ctx)) });
    default:
      break;
  }
  if (a.source) return a.source;
  const base = attrBase(a);
  switch (a.type) {
    case AttrType.FLOAT:
      return { ...base, f: a.value };
    case AttrType.INT:
      return { ...base, i: a.value };
    case AttrType.STRING:
      return { ...base, s: utf8.encode(a.value) };
    case AttrType.FLOATS:
      return { ...base, floats: a.value };
    case AttrType.INTS:
      return { ...base, ints: a.value };
    case AttrType.STRINGS:
      return { ...base, strings: a.value.map((s) => utf8.encode(s)) };
    default:
      return a.value as P;
  }
}

function attrBase(a: Attribute): P {
  // Files of IR version 1 leave the type out; the decoder inferred it from the value's field.
  const out: P = wasOmitted(a.wire, 'type') && typeInferable(a) ? { name: a.name } : { name: a.name, type: a.type };
  if (a.refAttrName !== undefined) out.ref_attr_name = a.refAttrName;
  if (a.docString !== undefined) out.doc_string = a.docString;
  return out;
}

/** Whether a decoder can tell the attribute's type from the field its value is in. */
function typeInferable(a: Attribute): boolean {
  switch (a.type) {
    case AttrType.FLOATS:
    case AttrType.INTS:
    case AttrType.STRINGS:
    case AttrType.TENSORS:
    case AttrType.GRAPHS:
      return (a.value as readonly unknown[]).length > 0;
    default:
      return a.type !== AttrType.UNDEFINED;
  }
}

/** Tensor → TensorProto, in the storage form it came in (or external when asked and large). */
export function encodeTensor(tensor: Tensor, ctx: Ctx = { external: undefined, threshold: Infinity }): P {
  return applyShape(proto.TensorProto, tensorProto(tensor, ctx), tensor.wire);
}

function tensorProto(tensor: Tensor, ctx: Ctx): P {
  const t: P = { dims: tensor.dims, data_type: tensor.dtype };
  if (tensor.name !== '') t.name = tensor.name;
  if (tensor.segment !== undefined) t.segment = tensor.segment;
  if (tensor.docString !== undefined) t.doc_string = tensor.docString;
  if (tensor.metadataProps?.length) t.metadata_props = entries(tensor.metadataProps);
  if (tensor.dtype === DataType.STRING) {
    t.string_data = tensor.strings;
    return t;
  }
  if (ctx.external && tensor.byteLength >= ctx.threshold) {
    const span = ctx.external.addTensor(tensor);
    t.data_location = 1;
    t.external_data = [
      { key: 'location', value: ctx.external.location },
      { key: 'offset', value: String(span.offset) },
      { key: 'length', value: String(span.length) },
    ];
    return t;
  }
  if (tensor.storage === 'raw') {
    t.raw_data = tensor.rawBytes();
    return t;
  }
  const data = tensor.data;
  switch (tensor.dtype) {
    case DataType.FLOAT:
    case DataType.COMPLEX64:
      t.float_data = data;
      break;
    case DataType.DOUBLE:
    case DataType.COMPLEX128:
      t.double_data = data;
      break;
    case DataType.INT64:
      t.int64_data = Array.from(data as BigInt64Array, (v) => v.toString());
      break;
    case DataType.UINT64:
      t.uint64_data = Array.from(data as BigUint64Array, (v) => v.toString());
      break;
    case DataType.UINT32:
      t.uint64_data = data;
      break;
    default:
      t.int32_data = data;
  }
  return t;
}
