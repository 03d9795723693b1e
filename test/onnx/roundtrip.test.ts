/**
 * decode → encode round trip over every real model in ../shared/fixtures/models and every
 * generated fixture. A round trip must give the same ModelProto (judged by our schema and,
 * independently, by onnx-proto's ONNX 1.10 schema), bit-identical onnxruntime outputs,
 * deterministic bytes and a graph that verifies.
 */
import fs from 'node:fs';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES } from '../../fixtures/models.js';
import type { Model } from '../../compiler/ir/model.js';
import { decodeModel } from '../../compiler/onnx/decode.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { proto } from '../../compiler/onnx/schema.js';
import { randomFeeds, type InputOptions } from '../../runtime/inputs.js';
import { createSession, run, type Outputs } from '../../runtime/session.js';
import { allSharedModels, haveShared, SHARED_FIXTURES } from '../helpers/shared.js';

const { onnx } = onnxProto;
const TO_OBJECT = { longs: String, bytes: String, defaults: true } as const;

/** Inputs with symbolic non-batch dims need a concrete shape (PaddleOCR's [N, 3, 48, W]). */
const INPUT_SHAPES: Record<string, InputOptions['shapes']> = {
  'ch_ppocr_mobile_v2.0_cls_infer.onnx': { x: [1, 3, 48, 192] },
};

interface Case {
  name: string;
  /** The original bytes (the file, or a fixture's first encoding). */
  bytes: () => Uint8Array;
  /** What onnxruntime loads as the original: the file path, or the bytes. */
  ortSource: () => string | Uint8Array;
  baseDir?: string;
}

/** The first place two plain objects differ, as a readable path, or undefined when equal. */
function firstDifference(a: unknown, b: unknown, at = '$'): string | undefined {
  if (a === b) return undefined;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) {
    const show = (x: unknown) =>
      typeof x === 'string' && x.length > 80 ? `${x.slice(0, 80)}… (${x.length} chars)` : JSON.stringify(x);
    return `${at}: ${show(a)} ≠ ${show(b)}`;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return `${at}: array vs object`;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return `${at}: keys [${ka.join(',')}] ≠ [${kb.join(',')}]`;
  for (const key of ka) {
    const d = firstDifference((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], `${at}.${key}`);
    if (d) return d;
  }
  return undefined;
}

const ours = (bytes: Uint8Array) => proto.ModelProto.toObject(proto.ModelProto.decode(bytes), TO_OBJECT);
const theirs = (bytes: Uint8Array) => onnx.ModelProto.toObject(onnx.ModelProto.decode(bytes), TO_OBJECT);

/** Outputs as comparable records: type, dims and the raw bytes of the data. */
function rawOutputs(outputs: Outputs): Record<string, { type: string; dims: readonly number[]; bytes: Buffer }> {
  const out: Record<string, { type: string; dims: readonly number[]; bytes: Buffer }> = {};
  for (const [name, t] of Object.entries(outputs)) {
    const data = t.data as unknown as ArrayBufferView;
    out[name] = { type: t.type, dims: t.dims, bytes: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
  }
  return out;
}

async function runOnce(source: string | Uint8Array, model: Model, shapes: InputOptions['shapes']) {
  const session = await createSession(source, { optimization: 'disabled' });
  try {
    return rawOutputs(await run(session, randomFeeds(model, { seed: 7, batch: 1, shapes })));
  } finally {
    await session.release();
  }
}

function roundTripSuite(c: Case): void {
  describe(c.name, () => {
    let original: Uint8Array;
    let model: Model;
    let reencoded: Uint8Array;

    beforeAll(() => {
      original = c.bytes();
      model = decodeModel(original, { baseDir: c.baseDir, source: c.name });
      reencoded = encodeModel(model).bytes;
    });
    afterAll(() => {
      // Tensors are views into the file buffer: drop the model too so big files can be freed.
      original = reencoded = new Uint8Array(0);
      model = undefined as unknown as Model;
    });

    it('decodes to a graph that verifies', () => {
      expect(() => model.graph.verify()).not.toThrow();
      expect(model.graph.nodeCount).toBeGreaterThan(0);
    });

    it('re-encodes to the same ModelProto (our schema)', () => {
      expect(firstDifference(ours(reencoded), ours(original))).toBeUndefined();
    });

    it('re-encodes to the same ModelProto (onnx-proto, ONNX 1.10 schema)', () => {
      expect(firstDifference(theirs(reencoded), theirs(original))).toBeUndefined();
    });

    it('encodes the same model to identical bytes, and a second round trip changes nothing', () => {
      const again = encodeModel(model).bytes;
      expect(Buffer.from(again).equals(Buffer.from(reencoded))).toBe(true);
      const twice = encodeModel(decodeModel(reencoded, { baseDir: c.baseDir, source: c.name })).bytes;
      expect(Buffer.from(twice).equals(Buffer.from(reencoded))).toBe(true);
    });

    it('gives bit-identical onnxruntime outputs (optimizations disabled, batch 1)', async () => {
      const shapes = INPUT_SHAPES[path.basename(c.name)];
      const before = await runOnce(c.ortSource(), model, shapes);
      const after = await runOnce(reencoded, model, shapes);
      expect(Object.keys(after)).toEqual(Object.keys(before));
      expect(Object.keys(before).length).toBeGreaterThan(0);
      for (const [name, b] of Object.entries(before)) {
        const a = after[name]!;
        expect(a.type, name).toBe(b.type);
        expect(a.dims, name).toEqual(b.dims);
        expect(a.bytes.equals(b.bytes), `output '${name}' differs`).toBe(true);
      }
    });
  });
}

describe.skipIf(!haveShared)('round trip: shared real models', () => {
  for (const file of allSharedModels()) {
    roundTripSuite({
      name: path.relative(path.join(SHARED_FIXTURES, 'models'), file),
      bytes: () => fs.readFileSync(file),
      ortSource: () => file,
      baseDir: path.dirname(file),
    });
  }
});

describe('round trip: generated fixtures', () => {
  for (const [key, build] of Object.entries(FIXTURES)) {
    const bytes = () => encodeModel(build()).bytes;
    roundTripSuite({ name: key, bytes, ortSource: bytes });

    it(`${key}: decode → encode reproduces the emitted bytes exactly`, () => {
      const first = bytes();
      const second = encodeModel(decodeModel(first, { source: key })).bytes;
      expect(Buffer.from(second).equals(Buffer.from(first))).toBe(true);
    });
  }
});
