/**
 * The latency table: a cached file is used only under exactly its own key (another CPU,
 * onnxruntime, batch or format version, or a file that does not parse, is ignored and
 * rebuilt); writes replace the file whole; interpolation is exact at measured points and
 * bilinear (hence monotone over monotone corners) between them; layerShapes finds every
 * Conv and Gemm with its geometry; profileModel measures once and then reuses the cache.
 * No test asserts a timing: the machine is shared and noisy.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RegroupError } from '../../compiler/errors.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import type { Model } from '../../compiler/ir/model.js';
import { resnetTiny } from '../../fixtures/models.js';
import {
  candidateKey,
  candidates,
  layerMs,
  layerShapes,
  modelKeyOf,
  profileModel,
  simdBlockOf,
  singleLayerModel,
  widthGrid,
  type LayerShape,
} from '../../runtime/latency/profile.js';
import {
  LatencyTable,
  openTable,
  saveTable,
  tableKey,
  tablePath,
  TABLE_FORMAT_VERSION,
  type TableKey,
} from '../../runtime/latency/table.js';
import { createSession, run } from '../../runtime/session.js';
import { randomFeeds } from '../../runtime/inputs.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-latency-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => fs.mkdtempSync(path.join(tmp, `cache${dirs++}-`));

const ENTRY = { medianMs: 1.5, p90Ms: 1.75, minMs: 1.25, runs: 11 };

/** Save a one-entry table under `key` into `dir`, then rewrite its stored key with `edit`. */
function tamperedFile(dir: string, key: TableKey, edit: (doc: { key: Record<string, unknown> }) => void): string {
  const table = new LatencyTable(key, tablePath(dir, key));
  table.set('gemm in=8 out=8', ENTRY);
  saveTable(table);
  const doc = JSON.parse(fs.readFileSync(table.file, 'utf8'));
  edit(doc);
  fs.writeFileSync(table.file, JSON.stringify(doc));
  return table.file;
}

describe('latency table cache', () => {
  const key = tableKey({ ep: 'cpu', batch: 1 });

  it('keys this machine: CPU model, onnxruntime version, batch, threads and format', () => {
    expect(key.cpu.length).toBeGreaterThan(0);
    expect(key.ort).toMatch(/^\d+\.\d+\.\d+/);
    expect(key).toMatchObject({ ep: 'cpu', batch: 1, threads: 0, format: TABLE_FORMAT_VERSION });
    const dir = freshDir();
    expect(tablePath(dir, key)).not.toBe(tablePath(dir, { ...key, batch: 8 }));
    expect(tablePath(dir, key)).not.toBe(tablePath(dir, { ...key, ort: '0.0.1' }));
    expect(tablePath(dir, key)).toBe(tablePath(dir, tableKey({ ep: 'cpu', batch: 1, threads: 0 })));
  });

  it('round-trips its entries under the same key', () => {
    const dir = freshDir();
    const { table, note } = openTable(key, dir);
    expect(note).toBeUndefined();
    expect(table.size).toBe(0);
    table.set('conv cin=8 cout=8 g=1 k=3x3 s=1x1 p=1,1,1,1 d=1x1 in=8x8', ENTRY);
    saveTable(table);
    const again = openTable(key, dir);
    expect(again.note).toBeUndefined();
    expect([...again.table.entries]).toEqual([...table.entries]);
    expect(JSON.parse(fs.readFileSync(table.file, 'utf8')).key).toEqual(JSON.parse(JSON.stringify(key)));
  });

  const mismatches: [string, (doc: { key: Record<string, unknown> }) => void, RegExp][] = [
    ['another CPU', (d) => (d.key.cpu = 'Some Other CPU 9000'), /cpu "Some Other CPU 9000"/],
    ['another onnxruntime', (d) => (d.key.ort = '1.2.3'), /ort "1\.2\.3"/],
    ['another batch', (d) => (d.key.batch = 8), /batch 8/],
    ['another format version', (d) => (d.key.format = TABLE_FORMAT_VERSION + 1), /format/],
    ['other SIMD flags', (d) => (d.key.cpuFlags = ['avx512f']), /cpuFlags/],
    ['an unknown key field', (d) => (d.key.gpu = 'x'), /unknown field/],
  ];
  it.each(mismatches)('ignores and rebuilds a file measured with %s', (_what, edit, why) => {
    const dir = freshDir();
    const file = tamperedFile(dir, key, edit);
    const { table, note } = openTable(key, dir);
    expect(table.size).toBe(0);
    expect(table.file).toBe(file);
    expect(note).toMatch(why);
    expect(note).toContain('rebuilt');
    table.set('gemm in=16 out=16', ENTRY);
    saveTable(table);
    const rebuilt = openTable(key, dir);
    expect(rebuilt.note).toBeUndefined();
    expect([...rebuilt.table.entries.keys()]).toEqual(['gemm in=16 out=16']);
  });

  it('ignores a file that does not parse, or whose entries are malformed', () => {
    const dir = freshDir();
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(tablePath(dir, key), '{"format": "regroup-latency-table", "key": {');
    const corrupt = openTable(key, dir);
    expect(corrupt.table.size).toBe(0);
    expect(corrupt.note).toMatch(/does not parse/);
    tamperedFile(
      dir,
      key,
      (d) => ((d as unknown as { entries: unknown }).entries = { 'gemm in=8 out=8': { medianMs: 'fast' } }),
    );
    const malformed = openTable(key, dir);
    expect(malformed.table.size).toBe(0);
    expect(malformed.note).toMatch(/malformed/);
  });

  it('writes atomically: a new file replaces the old one whole, no temporary file stays', () => {
    const dir = freshDir();
    const { table } = openTable(key, dir);
    table.set('gemm in=8 out=8', ENTRY);
    saveTable(table);
    const before = fs.statSync(table.file).ino;
    for (let k = 0; k < 50; k++) table.set(`gemm in=8 out=${16 + k}`, ENTRY);
    saveTable(table);
    expect(fs.statSync(table.file).ino).not.toBe(before);
    expect(fs.readdirSync(dir)).toEqual([path.basename(table.file)]);
    expect(Object.keys(JSON.parse(fs.readFileSync(table.file, 'utf8')).entries)).toHaveLength(51);
  });

  it('keeps what another run saved to the same file meanwhile, and never merges an untrusted file', () => {
    const dir = freshDir();
    const mine = openTable(key, dir).table;
    const theirs = openTable(key, dir).table;
    theirs.set('gemm in=8 out=8', ENTRY);
    saveTable(theirs);
    mine.set('gemm in=16 out=16', { ...ENTRY, medianMs: 9 });
    mine.set('gemm in=8 out=8', { ...ENTRY, medianMs: 7 });
    saveTable(mine);
    const both = openTable(key, dir).table;
    expect(Object.fromEntries(both.entries)).toEqual({
      'gemm in=8 out=8': { ...ENTRY, medianMs: 7 },
      'gemm in=16 out=16': { ...ENTRY, medianMs: 9 },
    });
    tamperedFile(dir, key, (d) => (d.key.cpu = 'Some Other CPU'));
    const fresh = openTable(key, dir).table;
    fresh.set('gemm in=32 out=32', ENTRY);
    saveTable(fresh);
    expect([...openTable(key, dir).table.entries.keys()]).toEqual(['gemm in=32 out=32']);
  });

  it('creates the cache folder, and names it when it cannot', () => {
    const dir = path.join(freshDir(), 'a', 'b');
    const { table } = openTable(key, dir);
    saveTable(table);
    expect(fs.existsSync(table.file)).toBe(true);
    const blocker = path.join(freshDir(), 'file');
    fs.writeFileSync(blocker, '');
    const blocked = openTable(key, path.join(blocker, 'sub')).table;
    expect(() => saveTable(blocked)).toThrow(RegroupError);
    expect(() => saveTable(blocked)).toThrow(/latency cache folder/);
  });
});

/** A conv shape by hand (a resnet 3×3 stage layer). */
function convShape(cin: number, cout: number, group = 1): LayerShape {
  const shape: LayerShape = {
    kind: 'conv',
    key: '',
    layers: [],
    cin,
    cout,
    group,
    kernel: [3, 3],
    strides: [1, 1],
    pads: [1, 1, 1, 1],
    dilations: [1, 1],
    inputSize: [14, 14],
    rows: 1,
    dtype: 'float32',
  };
  shape.key = candidateKey(shape, shape);
  return shape;
}

/** A table (AVX2 key: SIMD block 8) filled at the shape's candidates with ms = f(structure). */
function syntheticTable(shape: LayerShape, f: (cin: number, cout: number, group: number) => number): LatencyTable {
  const key: TableKey = { ...tableKey({ ep: 'cpu', batch: 1 }), cpuFlags: ['avx', 'avx2', 'fma'], arch: 'x64' };
  const table = new LatencyTable(key, path.join(tmp, 'synthetic.json'));
  for (const s of candidates(shape, simdBlockOf(key)))
    table.set(candidateKey(shape, s), { medianMs: f(s.cin, s.cout, s.group), p90Ms: 0, minMs: 0, runs: 1 });
  return table;
}

describe('layerMs', () => {
  const shape = convShape(64, 128);
  // Monotone, not bilinear: interpolation must be exact only at grid points.
  const f = (cin: number, cout: number, group: number) => (Math.sqrt(cin) * cout ** 1.3) / 1000 / group + 0.05;
  const table = syntheticTable(shape, f);

  it('measures widths on the SIMD grid and groups whose width is at least a block', () => {
    expect(widthGrid(64, 8)).toEqual([16, 24, 32, 40, 48, 56, 64]);
    expect(widthGrid(128, 8)).toEqual([32, 48, 64, 80, 96, 112, 128]);
    expect(widthGrid(3, 8)).toEqual([3]);
    const structures = candidates(shape, 8);
    expect(structures).toHaveLength(7 * 7 + 3);
    expect(structures.filter((s) => s.group > 1)).toEqual([
      { cin: 64, cout: 128, group: 2 },
      { cin: 64, cout: 128, group: 4 },
      { cin: 64, cout: 128, group: 8 },
    ]);
    expect(
      candidates(convShape(32, 32), 8)
        .filter((s) => s.group > 1)
        .map((s) => s.group),
    ).toEqual([2, 4]);
  });

  it('is exact at every measured point', () => {
    for (const s of candidates(shape, 8)) expect(layerMs(table, shape, s)).toBe(f(s.cin, s.cout, s.group));
  });

  it('is monotone between measured points on both sides, and bilinear within a cell', () => {
    for (const cout of [32, 57, 100, 128]) {
      let previous = -Infinity;
      for (let cin = 16; cin <= 64; cin++) {
        const ms = layerMs(table, shape, { cin, cout, group: 1 });
        expect(ms).toBeGreaterThanOrEqual(previous);
        previous = ms;
      }
    }
    for (const cin of [16, 37, 64]) {
      let previous = -Infinity;
      for (let cout = 32; cout <= 128; cout++) {
        const ms = layerMs(table, shape, { cin, cout, group: 1 });
        expect(ms).toBeGreaterThanOrEqual(previous);
        previous = ms;
      }
    }
    // Halfway between 24 and 32 input channels, a quarter between 48 and 64 outputs.
    const expected = 0.375 * f(24, 48, 1) + 0.375 * f(32, 48, 1) + 0.125 * f(24, 64, 1) + 0.125 * f(32, 64, 1);
    expect(layerMs(table, shape, { cin: 28, cout: 52, group: 1 })).toBeCloseTo(expected, 12);
  });

  it('refuses structures the table does not cover, naming the shape', () => {
    expect(() => layerMs(table, shape, { cin: 8, cout: 128, group: 1 })).toThrow(RegroupError);
    expect(() => layerMs(table, shape, { cin: 8, cout: 128, group: 1 })).toThrow(shape.key);
    expect(() => layerMs(table, shape, { cin: 64, cout: 136, group: 1 })).toThrow(/outside the measured grid/);
    expect(() => layerMs(table, shape, { cin: 64, cout: 128, group: 16 })).toThrow(/does not cover/);
    const sparse = syntheticTable(shape, f);
    sparse.entries.delete(candidateKey(shape, { cin: 24, cout: 48, group: 1 }));
    expect(() => layerMs(sparse, shape, { cin: 28, cout: 52, group: 1 })).toThrow(/was not measured/);
  });

  it('interpolates a grouped layer (depthwise) in its group count', () => {
    const depthwise = convShape(64, 64, 64);
    const dwTable = syntheticTable(depthwise, (cin) => 0.01 * cin);
    expect(candidates(depthwise, 8).map((s) => s.group)).toEqual([16, 24, 32, 40, 48, 56, 64]);
    expect(layerMs(dwTable, depthwise, { cin: 20, cout: 20, group: 20 })).toBeCloseTo(0.2, 12);
    expect(() => layerMs(dwTable, depthwise, { cin: 20, cout: 40, group: 20 })).toThrow(/per group/);
  });
});

describe('layerShapes', () => {
  it('lists every conv and the Gemm of resnet-tiny with their geometry, shared shapes once', () => {
    const shapes = layerShapes(resnetTiny());
    const summary = shapes.map((s) => [s.layers.map((l) => l.label).join(' '), s.key]);
    expect(summary).toEqual([
      ['stem.conv', 'conv cin=1 cout=16 g=1 k=3x3 s=1x1 p=1,1,1,1 d=1x1 in=28x28'],
      ['layer1.0.conv layer1.1.conv', 'conv cin=16 cout=16 g=1 k=3x3 s=1x1 p=1,1,1,1 d=1x1 in=28x28'],
      ['layer2.0.conv', 'conv cin=16 cout=32 g=1 k=3x3 s=2x2 p=1,1,1,1 d=1x1 in=28x28'],
      ['layer2.1.conv', 'conv cin=32 cout=32 g=1 k=3x3 s=1x1 p=1,1,1,1 d=1x1 in=14x14'],
      ['layer2.downsample.conv', 'conv cin=16 cout=32 g=1 k=1x1 s=2x2 p=0,0,0,0 d=1x1 in=28x28'],
      ['layer3.0.conv', 'conv cin=32 cout=64 g=1 k=3x3 s=2x2 p=1,1,1,1 d=1x1 in=14x14'],
      ['layer3.1.conv', 'conv cin=64 cout=64 g=1 k=3x3 s=1x1 p=1,1,1,1 d=1x1 in=7x7'],
      ['layer3.downsample.conv', 'conv cin=32 cout=64 g=1 k=1x1 s=2x2 p=0,0,0,0 d=1x1 in=14x14'],
      ['head.fc', 'gemm in=64 out=10'],
    ]);
    const stage3 = shapes.find((s) => s.layers[0]!.label === 'layer3.0.conv')!;
    expect(stage3).toMatchObject({ cin: 32, cout: 64, group: 1, kernel: [3, 3], strides: [2, 2], inputSize: [14, 14] });
    expect(stage3.layers[0]!.node.opType).toBe('Conv');
  });

  it('resolves auto_pad into explicit pads and keeps a grouped conv as grouped', () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', ['N', 16, 7, 7]);
    const same = b.op('Conv', [x, b.weight('w1', [16, 16, 3, 3])], { auto_pad: 'SAME_UPPER', strides: [2, 2] }, 'same');
    b.output(b.op('Conv', [same, b.weight('w2', [16, 4, 3, 3])], { group: 4, pads: [1, 1, 1, 1] }, 'grouped'));
    const [sameShape, groupedShape] = layerShapes(b.model);
    // out = ceil(7/2) = 4; total pad = (4 − 1)·2 + 3 − 7 = 2, split 1 + 1.
    expect(sameShape!.pads).toEqual([1, 1, 1, 1]);
    expect(groupedShape).toMatchObject({ cin: 16, cout: 16, group: 4, inputSize: [4, 4] });
  });

  it('times a float16 layer in float16 under its own name, and refuses other element types', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', ['N', 8, 6, 6], DataType.FLOAT16);
    const w = b.initializer('w', Tensor.fromArray(DataType.FLOAT16, [16, 8, 1, 1], new Uint16Array(128).fill(0x3c00)));
    b.output(b.op('Conv', [x, w], {}, 'half'));
    const [half] = layerShapes(b.model);
    expect(half!.dtype).toBe('float16');
    expect(half!.key).toBe('conv cin=8 cout=16 g=1 k=1x1 s=1x1 p=0,0,0,0 d=1x1 in=6x6 f16');
    const model = singleLayerModel(half!, { cin: 8, cout: 8, group: 1 }, 2);
    const session = await createSession(model, { optimization: 'disabled' });
    try {
      const out = Object.values(await run(session, randomFeeds(model)))[0]!;
      expect([out.type, out.dims]).toEqual(['float16', [2, 8, 6, 6]]);
    } finally {
      await session.release();
    }
    const d = new GraphBuilder({ opset: 17 });
    const wd = d.initializer('w', Tensor.fromArray(DataType.DOUBLE, [4, 4], new Float64Array(16)));
    d.output(d.op('Gemm', [d.input('x', ['N', 4], DataType.DOUBLE), wd], {}, 'fc64'));
    expect(() => layerShapes(d.model)).toThrow(/layer 'fc64' has .*float32 and float16 layers only/);
  });

  it('refuses a conv whose spatial size is symbolic, naming it', () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', ['N', 3, 'H', 'W']);
    b.output(b.op('Conv', [x, b.weight('w', [8, 3, 3, 3])], {}, 'conv_h'));
    expect(() => layerShapes(b.model)).toThrow(/Conv 'conv_h'.*spatial size/);
  });
});

/** Conv 8→16 3×3 on 8×8, ReLU, global pooling, Gemm 16→4: a few candidates only. */
function tinyModel(): Model {
  const b = new GraphBuilder({ opset: 17, seed: 3 });
  const x = b.input('input', ['N', 8, 8, 8]);
  const conv = b.op(
    'Conv',
    [x, b.weight('w', [16, 8, 3, 3]), b.constant('cb', [16], 0.1)],
    { pads: [1, 1, 1, 1] },
    'conv',
  );
  const pooled = b.op('GlobalAveragePool', [b.op('Relu', [conv])]);
  const flat = b.op('Flatten', [pooled], { axis: 1 });
  b.output(b.op('Gemm', [flat, b.weight('fc', [4, 16]), b.constant('fb', [4], 0)], { transB: 1 }, 'fc'));
  return b.model;
}

describe('profileModel', () => {
  it('builds single-layer models that run at the batch with the layer output shape', async () => {
    const shape = convShape(16, 32);
    const model = singleLayerModel(shape, { cin: 16, cout: 24, group: 2 }, 3);
    const session = await createSession(model, { optimization: 'disabled' });
    try {
      const out = Object.values(await run(session, randomFeeds(model)))[0]!;
      expect(out.dims).toEqual([3, 24, 14, 14]);
    } finally {
      await session.release();
    }
  });

  it('measures every candidate and the whole model once, then reuses them all', async () => {
    const cacheDir = freshDir();
    const model = tinyModel();
    const progress: number[] = [];
    const first = await profileModel(model, {
      ep: 'cpu',
      batch: 2,
      cacheDir,
      onProgress: (done) => progress.push(done),
    });
    const block = simdBlockOf(first.table.key);
    const keys = new Set(first.shapes.flatMap((s) => candidates(s, block).map((c) => candidateKey(s, c))));
    const expected = keys.size + 1;
    expect(first.shapes.map((s) => s.kind)).toEqual(['conv', 'gemm']);
    expect(first.measured).toBe(expected);
    expect(first.reused).toBe(0);
    expect(progress).toEqual(Array.from({ length: expected }, (_, k) => k + 1));
    expect(first.table.key.batch).toBe(2);
    expect(first.cost.wholeMs).toBeGreaterThan(0);
    expect(first.cost.key).toBe(modelKeyOf(model));
    expect(first.cost.key).toMatch(/^model [0-9a-f]{16}$/);
    const dense = first.shapes.reduce((sum, s) => sum + first.table.ms(s.key)!, 0);
    expect(first.cost.layersMs).toBeCloseTo(dense, 12);
    expect(first.cost.fixedMs).toBeCloseTo(first.cost.wholeMs - dense, 12);

    const second = await profileModel(model, { ep: 'cpu', batch: 2, cacheDir });
    expect(second.measured).toBe(0);
    expect(second.reused).toBe(expected);
    expect(second.notes).toEqual([]);
    expect(Object.fromEntries(second.table.entries)).toEqual(Object.fromEntries(first.table.entries));

    const refreshed = await profileModel(model, { ep: 'cpu', batch: 2, cacheDir, refresh: true });
    expect(refreshed.measured).toBe(expected);
    const otherBatch = await profileModel(model, { ep: 'cpu', batch: 1, cacheDir });
    expect(otherBatch.measured).toBe(expected);
    expect(otherBatch.table.file).not.toBe(first.table.file);
  });

  it('refuses a batch that a fixed-batch model cannot run at', async () => {
    const b = new GraphBuilder({ opset: 17 });
    b.output(b.op('Conv', [b.input('x', [1, 8, 4, 4]), b.weight('w', [8, 8, 1, 1])]));
    await expect(profileModel(b.model, { ep: 'cpu', batch: 4, cacheDir: freshDir() })).rejects.toThrow(
      /fixed batch of 1.*--batch 1/,
    );
  });
});
