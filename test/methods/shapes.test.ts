/**
 * The channel-pruning methods write valid ONNX whose shapes regroup and onnxruntime agree on:
 * the output shape regroup infers is the one onnxruntime returns, and every convolution's
 * inferred input and output widths match its (pruned or fused) weight.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compressModel } from '../../cli/pipelines/compress.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { randomFeeds } from '../../runtime/inputs.js';
import { createSession, run } from '../../runtime/session.js';
import { PROJECT_ROOT } from '../helpers/shared.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-shapes-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const CASES: [string, string, Record<string, unknown>][] = [
  ['fmnist-resnet', 'wsp', { criterion: 'weight-proxy', roundTo: 1 }],
  ['fmnist-vgg', 'wsp', { criterion: 'weight-proxy', roundTo: 8 }],
  ['fmnist-resnet', 'dcff', { roundTo: 1 }],
  ['fmnist-mobilenet', 'dcff', { roundTo: 8 }],
];

describe('pruned and fused models: regroup and onnxruntime agree on shapes', () => {
  it.each(CASES)(
    '%s with %s %o',
    async (name, method, methodOptions) => {
      const output = path.join(tmp, `${name}-${method}.onnx`);
      const input = path.join(PROJECT_ROOT, `fixtures/models/${name}.onnx`);
      await compressModel(input, { output, method, methodOptions, keepMacs: 0.5, latency: false });
      const model = loadModel(output);
      model.graph.verify();
      const shapes = inferShapes(model);
      for (const node of model.graph.nodeList().filter((n) => n.opType === 'Conv')) {
        const weight = node.input(1).constValue!.dims;
        expect(shapes.typeOf(node.output(0))?.shape?.[1]).toBe(weight[0]);
        expect(shapes.typeOf(node.input(0))?.shape?.[1]).toBe(weight[1]! * node.getInt('group', 1));
      }
      const session = await createSession(model, { optimization: 'disabled' });
      try {
        const out = await run(session, randomFeeds(model, { seed: 2, batch: 3 }));
        for (const v of model.graph.outputs) {
          const inferred = shapes.typeOf(v)!.shape!;
          expect(inferred.slice(1)).toEqual(out[v.name]!.dims.slice(1));
          expect(out[v.name]!.dims[0]).toBe(3);
        }
      } finally {
        await session.release();
      }
    },
    60_000,
  );
});
