/**
 * ModelProto bytes → IR. Names resolve through lexical scopes (a subgraph sees its
 * ancestors' values); nodes are created before their inputs are wired, so files whose node
 * list is not topologically ordered still load. Fields the IR does not model are kept as
 * decoded protos and written back unchanged; so are unknown fields and which optional fields
 * each message wrote, as WireShapes beside the IR objects (presence.ts).
 */
import { RegroupError } from '../errors.js';
import { AttrType, type Attribute } from '../ir/attribute.js';
import { DataType, dtypeInfo, isKnownDType, storageBytes, type TypedArray } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Model } from '../ir/model.js';
import type { Dim, Node, TensorType, Value, ValueInfoExtras } from '../ir/node.js';
import type { ValueInfoShapes } from '../ir/wire-shape.js';
import { Tensor } from '../ir/tensor.js';
import { ExternalDataReader, parseExternalData } from './external-data.js';
import { toBigInt, toExactNumber, toNumber, type Int64 } from './long.js';
import { keepingReader, shapeOf } from './presence.js';
import { proto } from './schema.js';

// biome-ignore lint/suspicious/noExplicitAny: decoded protobufjs messages are untyped
type P = any;

export interface DecodeOptions {
  /** Directory that external-data locations are relative to; without it, external tensors are an error. */
  baseDir?: string;
  /** File name used in error messages. */
  source?: string;
}

const utf8 = new TextDecoder('utf-8');
const has = (m: P, field: string): boolean => m != null && Object.hasOwn(m, field);
const props = (list: P[] | undefined): [string, string][] | undefined =>
  list?.length ? list.map((e: P) => [e.key ?? '', e.value ?? ''] as [string, string]) : undefined;

/** Decode an ONNX model from its protobuf bytes. */
export function decodeModel(bytes: Uint8Array, options: DecodeOptions = {}): Model {
  const source = options.source ?? 'model';
  if (bytes.byteLength === 0)
    throw new RegroupError('bad-model', `${source}: the file is empty; expected an ONNX model`);
  let m: P;
  try {
    m = proto.ModelProto.decode(keepingReader(bytes));
  } catch (err) {
    throw new RegroupError(
      'bad-model',
      `${source}: not a valid ONNX model (protobuf decoding failed: ${(err as Error).message}); the file may be truncated or not ONNX`,
    );
  }
  if (!has(m, 'graph'))
    throw new RegroupError(
      'bad-model',
      `${source}: no graph in the ModelProto; the file is not an ONNX model or is damaged`,
    );
  if (!has(m, 'ir_version') || !m.opset_import?.length) {
    throw new RegroupError(
      'bad-model',
      `${source}: ModelProto lacks ir_version or opset_import; the file is not an ONNX model or is damaged`,
    );
  }
  const reader = options.baseDir ? new ExternalDataReader(options.baseDir) : undefined;
  try {
    const ctx: Ctx = { source, reader };
    const model = new Model(decodeGraph(m.graph, undefined, ctx));
    model.irVersion = toNumber(m.ir_version);
    model.opsetImports = m.opset_import.map((o: P) => ({ domain: o.domain ?? '', version: toNumber(o.version) }));
    model.producerName = has(m, 'producer_name') ? m.producer_name : undefined;
    model.producerVersion = has(m, 'producer_version') ? m.producer_version : undefined;
    model.domain = has(m, 'domain') ? m.domain : undefined;
    model.modelVersion = has(m, 'model_version') ? toNumber(m.model_version) : undefined;
    model.docString = has(m, 'doc_string') ? m.doc_string : undefined;
    model.metadataProps = props(m.metadata_props) ?? [];
    model.functions = [...(m.functions ?? [])];
    model.trainingInfo = [...(m.training_info ?? [])];
    model.configuration = [...(m.configuration ?? [])];
    model.wire = shapeOf(proto.ModelProto, m);
    return model;
  } finally {
    reader?.close();
  }
}

interface Ctx {
  source: string;
  reader: ExternalDataReader | undefined;
}

/** name → value, one per graph, chained to the enclosing graph's scope. */
class Scope {
  readonly values = new Map<string, Value>();
  constructor(readonly parent: Scope | undefined) {}
  lookup(name: string): Value | undefined {
    return this.values.get(name) ?? this.parent?.lookup(name);
  }
}

function decodeGraph(gp: P, parentGraph: Graph | undefined, ctx: Ctx, parentScope?: Scope): Graph {
  const graph = new Graph(gp.name ?? '', parentGraph);
  const scope = new Scope(parentScope);
  graph.extras = {
    docString: has(gp, 'doc_string') ? gp.doc_string : undefined,
    metadataProps: props(gp.metadata_props),
    quantizationAnnotation: gp.quantization_annotation?.length ? [...gp.quantization_annotation] : undefined,
    sparseInitializers: gp.sparse_initializer?.length ? [...gp.sparse_initializer] : undefined,
    wire: shapeOf(proto.GraphProto, gp),
  };
  const where = `${ctx.source}: graph '${graph.name}'`;
  const define = (name: string, make: () => Value): Value => {
    if (scope.values.has(name)) throw new RegroupError('bad-model', `${where}: value '${name}' is defined twice`);
    graph.names.reserve(name);
    const v = make();
    scope.values.set(name, v);
    return v;
  };
  for (const tp of gp.initializer ?? []) {
    const tensor = decodeTensor(tp, ctx);
    define(tensor.name, () => withDecodingNames(graph, () => graph.addInitializer(tensor.name, tensor)));
  }
  for (const vi of gp.input ?? []) {
    const existing = scope.values.get(vi.name);
    const value = existing ?? define(vi.name, () => withDecodingNames(graph, () => graph.addInput(vi.name)));
    if (existing) graph.inputs.push(existing);
    applyValueInfo(value, vi, 'input');
  }
  const nodes: [Node, P][] = [];
  for (const np of gp.node ?? []) {
    const outputs: string[] = (np.output ?? []).map((o: string) => o);
    const node = graph.createNode(np.op_type ?? '', [], {
      name: np.name ?? '',
      domain: np.domain ?? '',
      outputs,
      extras: nodeExtras(np),
    });
    if (!has(np, 'name')) node.name = '';
    for (const out of node.outputs) {
      if (!out) continue;
      if (scope.values.has(out.name))
        throw new RegroupError(
          'bad-model',
          `${where}: value '${out.name}' is produced twice (node '${np.name ?? ''}')`,
        );
      scope.values.set(out.name, out);
    }
    graph.append(node);
    nodes.push([node, np]);
  }
  for (const [node, np] of nodes) {
    for (const name of np.input ?? []) {
      if (name === '') {
        node.appendInput(undefined);
        continue;
      }
      const v = scope.lookup(name);
      if (!v)
        throw new RegroupError(
          'bad-model',
          `${where}: node '${node.name}' (${node.opType}) reads '${name}', which no node, input or initializer defines`,
        );
      node.appendInput(v);
    }
    for (const ap of np.attribute ?? []) {
      const a = decodeAttribute(ap, graph, scope, ctx, node);
      node.attributes.set(a.name, a);
    }
  }
  for (const vi of gp.output ?? []) {
    const v = scope.lookup(vi.name);
    if (!v) throw new RegroupError('bad-model', `${where}: graph output '${vi.name}' is not produced by any node`);
    graph.outputs.push(v);
    applyValueInfo(v, vi, 'output');
  }
  const orphans: P[] = [];
  for (const vi of gp.value_info ?? []) {
    const v = scope.values.get(vi.name);
    if (!v) {
      orphans.push(vi);
      continue;
    }
    graph.valueInfo.push(v);
    applyValueInfo(v, vi, 'valueInfo');
  }
  if (orphans.length) graph.extras.orphanValueInfo = orphans;
  return graph;
}

/** Subgraph names may repeat outer names in files from lax exporters; decoding tolerates it. */
function withDecodingNames<T>(graph: Graph, make: () => T): T {
  graph._decoding = true;
  try {
    return make();
  } finally {
    graph._decoding = false;
  }
}

function nodeExtras(np: P): Node['extras'] {
  const extras: Node['extras'] = { wire: shapeOf(proto.NodeProto, np) };
  if (has(np, 'doc_string')) extras.docString = np.doc_string;
  if (np.metadata_props?.length) extras.metadataProps = props(np.metadata_props);
  if (has(np, 'overload')) extras.overload = np.overload;
  if (np.device_configurations?.length) extras.deviceConfigurations = [...np.device_configurations];
  return extras;
}

/** Take a ValueInfoProto's fields; a value declared in several places keeps each one's shape. */
function applyValueInfo(value: Value, vi: P, role: keyof ValueInfoShapes): void {
  const info: ValueInfoExtras = {};
  if (has(vi, 'doc_string')) info.docString = vi.doc_string;
  if (vi.metadata_props?.length) info.metadataProps = props(vi.metadata_props);
  if (has(vi, 'type')) {
    const type = decodeType(vi.type);
    if (type) value.type = type;
    else info.typeProto = vi.type;
  }
  const wire: ValueInfoShapes = { ...value.info?.wire, [role]: shapeOf(proto.ValueInfoProto, vi) };
  value.info = Object.keys(info).length ? { ...info, wire } : { ...value.info, wire };
}

/** TypeProto → TensorType for tensor types; undefined for the others (kept as protos). */
export function decodeType(tp: P): TensorType | undefined {
  if (!has(tp, 'tensor_type')) return undefined;
  const t = tp.tensor_type;
  const type: { -readonly [K in keyof TensorType]: TensorType[K] } = { dtype: t.elem_type ?? DataType.UNDEFINED };
  if (has(t, 'shape')) {
    const dims: P[] = t.shape.dim ?? [];
    type.shape = dims.map(
      (d): Dim => (has(d, 'dim_value') ? toNumber(d.dim_value) : has(d, 'dim_param') ? d.dim_param : null),
    );
    if (dims.some((d) => has(d, 'denotation')))
      type.dimDenotations = dims.map((d) => (has(d, 'denotation') ? d.denotation : undefined));
  }
  if (has(tp, 'denotation')) type.denotation = tp.denotation;
  return type;
}

function decodeAttribute(ap: P, graph: Graph, scope: Scope, ctx: Ctx, node: Node): Attribute {
  const type: AttrType = has(ap, 'type') ? ap.type : inferAttrType(ap);
  const base = {
    name: ap.name ?? '',
    wire: shapeOf(proto.AttributeProto, ap),
    ...(has(ap, 'doc_string') ? { docString: ap.doc_string as string } : {}),
    ...(has(ap, 'ref_attr_name') ? { refAttrName: ap.ref_attr_name as string } : {}),
  };
  const sub = (g: P) => decodeGraph(g, graph, ctx, scope);
  // An unset message field reads as null (and unset bytes as []) through the prototype.
  const required = (field: 't' | 'g'): P => {
    if (has(ap, field)) return ap[field];
    throw new RegroupError(
      'bad-model',
      `${ctx.source}: attribute '${base.name}' of node '${node.name}' (${node.opType}) has type ${AttrType[type]} but no value; the file is damaged`,
    );
  };
  const plain = (value: unknown) => Object.freeze({ ...base, type, value, source: ap }) as Attribute;
  switch (type) {
    case AttrType.FLOAT:
      return plain(ap.f ?? 0);
    case AttrType.INT:
      return plain(toNumber(ap.i));
    case AttrType.STRING:
      return plain(has(ap, 's') ? utf8.decode(ap.s) : '');
    case AttrType.FLOATS:
      return plain(Object.freeze([...(ap.floats ?? [])]));
    case AttrType.INTS:
      return plain(Object.freeze((ap.ints ?? []).map((i: Int64) => toNumber(i))));
    case AttrType.STRINGS:
      return plain(Object.freeze((ap.strings ?? []).map((s: Uint8Array) => utf8.decode(s))));
    case AttrType.TENSOR:
      return Object.freeze({ ...base, type, value: decodeTensor(required('t'), ctx) });
    case AttrType.TENSORS:
      return Object.freeze({
        ...base,
        type,
        value: Object.freeze((ap.tensors ?? []).map((t: P) => decodeTensor(t, ctx))),
      });
    case AttrType.GRAPH:
      return Object.freeze({ ...base, type, value: sub(required('g')) });
    case AttrType.GRAPHS:
      return Object.freeze({ ...base, type, value: Object.freeze((ap.graphs ?? []).map(sub)) });
    default:
      if (ap.name === undefined)
        throw new RegroupError('bad-model', `${ctx.source}: node '${node.name}' has an attribute without a name`);
      return plain(ap);
  }
}

/** IR version 1 files may omit AttributeProto.type; infer it from the field that is set. */
function inferAttrType(ap: P): AttrType {
  if (has(ap, 'f')) return AttrType.FLOAT;
  if (has(ap, 'i')) return AttrType.INT;
  if (has(ap, 's')) return AttrType.STRING;
  if (has(ap, 't')) return AttrType.TENSOR;
  if (has(ap, 'g')) return AttrType.GRAPH;
  if (ap.floats?.length) return AttrType.FLOATS;
  if (ap.ints?.length) return AttrType.INTS;
  if (ap.strings?.length) return AttrType.STRINGS;
  if (ap.tensors?.length) return AttrType.TENSORS;
  if (ap.graphs?.length) return AttrType.GRAPHS;
  return AttrType.UNDEFINED;
}

/** TensorProto → Tensor (raw bytes stay views into the file buffer). */
export function decodeTensor(tp: P, ctx: { source: string; reader?: ExternalDataReader | undefined }): Tensor {
  const name: string = tp.name ?? '';
  const what = `${ctx.source}: tensor '${name}'`;
  const dtype: number = tp.data_type ?? DataType.UNDEFINED;
  if (!isKnownDType(dtype) || dtype === DataType.UNDEFINED)
    throw new RegroupError('bad-tensor', `${what} has unknown data_type ${dtype}`);
  const dims = (tp.dims ?? []).map((d: Int64) => toExactNumber(d, `${what} dimension`));
  if (dims.some((d: number) => d < 0))
    throw new RegroupError('bad-tensor', `${what} has a negative dimension [${dims.join(',')}]`);
  const init = {
    name,
    docString: has(tp, 'doc_string') ? (tp.doc_string as string) : undefined,
    metadataProps: props(tp.metadata_props),
    segment: has(tp, 'segment') ? tp.segment : undefined,
    wire: shapeOf(proto.TensorProto, tp),
  };
  const count = dims.reduce((a: number, b: number) => a * b, 1);
  if (tp.data_location === 1) {
    const span = parseExternalData(tp.external_data ?? [], name);
    if (!ctx.reader)
      throw new RegroupError(
        'external-data',
        `${what} keeps its data in '${span.location}'; load the model from a file so the data can be found next to it`,
      );
    // Checked now, read when a pass first needs the values (external-data.ts).
    const bytes = ctx.reader.source(span, name, storageBytes(dtype, count));
    return Tensor.fromSource(dtype, dims, bytes, {
      ...init,
      external: { location: span.location, offset: span.offset, length: bytes.byteLength, extra: span.extra },
    });
  }
  try {
    if (has(tp, 'raw_data')) return Tensor.fromRaw(dtype, dims, tp.raw_data, init);
    if (dtype === DataType.STRING) return Tensor.fromStrings(dims, [...(tp.string_data ?? [])], init);
    return Tensor.fromArray(dtype, dims, typedFieldData(tp, dtype, count), { ...init, storage: 'typed' });
  } catch (err) {
    if (err instanceof RangeError) throw new RegroupError('bad-tensor', `${ctx.source}: ${err.message}`);
    throw err;
  }
}

/** Elements from the typed *_data field that ONNX assigns to each data type. */
function typedFieldData(tp: P, dtype: DataType, count: number): TypedArray {
  const { array, bits } = dtypeInfo(dtype);
  switch (dtype) {
    case DataType.FLOAT:
    case DataType.COMPLEX64:
      return Float32Array.from(tp.float_data ?? []);
    case DataType.DOUBLE:
    case DataType.COMPLEX128:
      return Float64Array.from(tp.double_data ?? []);
    case DataType.INT64:
      return BigInt64Array.from(tp.int64_data ?? [], (v: Int64) => toBigInt(v));
    case DataType.UINT64:
      return BigUint64Array.from(tp.uint64_data ?? [], (v: Int64) => BigInt.asUintN(64, toBigInt(v)));
    case DataType.UINT32:
      return Uint32Array.from(tp.uint64_data ?? [], (v: Int64) => toNumber(v));
    default: {
      const ints: number[] = tp.int32_data ?? [];
      // Sub-byte types put one packed byte in each int32 entry.
      if (bits < 8 && ints.length !== storageBytes(dtype, count)) return new Uint8Array(0);
      return (array as unknown as { from(a: ArrayLike<number>): TypedArray }).from(ints);
    }
  }
}
