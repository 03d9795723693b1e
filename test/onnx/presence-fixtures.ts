/**
 * Generated ONNX models for the exact round-trip tests, written with the independent wire
 * writer of wire.ts (no protobufjs, no regroup code). One builder covers every message the
 * IR rebuilds (model, opset ids, metadata entries, graphs, nodes, attributes of every type,
 * tensors in each storage form, value infos, tensor types and dimensions) plus the protos it
 * passes through (functions, training info, device configurations, sparse initializers,
 * quantization annotations, segments, non-tensor types).
 *
 * Each optional field whose default is legal where it stands is a named slot; a `Pick`
 * decides per slot whether it is written with a real value ('set'), written with its
 * default ('explicit': `name: ""`, `domain: ""`, `version: 0`) or left out ('omitted').
 * Fields a model cannot lack (value names, tensor data types, ir_version) are always set.
 */
import { type FieldInput, unknownRecord, type WireMessage, wireMessage as msg } from './wire.js';

export type SlotState = 'set' | 'explicit' | 'omitted';
export type Pick = (slot: string) => SlotState;

export interface FixtureOptions {
  pick: Pick;
  /** Put fields the schema does not know into every kind of message. */
  unknownFields: boolean;
}

const FLOAT = 1;
const INT64 = 7;
const STRING = 8;
const FLOAT16 = 10;
const DOUBLE = 11;
const UINT64 = 13;

const A = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, STRINGS: 8, TENSORS: 9, GRAPHS: 10 };
const SPARSE_TENSOR = 11;
const SPARSE_TENSORS = 12;
const TYPE_PROTO = 13;
const TYPE_PROTOS = 14;

const f32 = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);

/** Build one model; `slotsSeen` collects every slot name asked for (so tests can enumerate them). */
export function presenceFixture(options: FixtureOptions, slotsSeen?: Set<string>): WireMessage {
  let unknownCounter = 0;
  /** The value for an optional field slot. */
  const opt = <T extends FieldInput>(slot: string, value: T): FieldInput | undefined => {
    slotsSeen?.add(slot);
    const state = options.pick(slot);
    if (state === 'omitted') return undefined;
    if (state === 'set') return value;
    if (typeof value === 'string') return '';
    if (typeof value === 'bigint') return 0n;
    if (typeof value === 'number') return 0;
    return new Uint8Array(0);
  };
  /** An optional message field: written ('set' and 'explicit' alike) or left out. */
  const optMessage = (slot: string, make: () => WireMessage): WireMessage | undefined => {
    slotsSeen?.add(slot);
    return options.pick(slot) === 'omitted' ? undefined : make();
  };
  /** Unknown fields of each wire type in turn, with field numbers no ONNX message uses. */
  const unknown = (): Uint8Array[] => {
    if (!options.unknownFields) return [];
    const n = unknownCounter++;
    const values: (bigint | number | string)[] = [n, 0.5 + n, BigInt(n) - 3n, `unknown ${n}`];
    return [unknownRecord(900 + (n % 50), values[n % 4]!), unknownRecord(1999, `tail ${n}`)];
  };
  const entry = (slot: string, key: string, value: string) =>
    msg('StringStringEntryProto', { key: opt(`${slot}.key`, key), value: opt(`${slot}.value`, value) }, unknown());
  const props = (slot: string) => [entry(`${slot}.meta0`, 'k0', 'v0'), entry(`${slot}.meta1`, 'k1', 'v1')];

  const dim = (slot: string, fields: Record<string, FieldInput>) =>
    msg('TensorShapeProto.Dimension', { ...fields, denotation: opt(`${slot}.denotation`, 'DATA_BATCH') }, unknown());
  const tensorType = (slot: string, elemType: number, dims: WireMessage[] | undefined) =>
    msg(
      'TypeProto',
      {
        tensor_type: msg(
          'TypeProto.Tensor',
          {
            elem_type: opt(`${slot}.elem_type`, elemType),
            shape: dims && msg('TensorShapeProto', { dim: dims }, unknown()),
          },
          unknown(),
        ),
        denotation: opt(`${slot}.denotation`, 'TENSOR'),
      },
      unknown(),
    );
  const valueInfo = (slot: string, name: string, type: WireMessage | undefined) =>
    msg(
      'ValueInfoProto',
      { name, type, doc_string: opt(`${slot}.doc_string`, `${name} doc`), metadata_props: props(slot) },
      unknown(),
    );
  /** A tensor with the optional fields every TensorProto may carry. */
  const tensor = (slot: string, fields: Record<string, FieldInput | readonly FieldInput[] | undefined>) =>
    msg(
      'TensorProto',
      {
        ...fields,
        doc_string: opt(`${slot}.doc_string`, `${slot} doc`),
        data_location: opt(`${slot}.data_location`, 0),
        metadata_props: props(slot),
      },
      unknown(),
    );
  /** Types a decoder can infer from the value's field may be left out (IR version 1 files); 0 would mean UNDEFINED. */
  const typeWritten = (slot: string, type: number): boolean => {
    if (type > A.GRAPHS) return true;
    slotsSeen?.add(`${slot}.type`);
    return options.pick(`${slot}.type`) !== 'omitted';
  };
  const attribute = (
    slot: string,
    type: number,
    fields: Record<string, FieldInput | readonly FieldInput[] | undefined>,
  ) =>
    msg(
      'AttributeProto',
      {
        name: slot.split('.').pop()!,
        type: typeWritten(slot, type) ? type : undefined,
        doc_string: opt(`${slot}.doc_string`, `${slot} doc`),
        ...fields,
      },
      unknown(),
    );
  const node = (
    slot: string,
    opType: string,
    inputs: string[],
    outputs: string[],
    attributes: WireMessage[],
    domain = 'ai.onnx',
    deviceConfigurations: WireMessage[] = [],
  ) =>
    msg(
      'NodeProto',
      {
        input: inputs,
        output: outputs,
        name: opt(`${slot}.name`, slot),
        op_type: opType,
        attribute: attributes,
        doc_string: opt(`${slot}.doc_string`, `${slot} doc`),
        domain: opt(`${slot}.domain`, domain),
        overload: opt(`${slot}.overload`, 'v2'),
        metadata_props: props(slot),
        device_configurations: deviceConfigurations,
      },
      unknown(),
    );
  /** A one-node body graph reading `outer` from the enclosing scope. */
  const body = (slot: string, outer: string, out: string) =>
    msg(
      'GraphProto',
      {
        node: [node(`${slot}.id`, 'Identity', [outer], [out], [])],
        name: opt(`${slot}.name`, slot),
        doc_string: opt(`${slot}.doc_string`, `${slot} doc`),
        output: [valueInfo(`${slot}.out`, out, undefined)],
        metadata_props: props(slot),
      },
      unknown(),
    );
  const sparse = (slot: string) =>
    msg('SparseTensorProto', {
      values: tensor(`${slot}.values`, { dims: [2], data_type: FLOAT, name: 'sv', raw_data: f32([1, 2]) }),
      indices: tensor(`${slot}.indices`, { dims: [2], data_type: INT64, int64_data: [0, 3] }),
      dims: [4],
    });
  const sequenceType = msg('TypeProto', {
    sequence_type: msg('TypeProto.Sequence', { elem_type: tensorType('seq.elem', FLOAT, undefined) }),
  });

  const allTypes = node(
    'all_types',
    'AllTypes',
    ['Y'],
    ['A'],
    [
      attribute('all.f', A.FLOAT, { f: opt('all.f.f', 1.5) }),
      attribute('all.i', A.INT, { i: opt('all.i.i', -7) }),
      attribute('all.s', A.STRING, { s: opt('all.s.s', 'text') }),
      attribute('all.t', A.TENSOR, {
        t: tensor('all.t.t', { dims: [2], data_type: FLOAT, name: opt('all.t.t.name', 'tv'), float_data: [1, -2] }),
        // A field the type does not read, written by some exporters (only beside the type, or it would decide it).
        ...(typeWritten('all.t', A.TENSOR) ? { i: opt('all.t.junk', 0) } : {}),
      }),
      attribute('all.g', A.GRAPH, { g: body('all.g.g', 'Y', 'g_out') }),
      attribute('all.floats', A.FLOATS, { floats: [1, 2.5, -0] }),
      attribute('all.ints', A.INTS, { ints: [1, -2, 2n ** 60n + 1n] }),
      attribute('all.strings', A.STRINGS, { strings: ['a', '', 'ü'] }),
      attribute('all.tensors', A.TENSORS, {
        tensors: [
          tensor('all.tensors.0', {
            dims: [1],
            data_type: FLOAT,
            name: opt('all.tensors.0.name', 't0'),
            raw_data: f32([3]),
          }),
          tensor('all.tensors.1', { dims: [], data_type: INT64, int64_data: [5] }),
        ],
      }),
      attribute('all.graphs', A.GRAPHS, {
        graphs: [body('all.graphs.0', 'Y', 'gs0_out'), body('all.graphs.1', 'X', 'gs1_out')],
      }),
      attribute('all.sparse_tensor', SPARSE_TENSOR, { sparse_tensor: sparse('all.sparse_tensor') }),
      attribute('all.sparse_tensors', SPARSE_TENSORS, {
        sparse_tensors: [sparse('all.sparse_tensors.0'), sparse('all.sparse_tensors.1')],
      }),
      attribute('all.tp', TYPE_PROTO, { tp: tensorType('all.tp.tp', FLOAT, []) }),
      attribute('all.type_protos', TYPE_PROTOS, {
        type_protos: [sequenceType, tensorType('all.type_protos.1', INT64, undefined)],
      }),
    ],
    'regroup.test',
  );
  // ConstantOfShape's `value`, a tensor attribute whose tensor name is written empty by the model zoo's graphs.
  const constantOfShape = node(
    'cos',
    'ConstantOfShape',
    ['shape'],
    ['C'],
    [
      attribute('cos.value', A.TENSOR, {
        t: tensor('cos.value.t', {
          dims: [1],
          data_type: FLOAT,
          name: opt('cos.value.t.name', 'fill'),
          raw_data: f32([0]),
        }),
      }),
    ],
  );

  const graph = msg(
    'GraphProto',
    {
      node: [
        node('add', 'Add', ['X', 'W'], ['Y'], [], 'ai.onnx', [
          msg('NodeDeviceConfigurationProto', { configuration_id: '', pipeline_stage: 0 }, unknown()),
        ]),
        constantOfShape,
        allTypes,
      ],
      name: opt('graph.name', 'main'),
      initializer: [
        tensor('W', { dims: [3], data_type: FLOAT, name: 'W', raw_data: f32([1, 2, 3]) }),
        tensor('shape', { dims: [1], data_type: INT64, name: 'shape', int64_data: [3] }),
        tensor('typed', {
          dims: [2],
          data_type: FLOAT,
          name: 'typed',
          float_data: [0.25, -1],
          segment: msg('TensorProto.Segment', { begin: 0, end: 2 }),
        }),
        tensor('strings', { dims: [2], data_type: STRING, name: 'strings', string_data: ['x', ''] }),
        tensor('double', { dims: [1], data_type: DOUBLE, name: 'double', double_data: [Math.PI] }),
        tensor('half', { dims: [2], data_type: FLOAT16, name: 'half', int32_data: [0x3c00, 0xc000] }),
        tensor('u64', { dims: [1], data_type: UINT64, name: 'u64', uint64_data: [2n ** 64n - 1n] }),
        // Zero elements: raw_data written empty, or no data field at all.
        tensor('empty', {
          dims: [0],
          data_type: FLOAT,
          name: 'empty',
          raw_data: opt('empty.raw_data', new Uint8Array(0)),
        }),
      ],
      doc_string: opt('graph.doc_string', 'main doc'),
      input: [
        valueInfo(
          'X',
          'X',
          tensorType('X.type', FLOAT, [
            dim('X.d0', { dim_param: 'N' }),
            dim('X.d1', { dim_value: 3 }),
            dim('X.d2', {}),
            dim('X.d3', { dim_value: 0 }),
          ]),
        ),
        // An initializer listed as an input (IR version 3 style), its type there optional.
        valueInfo(
          'shape.input',
          'shape',
          optMessage('shape.input.type', () =>
            tensorType('shape.input.type', INT64, [dim('shape.d0', { dim_value: 1 })]),
          ),
        ),
      ],
      output: [
        valueInfo('A', 'A', tensorType('A.type', FLOAT, undefined)),
        valueInfo('C', 'C', tensorType('C.type', FLOAT, [dim('C.d0', { dim_value: 3 })])),
      ],
      value_info: [
        valueInfo(
          'Y',
          'Y',
          tensorType('Y.type', FLOAT, [dim('Y.d0', { dim_param: 'N' }), dim('Y.d1', { dim_value: 3 })]),
        ),
        valueInfo('seq', 'not_in_graph', sequenceType),
      ],
      quantization_annotation: [
        msg('TensorAnnotation', { tensor_name: 'W', quant_parameter_tensor_names: [entry('qa', 'SCALE_TENSOR', 'W')] }),
      ],
      sparse_initializer: [sparse('graph.sparse')],
      metadata_props: props('graph'),
    },
    unknown(),
  );

  const opset = (slot: string, domain: string, version: number) =>
    msg(
      'OperatorSetIdProto',
      { domain: opt(`${slot}.domain`, domain), version: opt(`${slot}.version`, version) },
      unknown(),
    );
  const fn = msg(
    'FunctionProto',
    {
      name: 'Scale',
      input: ['x'],
      output: ['y'],
      attribute_proto: [msg('AttributeProto', { name: 'alpha', ref_attr_name: '', type: A.FLOAT, f: 0 })],
      node: [msg('NodeProto', { input: ['x'], output: ['y'], op_type: 'Identity', name: '' })],
      opset_import: [msg('OperatorSetIdProto', { version: 17 })],
      domain: 'regroup.test',
    },
    unknown(),
  );
  return msg(
    'ModelProto',
    {
      ir_version: 10,
      opset_import: [opset('opset.onnx', 'ai.onnx', 17), opset('opset.test', 'regroup.test', 1)],
      producer_name: opt('model.producer_name', 'presence-fixture'),
      producer_version: opt('model.producer_version', '1.0'),
      domain: opt('model.domain', 'org.regroup'),
      model_version: opt('model.model_version', 3),
      doc_string: opt('model.doc_string', 'model doc'),
      graph,
      metadata_props: props('model'),
      training_info: [
        msg(
          'TrainingInfoProto',
          { algorithm: body('train.algorithm', 'X', 'ta_out'), update_binding: [entry('train.binding', 'W', 'W_new')] },
          unknown(),
        ),
      ],
      functions: [fn],
      configuration: [msg('DeviceConfigurationProto', { name: '', num_devices: 0, device: ['cpu'] })],
    },
    unknown(),
  );
}

/** A deterministic pick from a seed: each slot gets one of the three states. */
export function seededPick(seed: number): Pick {
  return (slot) => {
    let h = seed >>> 0;
    for (let i = 0; i < slot.length; i++) h = Math.imul(h ^ slot.charCodeAt(i), 0x01000193) >>> 0;
    return (['set', 'explicit', 'omitted'] as const)[(h >>> 7) % 3]!;
  };
}
