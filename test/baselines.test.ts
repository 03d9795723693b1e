/**
 * The committed Fashion-MNIST baselines (trained by scripts/train-baselines.sh with
 * `regroup train`) are the models their reports describe: evaluating each on the test split
 * gives the accuracy recorded when it was trained, and the ResNet meets the 91% bar.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateReport } from '../cli/report/schema.js';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import { loadModel } from '../compiler/onnx/io.js';
import { BASELINES } from '../fixtures/baselines.js';
import { fixedBatchOf } from '../runtime/calibrate.js';
import { fashionMnist } from '../runtime/data/embedded.js';
import { inputSpecFor } from '../runtime/data/preprocess.js';
import { evaluate } from '../runtime/evaluate.js';
import { PROJECT_ROOT } from './helpers/shared.js';

const MODELS = path.join(PROJECT_ROOT, 'fixtures/models');
const trained = Object.keys(BASELINES).filter((name) => fs.existsSync(path.join(MODELS, `fmnist-${name}.json`)));

describe('trained Fashion-MNIST baselines', () => {
  it('the ResNet baseline is committed', () => expect(trained).toContain('resnet'));

  for (const name of trained) {
    it(`fmnist-${name}: same architecture as fixtures/baselines.ts, and the recorded test accuracy`, async () => {
      const file = path.join(MODELS, `fmnist-${name}.onnx`);
      const report = validateReport(
        JSON.parse(fs.readFileSync(path.join(MODELS, `fmnist-${name}.json`), 'utf8')),
        `fmnist-${name}.json`,
      );
      const model = loadModel(file);
      const fresh = BASELINES[name]!();
      expect(computeCost(model, inferShapes(model)).totals).toEqual(computeCost(fresh, inferShapes(fresh)).totals);
      const result = await evaluate(file, fixedBatchOf(model), await fashionMnist('test'), inputSpecFor(model), {
        batchSize: 250,
      });
      expect(result.samples).toBe(10_000);
      expect(result.top1).toBeCloseTo(report.accuracy!.top1, 6);
      expect(report.training!.history.at(-1)!.testAccuracy).toBeCloseTo(result.top1, 6);
      if (name === 'resnet') expect(result.top1).toBeGreaterThanOrEqual(0.91);
    }, 120_000);
  }
});
