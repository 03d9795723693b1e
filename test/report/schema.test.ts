/**
 * Report files are user input for `regroup report`: a good one reads back unchanged, a bad
 * one is refused with a usage error naming the file and the first bad field.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readReport, writeReport } from '../../cli/report/command.js';
import { validateReport } from '../../cli/report/schema.js';
import { RegroupError } from '../../compiler/errors.js';
import { compressSample, compressSampleV1, evalReport, pruneReport } from './sample-reports.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-report-schema-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A JSON copy of the prune report with `edit` applied. */
function edited(edit: (r: any) => void): unknown {
  const json = JSON.parse(JSON.stringify(pruneReport()));
  edit(json);
  return json;
}

function usageError(json: unknown, file = 'runs/a.json'): RegroupError {
  try {
    validateReport(json, file);
  } catch (err) {
    expect(err).toBeInstanceOf(RegroupError);
    expect((err as RegroupError).code).toBe('usage');
    return err as RegroupError;
  }
  throw new Error('validateReport accepted a bad report');
}

describe('validateReport', () => {
  it('accepts a full report and a minimal one, returning them unchanged', () => {
    const full = JSON.parse(JSON.stringify(pruneReport()));
    expect(validateReport(full, 'full.json')).toEqual(pruneReport());
    const minimal = {
      format: 'regroup-report',
      version: 2,
      kind: 'compress',
      createdAt: '2025-01-31T12:00:00Z',
      model: { file: 'm.onnx', macs: 0, params: 0, bytes: 10 },
      totals: { macsAfter: 0, paramsAfter: 0 },
      notes: [],
    };
    expect(validateReport(minimal, 'minimal.json')).toEqual(minimal);
    expect(validateReport(evalReport('e.onnx', 1e6, 0.5), 'eval.json').accuracy?.top1).toBe(0.5);
  });

  const cases: [what: string, json: unknown, field: RegExp][] = [
    [
      'a missing model.macs',
      edited((r) => delete r.model.macs),
      /field 'model\.macs' must be a finite number >= 0, got nothing/,
    ],
    [
      'a NaN layer MAC count',
      edited((r) => (r.layers[3].macsAfter = NaN)),
      /field 'layers\[3\]\.macsAfter' must be a finite number >= 0, got NaN/,
    ],
    [
      'an infinite latency',
      edited((r) => (r.latency[1].p90Ms = Infinity)),
      /field 'latency\[1\]\.p90Ms' .* got Infinity/,
    ],
    ['null where JSON lost a NaN', edited((r) => (r.totals.macsAfter = null)), /field 'totals\.macsAfter' .* got null/],
    [
      'a number as a string',
      edited((r) => (r.model.params = '1000')),
      /field 'model\.params' must be a non-negative integer, got "1000"/,
    ],
    [
      'a fractional channel count',
      edited((r) => (r.layers[0].channelsAfter = 7.5)),
      /field 'layers\[0\]\.channelsAfter' must be a non-negative integer, got 7\.5/,
    ],
    [
      'accuracy in percent',
      edited((r) => (r.accuracy = { top1: 71.3, top5: 90, samples: 10, dataset: 'x' })),
      /field 'accuracy\.top1' must be a fraction between 0 and 1, got 71\.3/,
    ],
    ['a foreign JSON file', { name: 'package', version: '1.0.0' }, /field 'format' must be 'regroup-report'/],
    ['a newer version', edited((r) => (r.version = 3)), /field 'version' is 3, written by a newer regroup/],
    [
      'an unknown kind',
      edited((r) => (r.kind = 'quantize')),
      /field 'kind' must be one of 'eval', 'prune', 'compress', 'train', 'finetune', got "quantize"/,
    ],
    [
      'a date that is not ISO',
      edited((r) => (r.createdAt = 'yesterday')),
      /field 'createdAt' must be an ISO 8601 date-time/,
    ],
    [
      'a misspelt field',
      edited((r) => (r.model.flops = 3)),
      /unknown field 'model\.flops'.*put anything else under 'extra'/,
    ],
    ['notes as a string', edited((r) => (r.notes = 'pruned')), /field 'notes' must be an array, got "pruned"/],
    ['an empty layer name', edited((r) => (r.layers[2].name = '')), /field 'layers\[2\]\.name' must not be empty/],
    ['layers as an object', edited((r) => (r.layers = {})), /field 'layers' must be an array/],
  ];
  it.each(cases)('rejects %s, naming the file and the field', (_what, json, field) => {
    const err = usageError(json);
    expect(err.message).toMatch(/^runs\/a\.json: /);
    expect(err.message).toMatch(field);
  });

  /** A JSON copy of the compress sample with `edit` applied. */
  const compressEdited = (edit: (r: any) => void): unknown => {
    const json = JSON.parse(JSON.stringify(compressSample()));
    edit(json);
    return json;
  };
  const compressCases: [what: string, json: unknown, field: RegExp][] = [
    [
      'a filter in two clusters',
      compressEdited((r) => r.layers[0].connectivity.clusters[1].filters.unshift(0)),
      /field 'layers\[0\]\.connectivity\.clusters\[1\]\.filters\[0\]' is already in cluster 0/,
    ],
    [
      'a filter in no cluster',
      compressEdited((r) => r.layers[0].connectivity.clusters[1].filters.pop()),
      /field 'layers\[0\]\.connectivity\.clusters' must place every filter in a cluster \(filter 3 is in none\)/,
    ],
    [
      'an input mask of the wrong length',
      compressEdited((r) => (r.layers[0].connectivity.clusters[0].inputs = '700')),
      /field 'layers\[0\]\.connectivity\.clusters\[0\]\.inputs' must be 2 hex digits/,
    ],
    [
      'an input mask reading past the inputs',
      compressEdited((r) => (r.layers[0].connectivity.clusters[0].inputs = '74')),
      /must not set bits beyond the layer's 6 inputs, got "74"/,
    ],
    [
      'an unknown lowering form',
      compressEdited((r) => (r.layers[1].lowering.form = 'sparse')),
      /field 'layers\[1\]\.lowering\.form' must be one of 'grouped', 'duplicated', 'padded', 'per-group', 'masked-dense'/,
    ],
    [
      'dense accuracy in percent',
      compressEdited((r) => (r.baseline.accuracy.top1 = 91.25)),
      /field 'baseline\.accuracy\.top1' must be a fraction/,
    ],
  ];
  it.each(compressCases)('rejects %s in a compress report', (_what, json, field) => {
    expect(usageError(json).message).toMatch(field);
  });

  it('reads a version-1 compress report, moving its before side and lowering out of extra', () => {
    const upgraded = validateReport(compressSampleV1(), 'old.json');
    const { connectivity: _a, ...layerA } = compressSample().layers![0]!;
    const { connectivity: _b, ...layerB } = compressSample().layers![1]!;
    expect(upgraded).toEqual({ ...compressSample(), layers: [layerA, layerB] });
    // Other version-1 reports read back as they are.
    const oldPrune = { ...JSON.parse(JSON.stringify(pruneReport())), version: 1 };
    expect(validateReport(oldPrune, 'old-prune.json')).toEqual(oldPrune);
    // A figure under extra that does not read as its field stays there.
    const odd = compressSampleV1() as { extra: Record<string, unknown> };
    odd.extra.denseLatency = 'fast';
    const kept = validateReport(odd, 'odd.json');
    expect(kept.extra?.denseLatency).toBe('fast');
    expect(kept.baseline?.latency).toBeUndefined();
    expect(kept.baseline?.accuracy?.top1).toBe(0.9125);
    // Without a baseline the dense side has no home and stays under extra too.
    const { baseline: _, ...orphan } = compressSampleV1();
    const noBaseline = validateReport(orphan, 'orphan.json');
    expect(noBaseline.extra?.denseLatency).toEqual(compressSample().baseline!.latency);
    expect(noBaseline.totals.structureMacsRatio).toBe(0.5);
  });

  it('names the first bad field in schema order', () => {
    const err = usageError(edited((r) => ((r.model.bytes = -1), (r.totals.paramsAfter = -1))));
    expect(err.message).toMatch(/'model\.bytes'/);
  });

  it('rejects a top level that is not an object', () => {
    expect(usageError([1, 2]).message).toMatch(/runs\/a\.json: the top level must be an object, got \[1,2\]/);
  });
});

describe('report files', () => {
  it('writes a report that reads back equal', () => {
    const file = path.join(tmp, 'prune.json');
    writeReport(file, pruneReport());
    expect(readReport(file)).toEqual(pruneReport());
    const compress = path.join(tmp, 'compress.json');
    writeReport(compress, compressSample());
    expect(readReport(compress)).toEqual(compressSample());
    // Filter lists stay on one line.
    expect(fs.readFileSync(compress, 'utf8')).toContain('"filters": [0, 2],');
    expect(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('refuses to write an invalid report and leaves no file', () => {
    const file = path.join(tmp, 'bad.json');
    const bad = { ...pruneReport(), totals: { macsAfter: NaN, paramsAfter: 0 } };
    expect(() => writeReport(file, bad)).toThrow(/'totals\.macsAfter' .* got NaN/);
    expect(fs.existsSync(file)).toBe(false);
  });

  it('names a file that is missing or not JSON', () => {
    expect(() => readReport(path.join(tmp, 'nope.json'))).toThrow(/report .*nope\.json does not exist/);
    const broken = path.join(tmp, 'broken.json');
    fs.writeFileSync(broken, '{"format": "regroup-report",');
    expect(() => readReport(broken)).toThrow(new RegExp(`${broken.replace(/[.\\/]/g, '\\$&')} is not valid JSON`));
  });
});
