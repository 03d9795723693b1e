/**
 * Job specs: validation names the field and the fix; expansion is the full product; a job's
 * id follows what decides its output (model bytes, flags) and nothing else (paths, key order).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeJob, expandJobs, readSpec, validateSpec } from '../../cli/batch/spec.js';
import { PROJECT_ROOT } from '../helpers/shared.js';

const TINY = path.join(PROJECT_ROOT, 'fixtures/models/resnet-tiny.onnx');
const VGG = path.join(PROJECT_ROOT, 'fixtures/models/fmnist-vgg.onnx');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-batch-spec-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const base = { models: [TINY], methods: ['l1'], targets: [{ 'keep-macs': 0.5 }], results: 'out' };
const specFile = path.join(tmp, 'jobs.json');

describe('batch spec', () => {
  it('expands models × methods × targets × data × fine-tuning with unique ids', () => {
    const spec = validateSpec(
      {
        ...base,
        models: [TINY, VGG],
        methods: ['l1', 'wsp'],
        targets: [{ 'keep-macs': 0.5 }, { 'keep-latency': 0.7, 'latency-batch': 8 }],
        data: ['mnist', 'fashion-mnist'],
        finetune: [{ scheme: 'none' }, { scheme: 'global', epochs: 2, limit: 100 }],
      },
      specFile,
    );
    const jobs = expandJobs(spec);
    expect(jobs).toHaveLength(2 * 2 * 2 * 2 * 2);
    expect(new Set(jobs.map((j) => j.id)).size).toBe(jobs.length);
    expect(spec.results).toBe(path.join(tmp, 'out'));
    expect(jobs[0]!.target).toEqual({ keepMacs: 0.5 });
    expect(jobs.some((j) => 'keepLatency' in j.target && j.target.latencyBatch === 8)).toBe(true);
  });

  it('gives a job the same id for the same model bytes and flags, another for other bytes or flags', () => {
    const copy = path.join(tmp, 'renamed.onnx');
    fs.copyFileSync(TINY, copy);
    const idOf = (json: object) => expandJobs(validateSpec(json, specFile))[0]!.id;
    const original = idOf(base);
    expect(idOf({ ...base, models: [copy] })).toBe(original);
    // Key order in the file does not matter; results folder is not an input.
    expect(idOf({ results: 'elsewhere', targets: base.targets, methods: base.methods, models: base.models })).toBe(
      original,
    );
    expect(idOf({ ...base, options: { seed: 1 } })).not.toBe(original);
    expect(idOf({ ...base, targets: [{ 'keep-macs': 0.6 }] })).not.toBe(original);
    const bytes = fs.readFileSync(TINY);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 1, bytes.length - 1);
    fs.writeFileSync(copy, bytes);
    expect(idOf({ ...base, models: [copy] })).not.toBe(original);
  });

  it.each([
    [{ ...base, results: undefined }, "field 'results'"],
    [{ ...base, models: [] }, "field 'models' must be a non-empty list"],
    [{ ...base, models: ['missing.onnx'] }, "field 'models[0]' names"],
    [{ ...base, methods: ['magic'] }, "field 'methods[0]' must be one of"],
    [{ ...base, targets: [{ 'keep-macs': 0.5, 'keep-latency': 0.5 }] }, "field 'targets[0]' must give exactly one"],
    [{ ...base, targets: [{ 'keep-macs': 1.5 }] }, "field 'targets[0].keep-macs' must be a fraction"],
    [{ ...base, finetune: { scheme: 'global' } }, "field 'finetune[0]' scheme 'global' needs data"],
    [{ ...base, finetune: { scheme: 'sometimes' } }, "field 'finetune[0].scheme' must be one of"],
    [{ ...base, options: { seed: -1 } }, "field 'options.seed'"],
    [{ ...base, model: [TINY] }, "field 'model' is not a spec field"],
    [{ ...base, methods: [{ method: 'magic' }] }, "field 'methods[0].method' must be one of"],
    [
      { ...base, methods: [{ method: 'l1', heads: 4 }] },
      "field 'methods[0].heads' is not an option of l1; its options are",
    ],
    [{ ...base, methods: [{ method: 'msgc', heads: 0 }] }, "field 'methods[0].heads'"],
    [
      { ...base, methods: [{ method: 'wsp', criterion: 'luck' }] },
      "field 'methods[0].criterion' must be one of saliency",
    ],
  ])('refuses a bad spec, naming the field (%#)', (json, message) => {
    expect(() => validateSpec(json, specFile)).toThrow(message);
    expect(() => validateSpec(json, specFile)).toThrow(specFile);
  });

  it('takes a method with its own options, in the id and the description; none keeps the plain id', () => {
    const plain = expandJobs(validateSpec(base, specFile))[0]!;
    expect(plain.methodOptions).toBeUndefined();
    expect(expandJobs(validateSpec({ ...base, methods: [{ method: 'l1' }] }, specFile))[0]!.id).toBe(plain.id);
    const [a, b] = expandJobs(
      validateSpec(
        {
          ...base,
          methods: [
            { method: 'l1', 'round-to': 4 },
            { method: 'l1', 'round-to': 16 },
          ],
        },
        specFile,
      ),
    );
    expect(a!.methodOptions).toEqual({ roundTo: 4 });
    expect(new Set([plain.id, a!.id, b!.id]).size).toBe(3);
    expect(describeJob(a!)).toBe('resnet-tiny.onnx l1(round-to 4) keep-macs 0.5');
  });

  it('names the file when it is not JSON', () => {
    fs.writeFileSync(specFile, '{ "models": [');
    expect(() => readSpec(specFile)).toThrow(`job spec ${specFile} is not valid JSON`);
  });
});
