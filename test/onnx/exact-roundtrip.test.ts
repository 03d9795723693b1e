/**
 * decode → encode gives back the message it read, field presence included: a field written
 * with its default value stays written, a field left out stays out, unknown fields come
 * back. Inputs written canonically (as the reference serializer writes them) must come back
 * byte for byte; others must come back as their canonical form, equal field for field.
 *
 * The oracles share nothing with compiler/onnx: wire.ts reads and writes protobuf by hand,
 * and onnx-proto (ONNX 1.10, protobufjs 6 static code) decodes with presence for the fields
 * it knows.
 */
import fs from 'node:fs';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../compiler/ir/dtype.js';
import { decodeModel } from '../../compiler/onnx/decode.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { allSharedModels, haveShared, SHARED_FIXTURES } from '../helpers/shared.js';
import { type Pick, presenceFixture, seededPick, type SlotState } from './presence-fixtures.js';
import { canonicalBytes, isCanonical, parseWire, reorderedBytes, wireDifference } from './wire.js';

const { onnx } = onnxProto;

const roundTrip = (bytes: Uint8Array, source = 'fixture') => encodeModel(decodeModel(bytes, { source })).bytes;
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));
/** Field-for-field difference with presence, by the hand-written reader. */
const difference = (out: Uint8Array, original: Uint8Array) => wireDifference(parseWire(out), parseWire(original));

/** onnx-proto's view: only fields the message has (`defaults: false`), so presence shows as keys. */
const present = (bytes: Uint8Array) =>
  onnx.ModelProto.toObject(onnx.ModelProto.decode(bytes), { longs: String, bytes: String, defaults: false });

const everywhere =
  (state: SlotState): Pick =>
  () =>
    state;

const PICKS: [string, Pick][] = [
  ['every optional field set', everywhere('set')],
  ['every optional field written with its default', everywhere('explicit')],
  ['every optional field left out', everywhere('omitted')],
  ...[1, 2, 3, 4, 5, 6].map((seed): [string, Pick] => [`a seeded mix (seed ${seed})`, seededPick(seed)]),
];

describe('exact round trip: generated fixtures', () => {
  it('each optional field, written with its default or left out (the others set), comes back as it was', () => {
    const slots = new Set<string>();
    presenceFixture({ pick: everywhere('set'), unknownFields: false }, slots);
    expect(slots.size).toBeGreaterThan(100);
    const failures: string[] = [];
    for (const slot of slots) {
      const variant = (state: SlotState) =>
        canonicalBytes(presenceFixture({ pick: (s) => (s === slot ? state : 'set'), unknownFields: false }));
      const explicit = variant('explicit');
      const omitted = variant('omitted');
      if (same(explicit, omitted)) failures.push(`${slot}: the slot does not change the message`);
      for (const [state, original] of [
        ['explicit', explicit],
        ['omitted', omitted],
      ] as const) {
        const out = roundTrip(original);
        if (!same(out, original)) failures.push(`${slot} ${state}: ${difference(out, original)}`);
      }
    }
    expect(failures).toEqual([]);
  });

  for (const unknownFields of [false, true]) {
    for (const [what, pick] of PICKS) {
      it(`${what}${unknownFields ? ', unknown fields in every message' : ''}: same bytes back`, () => {
        const original = canonicalBytes(presenceFixture({ pick, unknownFields }));
        expect(isCanonical(original)).toBe(true);
        const out = roundTrip(original);
        expect(difference(out, original)).toBeUndefined();
        expect(same(out, original)).toBe(true);
        expect(present(out)).toEqual(present(original));
      });
    }
  }

  it('keeps the empty tensor name of a ConstantOfShape value and an opset_import without a domain', () => {
    const explicit = present(
      roundTrip(canonicalBytes(presenceFixture({ pick: everywhere('explicit'), unknownFields: false }))),
    );
    const omitted = present(
      roundTrip(canonicalBytes(presenceFixture({ pick: everywhere('omitted'), unknownFields: false }))),
    );
    const valueTensor = (m: any) => m.graph.node.find((n: any) => n.opType === 'ConstantOfShape').attribute[0].t;
    expect(valueTensor(explicit)).toHaveProperty('name', '');
    expect(valueTensor(omitted)).not.toHaveProperty('name');
    expect(explicit.opsetImport[0]).toHaveProperty('domain', '');
    expect(omitted.opsetImport[0]).not.toHaveProperty('domain');
    expect(explicit.opsetImport[0]).toHaveProperty('version', '0');
    expect(omitted.opsetImport[0]).not.toHaveProperty('version');
    // The same fields on nodes, graphs, value infos and tensor types.
    expect(explicit.graph.node[0]).toMatchObject({ name: '', domain: '', docString: '' });
    expect(omitted.graph.node[0]).not.toHaveProperty('name');
    expect(omitted.graph.node[0]).not.toHaveProperty('domain');
    expect(explicit.graph).toHaveProperty('name', '');
    expect(omitted.graph).not.toHaveProperty('name');
    expect(explicit.graph.input[0].type.tensorType).toHaveProperty('elemType', 0);
    expect(omitted.graph.input[0].type.tensorType).not.toHaveProperty('elemType');
  });

  it('writes an input that is not canonical in its canonical form, equal field for field', () => {
    const message = presenceFixture({ pick: seededPick(9), unknownFields: true });
    // The graph first, unknown fields before the known ones: valid, but not how protobuf writes it.
    const shuffled = reorderedBytes(message, [7, 1, 8], true);
    expect(isCanonical(shuffled)).toBe(false);
    const out = roundTrip(shuffled);
    expect(difference(out, shuffled)).toBeUndefined();
    expect(same(out, canonicalBytes(message))).toBe(true);
  });

  it('unpacks repeated numbers that another writer packed (onnx-proto packs attribute ints and floats)', () => {
    const canonical = canonicalBytes(presenceFixture({ pick: everywhere('set'), unknownFields: false }));
    const packed = onnx.ModelProto.encode(onnx.ModelProto.decode(canonical)).finish();
    expect(isCanonical(packed)).toBe(false);
    const out = roundTrip(packed);
    expect(difference(out, packed)).toBeUndefined();
    expect(same(out, canonicalBytes(parseWire(packed)))).toBe(true);
  });

  it('a clone encodes to the same bytes as the model it was copied from', () => {
    const original = canonicalBytes(presenceFixture({ pick: seededPick(4), unknownFields: true }));
    const { model } = decodeModel(original).clone();
    expect(same(encodeModel(model).bytes, original)).toBe(true);
  });

  it('recorded presence never overrides a value a pass changed', () => {
    const original = canonicalBytes(presenceFixture({ pick: everywhere('explicit'), unknownFields: false }));
    const model = decodeModel(original);
    const add = model.graph.nodeList().find((n) => n.opType === 'Add')!;
    add.name = 'renamed';
    add.domain = 'ai.onnx';
    model.opsetImports = [{ domain: '', version: 18 }];
    const x = model.graph.inputs[0]!;
    // The third dimension was unknown (no dim_value): a 0 there is a value and must be written.
    x.type = { dtype: DataType.FLOAT, shape: [1, 3, 0, 0] };
    const out = present(encodeModel(model).bytes);
    expect(out.graph.node[0]).toMatchObject({ name: 'renamed', domain: 'ai.onnx' });
    expect(out.opsetImport).toEqual([{ domain: '', version: '18' }]);
    expect(out.graph.input[0].type.tensorType.shape.dim.map((d: any) => d.dimValue)).toEqual(['1', '3', '0', '0']);
    expect(out.graph.input[0].type.tensorType).toHaveProperty('elemType', DataType.FLOAT);
  });
});

describe.skipIf(!haveShared)('exact round trip: every model in ../shared/fixtures', () => {
  const files = haveShared
    ? fs
        .readdirSync(SHARED_FIXTURES, { recursive: true })
        .map(String)
        .filter((f) => f.endsWith('.onnx'))
        .sort()
    : [];
  const identical: string[] = [];
  const canonical: string[] = [];

  it('finds the models', () => {
    expect(files.length).toBeGreaterThanOrEqual(allSharedModels().length);
    expect(files.length).toBeGreaterThan(0);
  });

  for (const file of files) {
    it(file, () => {
      const full = path.join(SHARED_FIXTURES, file);
      const original = fs.readFileSync(full);
      const out = encodeModel(decodeModel(original, { baseDir: path.dirname(full), source: file })).bytes;
      expect(difference(out, original)).toBeUndefined();
      if (isCanonical(original)) {
        canonical.push(file);
        expect(same(out, original)).toBe(true);
      } else expect(same(out, canonicalBytes(parseWire(original)))).toBe(true);
      if (same(out, original)) identical.push(file);
    });
  }

  it('reports which models came back byte-identical', () => {
    console.log(
      `[exact round trip] ${identical.length}/${files.length} shared models byte-identical:\n  ${identical.join('\n  ')}`,
    );
    expect(identical).toEqual(canonical);
  });
});
