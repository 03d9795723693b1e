/**
 * Property-based tests on generated CNNs (test/property/generate.ts, fast-check): for every
 * graph, PREPARE leaves a valid graph with the same outputs (bit for bit), shape inference
 * agrees with onnxruntime on every node output (as built, prepared and pruned), pruning
 * planted dead channels reproduces the outputs (max(1e-5 · max |planted|, 1e-5)) and costs
 * exactly what the planner predicted, and every lowering form reproduces the masked-dense
 * reference (max(1e-4 · max |reference|, 1e-5)); see check.ts.
 *
 * Seeded and bounded: GRAPHS graphs from SEED per run (REGROUP_PROPERTY_GRAPHS and
 * REGROUP_PROPERTY_SEED override them; REGROUP_PROPERTY_LOG prints what they covered). A
 * failure is shrunk and printed as an entry for test/property/regressions.test.ts. The long
 * run is bench/property.ts (10,000 graphs).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { buildCnn, type CnnSpec, cnnSpec, specSource } from './generate.js';
import { checkGraphs, Coverage } from './run.js';

const GRAPHS = Number(process.env.REGROUP_PROPERTY_GRAPHS ?? 1000);
const SEED = Number(process.env.REGROUP_PROPERTY_SEED ?? 20_240_618);

describe('generated CNNs', () => {
  it(`${GRAPHS} graphs (seed ${SEED}): valid passes, shapes as onnxruntime, exact pruning, every lowering form exact`, async () => {
    const coverage = new Coverage();
    const result = await checkGraphs({ graphs: GRAPHS, seed: SEED, coverage });
    if (process.env.REGROUP_PROPERTY_LOG)
      console.log([`${result.runs} graphs in ${result.seconds.toFixed(1)} s`, ...coverage.lines()].join('\n'));
    // The report holds the shrunk case as a regression entry: print it as it is.
    if (result.failure) expect.fail(result.failure.report);
    expect(coverage.graphs).toBe(GRAPHS);
    // The generator draws what it claims to, and every check had something to compare.
    for (const op of [
      'conv',
      'add',
      'concat',
      'split',
      'se',
      'shuffle',
      'pool',
      'resize',
      'pad',
      'slice',
      'scale',
      'nhwc',
      'identity',
    ])
      expect(coverage.ops[op], op).toBeGreaterThan(GRAPHS / 100);
    expect(Object.keys(coverage.names).sort()).toEqual(['empty', 'repeated', 'unique']);
    expect(coverage.prepared).toBeGreaterThan(GRAPHS / 10);
    expect(coverage.shapes).toBeGreaterThan(10 * GRAPHS);
    expect(coverage.prunedGraphs).toBeGreaterThan(GRAPHS / 3);
    expect(coverage.mattered).toBeGreaterThan(0.9 * coverage.prunedGraphs);
    expect(coverage.loweredGraphs).toBeGreaterThan(GRAPHS / 3);
    for (const form of ['grouped', 'duplicated', 'padded', 'per-group', 'masked-dense'])
      expect(coverage.forced[form], form).toBeGreaterThan(0);
  });
});

describe('the generator', () => {
  const specs = fc.sample(cnnSpec(), { numRuns: 50, seed: 7 });

  it('builds every description into a graph that verifies, the same bytes each time', () => {
    for (const spec of specs) {
      const model = buildCnn(spec);
      model.graph.verify();
      expect(Buffer.from(encodeModel(buildCnn(spec)).bytes).equals(Buffer.from(encodeModel(model).bytes))).toBe(true);
    }
  });

  it('prints a description as JSON that builds the same model', () => {
    for (const spec of specs) {
      const parsed = JSON.parse(specSource(spec)) as CnnSpec;
      expect(
        Buffer.from(encodeModel(buildCnn(parsed)).bytes).equals(Buffer.from(encodeModel(buildCnn(spec)).bytes)),
      ).toBe(true);
    }
  });

  it('resolves requests that cannot hold instead of failing (projection, nearest group, Identity)', () => {
    const spec: CnnSpec = {
      seed: 1,
      batch: 1,
      staticBatch: false,
      channels: 3,
      size: 5,
      nhwc: false,
      names: 'unique',
      layers: [
        {
          op: 'conv',
          from: 0,
          out: 5,
          kernel: 3,
          stride: 2,
          dilation: 1,
          pad: 'explicit',
          group: 'grouped',
          bias: false,
          bn: true,
          act: 'relu',
          weight: 'initializer',
        },
        { op: 'add', from: 0, other: 1 },
        { op: 'split', from: 0, at: 0 },
        { op: 'shuffle', from: 0, groups: 4, dynamic: false },
      ],
      head: 'conv',
      classes: 2,
    };
    const ops = buildCnn(spec)
      .graph.nodeList()
      .map((n) => n.opType);
    // No group of 2 or 4 divides 3 channels: a dense conv. The 5×5 input is not the size of the stride-2
    // output (3×3), so the Add adds that output to itself. Split 5 → [1, 4]; the shuffle of 4 channels by 4.
    expect(ops).toEqual([
      'Conv',
      'BatchNormalization',
      'Relu',
      'Add',
      'Split',
      'Reshape',
      'Transpose',
      'Reshape',
      'Conv',
    ]);
  });
});
