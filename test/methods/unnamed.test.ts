/**
 * Every registered method on a detector-like model whose nodes have no names (as PyTorch 1.2
 * exports them): `compress` writes a valid model that onnxruntime runs, every grouped layer
 * reaches the lowering as its own layer (none collides with another under an empty name) and
 * every layer row of the report has its own non-empty label. Which form each layer takes is
 * the cost model's choice (these layers are narrow, so masked dense wins on CPU); that every
 * form lowers such layers exactly is tested at pass level (test/passes/unnamed-nodes.test.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compressModel } from '../../cli/pipelines/compress.js';
import { loadModel, saveModel } from '../../compiler/onnx/io.js';
import { unnamedDetector } from '../../fixtures/models.js';
import { METHODS } from '../../passes/methods/index.js';
import { dgconv } from '../../passes/methods/dgconv.js';
import { lowerGrouped } from '../../passes/lower-grouped.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { expectReproduces } from '../passes/compare.js';
import { randomFeeds } from '../../runtime/inputs.js';
import { createSession, run } from '../../runtime/session.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-unnamed-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const input = path.join(tmp, 'detector.onnx');
saveModel(unnamedDetector(), input);

/** Options that let a method run without data (wsp: its weight proxy). */
const WITHOUT_DATA: Record<string, Record<string, unknown>> = { wsp: { criterion: 'weight-proxy' } };
const GROUPING = new Set(['sg-cnn', 'sg-balanced', 'sg-exec', 'uniform']);

describe('compress on a model with unnamed nodes', () => {
  expect(
    loadModel(input)
      .graph.nodeList()
      .every((n) => n.name === ''),
  ).toBe(true);

  // A method that learns its structure while fine-tuning needs data: dgconv is checked below.
  it.each(METHODS.filter((m) => !m.learnsStructure).map((m) => m.name))(
    '%s: a valid, smaller model that runs; distinct labelled layer rows',
    async (method) => {
      const output = path.join(tmp, `${method}.onnx`);
      const outcome = await compressModel(input, {
        output,
        method,
        methodOptions: WITHOUT_DATA[method],
        keepMacs: 0.5,
        latency: false,
      });
      const written = loadModel(output);
      written.graph.verify();
      expect(outcome.structuredMacsRatio).toBeLessThan(0.75);
      if (!GROUPING.has(method)) expect(outcome.compressed.macs).toBeLessThan(outcome.dense.macs);
      const session = await createSession(written, { optimization: 'disabled' });
      try {
        const out = await run(session, randomFeeds(written, { seed: 1, batch: 2 }));
        expect(Object.keys(out).length).toBeGreaterThan(0);
      } finally {
        await session.release();
      }
      const labels = outcome.report.layers!.map((l) => l.name);
      expect(labels.every((l) => l.length > 0)).toBe(true);
      expect(new Set(labels).size).toBe(labels.length);
      if (GROUPING.has(method)) {
        expect(outcome.choices.length).toBeGreaterThanOrEqual(4);
        expect(new Set(outcome.choices.map((c) => c.node)).size).toBe(outcome.choices.length);
        expect(outcome.loweringError).toBeLessThanOrEqual(1e-4);
      }
    },
    60_000,
  );

  it('dgconv: distinct layers by their weights, gated, finished and lowered exactly', async () => {
    const model = loadModel(input);
    const notes: string[] = [];
    const options = { init: 'open', order: 'contiguous', minGroupWidth: 1, minRealised: 0.01 } as const;
    const structured = await dgconv.structure(model, options, 1, {
      common: { keepMacs: 1, seed: 0, hasData: true, channelMultiple: 8, latencyBatch: 64 },
      log: () => {},
      note: (line) => notes.push(line),
    });
    const gates = structured.hooks!.trainable!.filter((n) => n.endsWith('.dgconv_gates'));
    expect(gates.length).toBeGreaterThan(1);
    expect(new Set(gates).size).toBe(gates.length);
    const trained = structured.hooks!.model!.clone().model;
    for (const name of gates) {
      const value = trained.graph.initializers.get(name)!;
      const k = value.constValue!.size;
      trained.graph.setInitializer(
        value,
        Tensor.fromArray(DataType.FLOAT, [k], new Float32Array(k).fill(-1), { name }),
      );
    }
    const finished = structured.hooks!.finish!(trained);
    const learned = await structured.learned!(finished);
    expect(learned.connectivity.size).toBe(gates.length);
    const lowered = await lowerGrouped(finished, learned.connectivity, { simdBlock: 8 });
    await expectReproduces(trained, lowered.model, 1e-5);
    expect(new Set(lowered.choices.map((c) => c.label)).size).toBe(lowered.choices.length);
  });
});
