/**
 * Fields newer than ONNX 1.10 (and int64 values past 2^53) survive decode → encode.
 * A model is built, encoded, and the newer fields are injected into its ModelProto before
 * encoding with our schema; the decoded-then-re-encoded model must carry them all, with
 * attribute and tensor values exact.
 */
import { describe, expect, it } from 'vitest';
import { AttrType } from '../../compiler/ir/attribute.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import { decodeModel } from '../../compiler/onnx/decode.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { proto } from '../../compiler/onnx/schema.js';

type P = any;

const INT64_MAX = '9223372036854775807';
const INT64_MIN = '-9223372036854775808';
const TWO_60_PLUS_1 = '1152921504606846977';
const TWO_53_PLUS_1 = '9007199254740993';
const UINT64_MAX = '18446744073709551615';

const meta = (prefix: string): P[] => [
  { key: `${prefix}.key`, value: `${prefix} value` },
  { key: 'pkg.torch.onnx.stack_trace', value: `File "model.py", line 7, in forward (${prefix})` },
];

const floatType = (shape: number[]): P => ({
  tensor_type: { elem_type: DataType.FLOAT, shape: { dim: shape.map((d) => ({ dim_value: d })) } },
});

function baseModel(): Model {
  const b = new GraphBuilder({ opset: 17, irVersion: 11, seed: 5, graphName: 'newer' });
  const x = b.input('x', [1, 4, 3, 3]);
  const y = b.op('Conv', [x, b.weight('w', [4, 4, 1, 1])], { kernel_shape: [1, 1] }, 'conv');
  const z = b.op('Relu', [y], {}, 'relu');
  const out = b.node('Scale', [z], {}, { name: 'scale_call', domain: 'regroup.test' }).output(0);
  b.output(out, { dtype: DataType.FLOAT, shape: [1, 4, 3, 3] });
  b.model.opsetImports.push({ domain: 'regroup.test', version: 1 });
  return b.model;
}

/** The newer-than-1.10 initializers, each with the exact bytes or elements it must come back with. */
const NEW_INITIALIZERS: P[] = [
  {
    name: 'f8e4m3',
    dims: [4],
    data_type: DataType.FLOAT8E4M3FN,
    raw_data: Buffer.from([0x00, 0x38, 0x7e, 0xfe]),
    metadata_props: meta('f8'),
  },
  { name: 'f8e5m2_typed', dims: [3], data_type: DataType.FLOAT8E5M2, int32_data: [0x3c, 0x7b, 0xfc] },
  { name: 'int4', dims: [5], data_type: DataType.INT4, raw_data: Buffer.from([0x21, 0xf8, 0x07]) },
  { name: 'uint4_typed', dims: [3], data_type: DataType.UINT4, int32_data: [0x21, 0x0f] },
  { name: 'f4e2m1', dims: [3], data_type: DataType.FLOAT4E2M1, raw_data: Buffer.from([0x7f, 0x02]) },
  {
    name: 'bf16',
    dims: [3],
    data_type: DataType.BFLOAT16,
    raw_data: Buffer.from([0x80, 0x3f, 0x00, 0xc0, 0x80, 0x7f]),
  },
  { name: 'bf16_typed', dims: [3], data_type: DataType.BFLOAT16, int32_data: [0x3f80, 0xc000, 0x7f80] },
  {
    name: 'u64_typed',
    dims: [4],
    data_type: DataType.UINT64,
    uint64_data: ['0', UINT64_MAX, TWO_53_PLUS_1, TWO_60_PLUS_1],
  },
  { name: 'i64_typed', dims: [4], data_type: DataType.INT64, int64_data: [INT64_MAX, INT64_MIN, TWO_60_PLUS_1, '-1'] },
];

/** Attributes whose int64 values a JavaScript number cannot hold. */
const BIG_ATTRIBUTES: P[] = [
  { name: 'int64_max', type: AttrType.INT, i: INT64_MAX },
  { name: 'two_60_plus_1', type: AttrType.INT, i: TWO_60_PLUS_1 },
  { name: 'int64_min', type: AttrType.INT, i: INT64_MIN },
  { name: 'big_ints', type: AttrType.INTS, ints: [INT64_MAX, TWO_60_PLUS_1, INT64_MIN, TWO_53_PLUS_1, '3'] },
  {
    name: 'big_tensor',
    type: AttrType.TENSOR,
    t: { dims: [3], data_type: DataType.INT64, int64_data: [INT64_MAX, TWO_60_PLUS_1, INT64_MIN] },
  },
];

const FUNCTION: P = {
  name: 'Scale',
  domain: 'regroup.test',
  overload: 'v2',
  input: ['a'],
  output: ['b'],
  attribute: ['alpha'],
  attribute_proto: [
    { name: 'beta', type: AttrType.INT, i: INT64_MAX },
    { name: 'gamma', type: AttrType.FLOAT, f: 0.5 },
  ],
  node: [
    { input: ['a'], output: ['t'], name: 'inner_relu', op_type: 'Relu', metadata_props: meta('fn.node') },
    { input: ['t', 't'], output: ['b'], name: 'inner_add', op_type: 'Add', overload: 'inner' },
  ],
  opset_import: [{ domain: '', version: 17 }],
  value_info: [{ name: 't', type: floatType([1, 4, 3, 3]), metadata_props: meta('fn.vi') }],
  metadata_props: meta('fn'),
  doc_string: 'a function with an overload',
};

const DEVICE_CONFIGURATIONS: P[] = [
  {
    configuration_id: 'two_gpus',
    pipeline_stage: 1,
    sharding_spec: [
      {
        tensor_name: 'x',
        device: [0, 1],
        index_to_device_group_map: [
          { key: 0, value: [0, 1] },
          { key: TWO_60_PLUS_1, value: [INT64_MAX] },
        ],
        sharded_dim: [
          {
            axis: 1,
            simple_sharding: [
              { dim_value: 4, num_shards: 2 },
              { dim_param: 'C', num_shards: 2 },
            ],
          },
        ],
      },
    ],
  },
];

/** Encode the base model, add every newer field to its proto, and return those bytes. */
function injectedBytes(): Uint8Array {
  const m: P = proto.ModelProto.toObject(proto.ModelProto.decode(encodeModel(baseModel()).bytes), { longs: String });
  const g = m.graph;
  const node = (name: string) => g.node.find((n: P) => n.name === name);
  node('conv').metadata_props = meta('node');
  node('conv').device_configurations = DEVICE_CONFIGURATIONS;
  node('relu').overload = 'fast';
  Object.assign(node('scale_call'), { overload: 'v2', metadata_props: meta('call') });
  node('scale_call').attribute = BIG_ATTRIBUTES;
  g.metadata_props = meta('graph');
  g.input[0].metadata_props = meta('input');
  g.output[0].metadata_props = meta('output');
  g.value_info = [{ name: 'conv_out', type: floatType([1, 4, 3, 3]), metadata_props: meta('value_info') }];
  g.initializer.find((t: P) => t.name === 'w').metadata_props = meta('weight');
  g.initializer.push(...NEW_INITIALIZERS);
  m.functions = [FUNCTION];
  m.configuration = [{ name: 'two_gpus', num_devices: 2, device: ['cuda:0', 'cuda:1'] }];
  m.ir_version = 11;
  return proto.ModelProto.encode(proto.ModelProto.fromObject(m)).finish();
}

const view = (bytes: Uint8Array, defaults: boolean): P =>
  proto.ModelProto.toObject(proto.ModelProto.decode(bytes), { longs: String, bytes: String, defaults });

describe('fields newer than ONNX 1.10 survive decode → encode', () => {
  const injected = injectedBytes();
  const model = decodeModel(injected, { source: 'newer-fields' });
  const reencoded = encodeModel(model).bytes;
  const out = view(reencoded, false);

  it('the injected proto really carries the new fields (the test is not vacuous)', () => {
    const before = view(injected, false);
    expect(before.graph.node[0].metadata_props).toHaveLength(2);
    expect(before.graph.node[0].device_configurations).toHaveLength(1);
    expect(before.functions[0].overload).toBe('v2');
    expect(before.configuration).toHaveLength(1);
    expect(before.graph.initializer.map((t: P) => t.name)).toEqual(
      expect.arrayContaining(NEW_INITIALIZERS.map((t) => t.name)),
    );
  });

  it('re-encodes to a deep-equal ModelProto (with and without default values)', () => {
    expect(out).toEqual(view(injected, false));
    expect(view(reencoded, true)).toEqual(view(injected, true));
  });

  it('re-encodes to identical bytes, and the decoded graph verifies', () => {
    expect(() => model.graph.verify()).not.toThrow();
    expect(Buffer.from(reencoded).equals(Buffer.from(injected))).toBe(true);
  });

  it('keeps node metadata_props, overload and device_configurations', () => {
    const conv = out.graph.node.find((n: P) => n.name === 'conv');
    expect(conv.metadata_props).toEqual(meta('node'));
    const spec = conv.device_configurations[0].sharding_spec[0];
    expect(spec.index_to_device_group_map[1]).toEqual({ key: TWO_60_PLUS_1, value: [INT64_MAX] });
    expect(spec.sharded_dim[0].simple_sharding[1]).toEqual({ dim_param: 'C', num_shards: '2' });
    expect(out.graph.node.find((n: P) => n.name === 'relu').overload).toBe('fast');
    expect(out.graph.node.find((n: P) => n.name === 'scale_call').overload).toBe('v2');
    expect(model.graph.nodeList().find((n) => n.name === 'scale_call')!.extras.overload).toBe('v2');
  });

  it('keeps value_info, graph and tensor metadata_props', () => {
    expect(out.graph.metadata_props).toEqual(meta('graph'));
    expect(out.graph.input[0].metadata_props).toEqual(meta('input'));
    expect(out.graph.output[0].metadata_props).toEqual(meta('output'));
    expect(out.graph.value_info).toEqual([
      expect.objectContaining({ name: 'conv_out', metadata_props: meta('value_info') }),
    ]);
    expect(out.graph.initializer.find((t: P) => t.name === 'w').metadata_props).toEqual(meta('weight'));
    expect(out.graph.initializer.find((t: P) => t.name === 'f8e4m3').metadata_props).toEqual(meta('f8'));
    expect(model.graph.initializers.get('w')!.constValue!.metadataProps).toEqual(
      meta('weight').map((e: P) => [e.key, e.value]),
    );
  });

  it('keeps the FunctionProto whole (overload, value_info, metadata_props, attribute_proto)', () => {
    const fn = out.functions[0];
    expect(fn.overload).toBe('v2');
    expect(fn.value_info[0].metadata_props).toEqual(meta('fn.vi'));
    expect(fn.metadata_props).toEqual(meta('fn'));
    expect(fn.attribute_proto[0]).toEqual({ name: 'beta', type: AttrType.INT, i: INT64_MAX });
    expect(fn.node[1].overload).toBe('inner');
    expect(out.configuration).toEqual([{ name: 'two_gpus', num_devices: 2, device: ['cuda:0', 'cuda:1'] }]);
  });

  it('writes int64 attribute values past 2^53 back exactly', () => {
    const attrs = out.graph.node.find((n: P) => n.name === 'scale_call').attribute;
    const byName = (name: string) => attrs.find((a: P) => a.name === name);
    expect(byName('int64_max').i).toBe(INT64_MAX);
    expect(byName('two_60_plus_1').i).toBe(TWO_60_PLUS_1);
    expect(byName('int64_min').i).toBe(INT64_MIN);
    expect(byName('big_ints').ints).toEqual([INT64_MAX, TWO_60_PLUS_1, INT64_MIN, TWO_53_PLUS_1, '3']);
    expect(byName('big_tensor').t.int64_data).toEqual([INT64_MAX, TWO_60_PLUS_1, INT64_MIN]);
    const node = model.graph.nodeList().find((n) => n.name === 'scale_call')!;
    const tensor = node.attr('big_tensor');
    expect(tensor?.type).toBe(AttrType.TENSOR);
    if (tensor?.type === AttrType.TENSOR)
      expect([...(tensor.value.data as BigInt64Array)]).toEqual([
        BigInt(INT64_MAX),
        BigInt(TWO_60_PLUS_1),
        BigInt(INT64_MIN),
      ]);
  });

  it('decodes new element types and wide integers to exact tensor values', () => {
    const tensor = (name: string) => model.graph.initializers.get(name)!.constValue!;
    expect([...tensor('u64_typed').data]).toEqual([
      0n,
      BigInt(UINT64_MAX),
      BigInt(TWO_53_PLUS_1),
      BigInt(TWO_60_PLUS_1),
    ]);
    expect(tensor('u64_typed').data).toBeInstanceOf(BigUint64Array);
    expect([...tensor('i64_typed').data]).toEqual([BigInt(INT64_MAX), BigInt(INT64_MIN), BigInt(TWO_60_PLUS_1), -1n]);
    expect([...tensor('f8e4m3').rawBytes()]).toEqual([0x00, 0x38, 0x7e, 0xfe]);
    expect([...tensor('f8e5m2_typed').data]).toEqual([0x3c, 0x7b, 0xfc]);
    expect([...tensor('int4').rawBytes()]).toEqual([0x21, 0xf8, 0x07]);
    expect([...tensor('uint4_typed').data]).toEqual([0x21, 0x0f]);
    expect([...tensor('f4e2m1').rawBytes()]).toEqual([0x7f, 0x02]);
    expect(tensor('bf16').toNumbers()).toEqual([1, -2, Infinity]);
    expect(tensor('bf16_typed').toNumbers()).toEqual([1, -2, Infinity]);
    expect(tensor('bf16_typed').storage).toBe('typed');
    const init = (name: string) => out.graph.initializer.find((t: P) => t.name === name);
    expect(init('u64_typed').uint64_data).toEqual(['0', UINT64_MAX, TWO_53_PLUS_1, TWO_60_PLUS_1]);
    expect(init('i64_typed').int64_data).toEqual([INT64_MAX, INT64_MIN, TWO_60_PLUS_1, '-1']);
    expect(init('bf16_typed').int32_data).toEqual([0x3f80, 0xc000, 0x7f80]);
    expect(init('uint4_typed').int32_data).toEqual([0x21, 0x0f]);
  });
});
