/**
 * Bad input never escapes as a stray TypeError or RangeError: empty, truncated, random and
 * corrupted bytes, missing paths and folders all raise a RegroupError whose code says what
 * kind of problem it is and whose message names the file.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegroupError, type ErrorCode } from '../../compiler/errors.js';
import { AttrType } from '../../compiler/ir/attribute.js';
import { decodeModel } from '../../compiler/onnx/decode.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { proto } from '../../compiler/onnx/schema.js';
import { Random } from '../../compiler/util/random.js';
import { FIXTURES, seBlock } from '../../fixtures/models.js';
import { haveShared, sharedModel } from '../helpers/shared.js';

type P = any;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-bad-input-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The RegroupError `attempt` throws; any other outcome fails the test with a description. */
function failure(attempt: () => unknown): RegroupError {
  try {
    attempt();
  } catch (err) {
    if (err instanceof RegroupError) return err;
    throw new Error(`expected a RegroupError, got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, {
      cause: err,
    });
  }
  throw new Error('expected a RegroupError, but it succeeded');
}

function expectFailure(attempt: () => unknown, codes: readonly ErrorCode[], names: string): RegroupError {
  const err = failure(attempt);
  expect(codes).toContain(err.code);
  expect(err.message).toContain(names);
  return err;
}

const BAD_MODEL: readonly ErrorCode[] = ['bad-model'];
const source = 'damaged.onnx';
const decode = (bytes: Uint8Array) => () => decodeModel(bytes, { source });

describe('decodeModel on bad bytes', () => {
  it('refuses an empty buffer', () => {
    expect(expectFailure(decode(new Uint8Array(0)), BAD_MODEL, source).message).toMatch(/empty/);
  });

  it('refuses every strict prefix of a model (truncation anywhere)', () => {
    const bytes = encodeModel(seBlock()).bytes;
    const codes = new Set<string>();
    for (let length = 0; length < bytes.byteLength; length++)
      codes.add(expectFailure(decode(bytes.subarray(0, length)), BAD_MODEL, source).code);
    expect([...codes]).toEqual(['bad-model']);
    expect(() => decodeModel(bytes, { source })).not.toThrow();
  });

  it.skipIf(!haveShared)('refuses truncated real models', () => {
    const bytes = fs.readFileSync(sharedModel('resnet20'));
    const random = new Random(11);
    for (let i = 0; i < 200; i++)
      expectFailure(decode(bytes.subarray(0, random.int(bytes.byteLength))), BAD_MODEL, source);
  });

  it('refuses random bytes', () => {
    const random = new Random(12);
    for (let i = 0; i < 2000; i++) {
      const length = 1 + random.int(i < 1000 ? 64 : 4096);
      expectFailure(decode(Uint8Array.from({ length }, () => random.int(256))), BAD_MODEL, source);
    }
  });

  it('raises only RegroupErrors (bad-model or bad-tensor) on byte-flipped models', () => {
    const random = new Random(13);
    const outcomes = new Map<string, number>();
    for (const [key, build] of Object.entries(FIXTURES)) {
      const bytes = encodeModel(build()).bytes;
      for (let i = 0; i < 1000; i++) {
        const damaged = Uint8Array.from(bytes);
        // Flip bytes in the first 4 KiB, where the graph structure (not weight data) lives.
        for (let k = 1 + random.int(3); k > 0; k--)
          damaged[random.int(Math.min(damaged.byteLength, 4096))] = random.int(256);
        let outcome = 'decoded';
        try {
          decodeModel(damaged, { source: `${key}.onnx` });
        } catch (err) {
          expect(err, `${key} flip ${i}: ${(err as Error).message}`).toBeInstanceOf(RegroupError);
          expect(['bad-model', 'bad-tensor']).toContain((err as RegroupError).code);
          expect((err as Error).message).toContain(`${key}.onnx`);
          outcome = (err as RegroupError).code;
        }
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
    }
    expect(outcomes.get('bad-model')).toBeGreaterThan(1000);
  });
});

describe('damaged attributes', () => {
  /** A one-node model whose node carries the given AttributeProto. */
  const withAttribute = (attribute: P): Uint8Array =>
    proto.ModelProto.encode(
      proto.ModelProto.fromObject({
        ir_version: 8,
        opset_import: [
          { domain: '', version: 17 },
          { domain: 'test', version: 1 },
        ],
        graph: {
          name: 'g',
          node: [{ name: 'n', op_type: 'Custom', domain: 'test', input: ['a'], output: ['b'], attribute: [attribute] }],
          input: [{ name: 'a' }],
          output: [{ name: 'b' }],
        },
      }),
    ).finish();

  it('reads a STRING attribute whose empty value was left out as the empty string', () => {
    const bytes = withAttribute({ name: 'mode', type: AttrType.STRING });
    const node = decodeModel(bytes, { source }).graph.nodeList()[0]!;
    expect(node.getString('mode')).toBe('');
    expect(Buffer.from(encodeModel(decodeModel(bytes, { source })).bytes).equals(Buffer.from(bytes))).toBe(true);
  });

  it('refuses a TENSOR or GRAPH attribute without its value, naming the attribute and node', () => {
    for (const type of [AttrType.TENSOR, AttrType.GRAPH]) {
      const err = expectFailure(decode(withAttribute({ name: 'value', type })), BAD_MODEL, source);
      expect(err.message).toContain(`attribute 'value' of node 'n'`);
    }
  });
});

describe('loadModel on bad files', () => {
  it('refuses an empty file', () => {
    const file = path.join(tmp, 'empty.onnx');
    fs.writeFileSync(file, new Uint8Array(0));
    expectFailure(() => loadModel(file), BAD_MODEL, file);
  });

  it('refuses a truncated file', () => {
    const bytes = encodeModel(FIXTURES['resnet-tiny']!()).bytes;
    for (const fraction of [0.001, 0.25, 0.5, 0.999]) {
      const file = path.join(tmp, `truncated-${fraction}.onnx`);
      fs.writeFileSync(file, bytes.subarray(0, Math.floor(bytes.byteLength * fraction)));
      expectFailure(() => loadModel(file), BAD_MODEL, file);
    }
  });

  it('refuses a file of random bytes', () => {
    const random = new Random(14);
    const file = path.join(tmp, 'random.onnx');
    fs.writeFileSync(
      file,
      Uint8Array.from({ length: 100_000 }, () => random.int(256)),
    );
    expectFailure(() => loadModel(file), BAD_MODEL, file);
  });

  it('refuses a text file that is not ONNX', () => {
    const file = path.join(tmp, 'notes.onnx');
    fs.writeFileSync(file, 'this is not a model\n'.repeat(50));
    expectFailure(() => loadModel(file), BAD_MODEL, file);
  });

  it('refuses a path that does not exist', () => {
    const file = path.join(tmp, 'no-such-model.onnx');
    expect(expectFailure(() => loadModel(file), ['io'], file).message).toMatch(/does not exist/);
  });

  it('refuses a folder', () => {
    const dir = path.join(tmp, 'a-folder.onnx');
    fs.mkdirSync(dir);
    expect(expectFailure(() => loadModel(dir), ['io'], dir).message).toMatch(/folder/);
  });
});
