/**
 * External data and tensor storage: saving with a side `.data` file and loading it back,
 * refusing locations that leave the model's folder or data that is missing or short, and
 * exact values for every common element type from raw_data, typed fields and external
 * files (zero-copy over the file buffer when the bytes are aligned). External tensors load
 * lazily: nothing is read until a value is needed, saving streams unread tensors, release()
 * lets go of unchanged bytes, and a data file still being read is never overwritten.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { RegroupError } from '../../compiler/errors.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType, type TypedArray } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { decodeModel } from '../../compiler/onnx/decode.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { releaseExternalBytes, usesExternalData } from '../../compiler/onnx/external-data.js';
import { loadModel, saveModel } from '../../compiler/onnx/io.js';
import { proto } from '../../compiler/onnx/schema.js';
import { resnetTiny } from '../../fixtures/models.js';
import { tempFolders } from '../helpers/temp.js';
import { outputBytes } from './output-bytes.js';

type P = any;

const folder = tempFolders('regroup-external-');

const outputs = (source: string | Uint8Array, model: Model) => outputBytes(source, model, 3);

describe('saveModel / loadModel with external data', () => {
  it('writes the model and <name>.data beside it and reads both back with identical tensors', async () => {
    const dir = folder('save');
    const model = resnetTiny();
    const file = path.join(dir, 'resnet-tiny.onnx');
    const result = saveModel(model, file, { externalData: true });
    const dataFile = `${file}.data`;
    expect(result.externalFile).toBe(dataFile);
    expect(fs.statSync(dataFile).size).toBe(result.externalBytes);
    expect(fs.readdirSync(dir).sort()).toEqual(['resnet-tiny.onnx', 'resnet-tiny.onnx.data']);
    expect(fs.statSync(file).size).toBeLessThan(20_000);

    const loaded = loadModel(file);
    loaded.graph.verify();
    let external = 0;
    for (const [name, value] of model.graph.initializers) {
      const back = loaded.graph.initializers.get(name)?.constValue;
      expect(back, name).toBeDefined();
      expect(back!.dims).toEqual(value.constValue!.dims);
      expect(Buffer.from(back!.rawBytes()).equals(Buffer.from(value.constValue!.rawBytes())), name).toBe(true);
      if (back!.external) {
        external++;
        expect(back!.external.location).toBe('resnet-tiny.onnx.data');
        expect(back!.external.offset % 4096).toBe(0);
      }
    }
    expect(external).toBeGreaterThan(0);
    // Loaded with its data, the model encodes inline to exactly what the in-memory model gives.
    expect(Buffer.from(encodeModel(loaded).bytes).equals(Buffer.from(encodeModel(model).bytes))).toBe(true);

    const reference = await outputs(encodeModel(model).bytes, model);
    expect(await outputs(file, model)).toEqual(reference);
    expect(await outputs(encodeModel(loaded).bytes, loaded)).toEqual(reference);
  });

  it('keeps small tensors inline below the threshold', () => {
    const dir = folder('threshold');
    const file = path.join(dir, 'm.onnx');
    saveModel(resnetTiny(), file, { externalData: { threshold: 1 << 30 } });
    const loaded = loadModel(file);
    expect([...loaded.graph.initializers.values()].every((v) => v.constValue!.external === undefined)).toBe(true);
  });
});

describe('external data locations that are refused', () => {
  let dir: string;
  let outside: string;
  const modelFile = () => path.join(dir, 'model.onnx');

  beforeAll(() => {
    const root = folder('refuse');
    dir = path.join(root, 'model');
    outside = path.join(root, 'outside');
    fs.mkdirSync(dir);
    fs.mkdirSync(outside);
    const b = new GraphBuilder({ seed: 1 });
    const x = b.input('x', [1, 16]);
    b.output(b.op('MatMul', [x, b.weight('w', [16, 16])]), { dtype: DataType.FLOAT, shape: [1, 16] });
    saveModel(b.model, path.join(dir, 'pristine.onnx'), { externalData: { threshold: 0 } });
    // The same bytes outside the model folder, so refusals are about the path, not a missing file.
    fs.copyFileSync(path.join(dir, 'pristine.onnx.data'), path.join(outside, 'outside.data'));
  });

  /** Write model.onnx whose tensor 'w' points at `location`. */
  function pointAt(location: string): void {
    const m: P = proto.ModelProto.decode(fs.readFileSync(path.join(dir, 'pristine.onnx')));
    const w = m.graph.initializer.find((t: P) => t.name === 'w');
    w.external_data.find((e: P) => e.key === 'location').value = location;
    fs.writeFileSync(modelFile(), proto.ModelProto.encode(m).finish());
  }

  function expectRefusal(location: string, why: RegExp): void {
    let caught: unknown;
    try {
      loadModel(modelFile());
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RegroupError);
    const err = caught as RegroupError;
    expect(err.code).toBe('external-data');
    expect(err.message).toContain(`tensor 'w'`);
    expect(err.message).toContain(location);
    expect(err.message).toMatch(why);
  }

  it('loads when the location is a plain file in the folder (control)', () => {
    pointAt('pristine.onnx.data');
    expect(loadModel(modelFile()).graph.initializers.get('w')!.constValue!.size).toBe(256);
  });

  it('refuses a location that climbs out with ../', () => {
    pointAt('../outside/outside.data');
    expectRefusal('../outside/outside.data', /climbs out/);
    pointAt('sub/../../outside/outside.data');
    expectRefusal('sub/../../outside/outside.data', /climbs out/);
  });

  it('refuses an absolute path', () => {
    const location = path.join(outside, 'outside.data');
    pointAt(location);
    expectRefusal(location, /absolute/);
  });

  it('refuses a symlink (to a file or through a folder) that leads outside the folder', () => {
    fs.symlinkSync(path.join(outside, 'outside.data'), path.join(dir, 'link.data'));
    pointAt('link.data');
    expectRefusal('link.data', /link .*outside the model folder/);
    fs.symlinkSync(outside, path.join(dir, 'linked-dir'));
    pointAt('linked-dir/outside.data');
    expectRefusal('linked-dir/outside.data', /outside the model folder/);
  });

  it('refuses a missing data file', () => {
    pointAt('missing.data');
    expectRefusal('missing.data', /does not exist/);
  });

  it('refuses a truncated data file', () => {
    fs.copyFileSync(path.join(dir, 'pristine.onnx.data'), path.join(dir, 'short.data'));
    fs.truncateSync(path.join(dir, 'short.data'), 100);
    pointAt('short.data');
    expectRefusal('short.data', /past the end.*truncated/);
  });
});

interface DTypeCase {
  dtype: DataType;
  /** Stored elements (bit patterns for the half floats). */
  data: TypedArray;
  /** toNumbers() of those elements. */
  numbers: number[];
  /** The typed TensorProto field and its contents. */
  typed: Record<string, unknown>;
}

const f16 = Uint16Array.of(0x0000, 0x3c00, 0xc000, 0x7bff, 0x0001, 0xfc00);
const bf16 = Uint16Array.of(0x0000, 0x3f80, 0xc000, 0x7f7f, 0x0001, 0xff80);
const i64 = BigInt64Array.of(-(2n ** 63n), -1n, 0n, 2n ** 53n + 1n, 2n ** 63n - 1n);

const DTYPES: Record<string, DTypeCase> = {
  float32: {
    dtype: DataType.FLOAT,
    data: Float32Array.of(0, -1.5, 3.25, 65504, 2 ** -126, -Infinity),
    numbers: [0, -1.5, 3.25, 65504, 2 ** -126, -Infinity],
    typed: { float_data: [0, -1.5, 3.25, 65504, 2 ** -126, -Infinity] },
  },
  float16: {
    dtype: DataType.FLOAT16,
    data: f16,
    numbers: [0, 1, -2, 65504, 2 ** -24, -Infinity],
    typed: { int32_data: [...f16] },
  },
  bfloat16: {
    dtype: DataType.BFLOAT16,
    data: bf16,
    numbers: [0, 1, -2, 3.3895313892515355e38, 2 ** -133, -Infinity],
    typed: { int32_data: [...bf16] },
  },
  int8: {
    dtype: DataType.INT8,
    data: Int8Array.of(-128, -1, 0, 1, 127),
    numbers: [-128, -1, 0, 1, 127],
    typed: { int32_data: [-128, -1, 0, 1, 127] },
  },
  uint8: {
    dtype: DataType.UINT8,
    data: Uint8Array.of(0, 1, 128, 255),
    numbers: [0, 1, 128, 255],
    typed: { int32_data: [0, 1, 128, 255] },
  },
  int32: {
    dtype: DataType.INT32,
    data: Int32Array.of(-(2 ** 31), -1, 0, 2 ** 31 - 1),
    numbers: [-(2 ** 31), -1, 0, 2 ** 31 - 1],
    typed: { int32_data: [-(2 ** 31), -1, 0, 2 ** 31 - 1] },
  },
  int64: {
    dtype: DataType.INT64,
    data: i64,
    numbers: [...i64].map(Number),
    typed: { int64_data: [...i64].map(String) },
  },
  bool: {
    dtype: DataType.BOOL,
    data: Uint8Array.of(0, 1, 1, 0),
    numbers: [0, 1, 1, 0],
    typed: { int32_data: [0, 1, 1, 0] },
  },
  double: {
    dtype: DataType.DOUBLE,
    data: Float64Array.of(0, -1.5, Math.PI, 1e-300, Number.MAX_VALUE, -Infinity),
    numbers: [0, -1.5, Math.PI, 1e-300, Number.MAX_VALUE, -Infinity],
    typed: { double_data: [0, -1.5, Math.PI, 1e-300, Number.MAX_VALUE, -Infinity] },
  },
};

/** Name paddings 0..7 move a lone tensor's raw_data through every alignment in its file. */
const PADDINGS = [0, 1, 2, 3, 4, 5, 6, 7];

/** Model bytes whose only initializers are the given TensorProtos. */
function modelWith(initializers: P[]): Uint8Array {
  const b = new GraphBuilder({ seed: 2 });
  const x = b.input('x', [1]);
  b.output(b.op('Identity', [x]), { dtype: DataType.FLOAT, shape: [1] });
  const m: P = proto.ModelProto.decode(encodeModel(b.model).bytes);
  m.graph.initializer = initializers;
  return proto.ModelProto.encode(proto.ModelProto.fromObject(m)).finish();
}

const rawProto = (name: string, c: DTypeCase): P => ({
  name,
  dims: [c.data.length],
  data_type: c.dtype,
  raw_data: new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength),
});
const typedProto = (name: string, c: DTypeCase): P => ({ name, dims: [c.data.length], data_type: c.dtype, ...c.typed });

/** Every case as raw_data and as its typed field. */
const dtypeModelBytes = () =>
  modelWith(Object.entries(DTYPES).flatMap(([key, c]) => [rawProto(`${key}_raw`, c), typedProto(`${key}_typed`, c)]));

function expectValues(t: Tensor, c: DTypeCase, what: string): void {
  expect(t.dtype, what).toBe(c.dtype);
  expect(t.data.constructor, what).toBe(c.data.constructor);
  expect([...t.data], what).toEqual([...c.data]);
  expect(t.toNumbers(), what).toEqual(c.numbers);
}

describe('every element type loads with exact values', () => {
  let file: string;
  let fileBytes: Buffer;
  let model: Model;

  beforeAll(() => {
    file = path.join(folder('dtypes'), 'dtypes.onnx');
    fs.writeFileSync(file, dtypeModelBytes());
    fileBytes = fs.readFileSync(file);
    model = decodeModel(fileBytes, { source: file, baseDir: path.dirname(file) });
  });
  const tensor = (m: Model, name: string) => m.graph.initializers.get(name)!.constValue!;

  for (const [key, c] of Object.entries(DTYPES)) {
    it(`${key}: from raw_data, zero-copy over the file buffer when aligned`, () => {
      const itemSize = c.data.BYTES_PER_ELEMENT;
      let aligned = 0;
      let copied = 0;
      for (const pad of PADDINGS) {
        const name = `t${'p'.repeat(pad)}`;
        const single = path.join(path.dirname(file), `${key}-${pad}.onnx`);
        fs.writeFileSync(single, modelWith([rawProto(name, c)]));
        const bytes = fs.readFileSync(single);
        const t = tensor(decodeModel(bytes, { source: single }), name);
        const raw = t.rawBytes();
        expect(raw.buffer).toBe(bytes.buffer);
        expectValues(t, c, `${key} pad ${pad}`);
        expect(t.storage).toBe('raw');
        if (raw.byteOffset % itemSize === 0) {
          aligned++;
          expect(t.data.buffer, `${key} pad ${pad} should be a view of the file`).toBe(bytes.buffer);
          expect(t.rawBytes().buffer).toBe(bytes.buffer);
        } else {
          copied++;
          expect(t.data.buffer).not.toBe(bytes.buffer);
          // The aligned copy is now the tensor's only storage: a write to data reaches rawBytes().
          expect(t.rawBytes().buffer).toBe(t.data.buffer);
        }
      }
      expect(aligned).toBeGreaterThan(0);
      if (itemSize > 1) expect(copied).toBeGreaterThan(0);
    });

    it(`${key}: from raw_data in a model with every type`, () => {
      const t = tensor(model, `${key}_raw`);
      expectValues(t, c, `${key} raw`);
      expect(t.storage).toBe('raw');
    });

    it(`${key}: from its typed field`, () => {
      const t = tensor(model, `${key}_typed`);
      expectValues(t, c, `${key} typed`);
      expect(t.storage).toBe('typed');
    });
  }

  it('loadModel gives the same values, and re-encoding keeps each storage form byte for byte', () => {
    const loaded = loadModel(file);
    for (const [key, c] of Object.entries(DTYPES)) {
      expectValues(tensor(loaded, `${key}_typed`), c, `${key} typed via loadModel`);
      expectValues(tensor(loaded, `${key}_raw`), c, `${key} raw via loadModel`);
    }
    expect(Buffer.from(encodeModel(loaded).bytes).equals(fileBytes)).toBe(true);
  });

  it('every type also loads from an external data file, zero-copy over the bytes read', () => {
    const dir = folder('dtypes-external');
    const out = path.join(dir, 'dtypes.onnx');
    saveModel(model, out, { externalData: { threshold: 0 } });
    const loaded = loadModel(out);
    for (const [key, c] of Object.entries(DTYPES)) {
      for (const name of [`${key}_raw`, `${key}_typed`]) {
        const t = tensor(loaded, name);
        expect(t.external?.location, name).toBe('dtypes.onnx.data');
        expectValues(t, c, `${name} external`);
        expect(t.data.buffer).toBe(t.rawBytes().buffer);
      }
    }
  });
});

describe('external tensors load lazily', () => {
  let dir: string;
  let file: string;
  let reference: Model;
  const tensors = (m: Model) => [...m.graph.initializers.values()].map((v) => v.constValue!);
  const bytesOf = (m: Model) => new Map(tensors(m).map((t) => [t.name, Buffer.from(t.rawBytes())]));

  beforeAll(() => {
    dir = folder('lazy');
    file = path.join(dir, 'm.onnx');
    reference = resnetTiny();
    saveModel(reference, file, { externalData: { threshold: 0 } });
  });

  it('reads no tensor bytes until a value is asked for, then the right ones', () => {
    const model = loadModel(file);
    expect(usesExternalData(model)).toBe(true);
    expect(tensors(model).every((t) => !t.loaded && t.sourceFile === `${file}.data`)).toBe(true);
    const want = bytesOf(reference);
    const conv = tensors(model).find((t) => t.dims.length === 4)!;
    expect(Buffer.from(conv.rawBytes()).equals(want.get(conv.name)!)).toBe(true);
    expect(conv.loaded).toBe(true);
    expect(conv.sourceFile).toBeUndefined();
    expect(tensors(model).filter((t) => t.loaded)).toHaveLength(1);
    expect(conv.loaded).toBe(true);
    expect(bytesOf(model)).toEqual(want);
  });

  it('saving to a new data file streams the tensors without loading them, bytes unchanged', () => {
    const model = loadModel(file);
    const out = path.join(folder('lazy-out'), 'copy.onnx');
    const result = saveModel(model, out, { externalData: { threshold: 0 } });
    expect(tensors(model).some((t) => t.loaded)).toBe(false);
    expect(fs.readFileSync(`${out}.data`).equals(fs.readFileSync(`${file}.data`))).toBe(true);
    expect(result.externalBytes).toBe(fs.statSync(`${file}.data`).size);
    expect(bytesOf(loadModel(out))).toEqual(bytesOf(reference));
  });

  it('release() lets go of bytes that still equal the file and keeps bytes that were written', () => {
    const model = loadModel(file);
    const [a, b] = tensors(model).filter((t) => t.dtype === DataType.FLOAT && t.size > 1);
    const aBefore = Float32Array.from(a!.data as Float32Array);
    (b!.data as Float32Array)[0] = 1234.5;
    expect(a!.release()).toBe(true);
    expect(a!.loaded).toBe(false);
    expect([...(a!.data as Float32Array)]).toEqual([...aBefore]);
    expect(b!.release()).toBe(false);
    expect(b!.loaded).toBe(true);
    expect((b!.data as Float32Array)[0]).toBe(1234.5);
    // releaseExternalBytes frees exactly the unchanged loaded tensors (a again; b was written).
    expect(releaseExternalBytes(model)).toBe(a!.byteLength);
    expect(
      tensors(model)
        .filter((t) => t.loaded)
        .map((t) => t.name),
    ).toEqual([b!.name]);
  });

  it('a clone reads its own copy from the file, and release() cannot undo a write to it', () => {
    const model = loadModel(file);
    const original = tensors(model).find((t) => t.dims.length === 4)!;
    const copy = original.clone();
    expect(copy.loaded).toBe(false);
    (copy.data as Float32Array)[0] = -7;
    expect((original.data as Float32Array)[0]).not.toBe(-7);
    expect(copy.release()).toBe(false);
    expect(original.release()).toBe(true);
  });

  it('a data file that changes after loading gives a clear error when the bytes are read', () => {
    const copyDir = folder('lazy-changed');
    const copy = path.join(copyDir, 'm.onnx');
    saveModel(reference, copy, { externalData: { threshold: 0 } });
    const model = loadModel(copy);
    const last = tensors(model).at(-1)!;
    fs.truncateSync(`${copy}.data`, 0);
    expect(() => last.data).toThrowError(/external data file 'm\.onnx\.data' .* ends early since the model was loaded/);
    fs.rmSync(`${copy}.data`);
    expect(() => tensors(model)[0]!.data).toThrowError(/cannot be opened \(ENOENT\)/);
  });

  it('refuses to write over a data file the model still reads from, even with force', () => {
    const copyDir = folder('lazy-overwrite');
    const copy = path.join(copyDir, 'm.onnx');
    saveModel(reference, copy, { externalData: { threshold: 0 } });
    const before = fs.readFileSync(`${copy}.data`);
    const model = loadModel(copy);
    let caught: unknown;
    try {
      saveModel(model, copy, { externalData: true, force: true });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RegroupError);
    expect((caught as RegroupError).code).toBe('usage');
    expect((caught as RegroupError).message).toMatch(
      /cannot write .*m\.onnx\.data: the model's weights are still read from it/,
    );
    expect(fs.readFileSync(`${copy}.data`).equals(before)).toBe(true);
    // Once every tensor is in memory the file is free to be replaced.
    for (const t of tensors(model)) t.rawBytes();
    saveModel(model, copy, { externalData: true, force: true });
    expect(bytesOf(loadModel(copy))).toEqual(bytesOf(reference));
  });

  it('refuses to write a model over 2 GiB inline, before reading any weight', () => {
    const b = new GraphBuilder({ seed: 4 });
    const x = b.input('x', [1]);
    let reads = 0;
    const huge = 2 ** 29; // float32 elements: 2 GiB
    const source = {
      byteLength: huge * 4,
      file: '/nowhere/huge.data',
      read: () => {
        reads++;
        return new Uint8Array(0);
      },
      matches: () => false,
    };
    const w = b.initializer('w', Tensor.fromSource(DataType.FLOAT, [huge], source, { name: 'w' }));
    b.output(b.op('Add', [x, w]), { dtype: DataType.FLOAT, shape: [huge] });
    const out = path.join(folder('huge'), 'huge.onnx');
    expect(() => saveModel(b.model, out)).toThrowError(
      /cannot write .*huge\.onnx as one file: its 2\.00 GiB pass protobuf's 2 GiB limit; .*--external-data/,
    );
    expect(reads).toBe(0);
    expect(fs.existsSync(out)).toBe(false);
  });
});
