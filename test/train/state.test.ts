/** The resume file: exact round trip of every tensor and field, clear errors on bad files. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  readTrainState,
  settingsMismatch,
  stateFileFor,
  writeTrainState,
  type TrainState,
} from '../../runtime/train/state.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-state-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function sampleState(): TrainState {
  return {
    epoch: 3,
    step: 141,
    seed: 42,
    epochs: 10,
    settings: { batchSize: 64, optimizer: '{"kind":"sgd"}', augment: 'null' },
    history: [
      {
        epoch: 1,
        trainLoss: 2.1,
        trainAccuracy: 0.3,
        testAccuracy: 0.41,
        lr: 0.05,
        seconds: 3.5,
        imagesPerSecond: 900,
        steps: 47,
      },
    ],
    lossCurve: [
      { step: 10, loss: 2.2 },
      { step: 20, loss: 1.9 },
    ],
    tensors: [
      // Odd byte lengths check the 8-byte alignment of the blobs.
      {
        input: 'p.conv.weight',
        name: 'conv.weight',
        type: 'float32',
        dims: [3, 1, 1, 1],
        data: Float32Array.of(1.5, -0, Math.fround(1e-30)),
      },
      { input: 's.count', name: 'count', type: 'int64', dims: [1], data: BigInt64Array.of(-5n) },
      { input: 's.var', name: 'bn.var', type: 'float64', dims: [2], data: Float64Array.of(Math.PI, Number.MIN_VALUE) },
      { input: 's.scalar', name: 'scalar', type: 'float32', dims: [], data: Float32Array.of(NaN) },
    ],
  };
}

describe('training state file', () => {
  it('round-trips every field and tensor bit for bit', () => {
    const file = stateFileFor(path.join(tmp, 'model.onnx'));
    expect(file).toBe(path.join(tmp, 'model.onnx.train-state'));
    const state = sampleState();
    writeTrainState(file, state);
    const back = readTrainState(file);
    expect({ ...back, tensors: [] }).toEqual({ ...state, tensors: [] });
    back.tensors.forEach((t, i) => {
      const want = state.tensors[i]!;
      expect({ input: t.input, name: t.name, type: t.type, dims: t.dims }).toEqual({
        input: want.input,
        name: want.name,
        type: want.type,
        dims: want.dims,
      });
      expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)).toEqual(
        Buffer.from(want.data.buffer, want.data.byteOffset, want.data.byteLength),
      );
      expect(t.data.byteOffset % 8).toBe(0);
    });
    expect(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('names the file and the fix for missing, foreign and truncated files', () => {
    expect(() => readTrainState(path.join(tmp, 'none.train-state'))).toThrow(
      /--resume: there is no .*none\.train-state to resume from; run without --resume first/,
    );
    const foreign = path.join(tmp, 'foreign.train-state');
    fs.writeFileSync(foreign, 'hello world, not a state');
    expect(() => readTrainState(foreign)).toThrow(
      /foreign\.train-state is not a usable training state: it does not start with RGTS/,
    );
    const file = path.join(tmp, 'cut.train-state');
    writeTrainState(file, sampleState());
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file, bytes.subarray(0, bytes.byteLength - 16));
    expect(() => readTrainState(file)).toThrow(/tensor '.*' runs past the end of the file/);
  });

  it('lists the settings that changed', () => {
    expect(settingsMismatch({ a: 1, b: 'x' }, { a: 1, b: 'x' })).toEqual([]);
    expect(settingsMismatch({ a: 1, b: 'x' }, { a: 2, c: true })).toEqual([
      'a: 1 → 2',
      'b: x → undefined',
      'c: undefined → true',
    ]);
  });
});
