/**
 * DCFF against plain L1 pruning at the same kept counts (the MACs planner's), on a
 * Fashion-MNIST model: test top-1 right after structuring, after a layer-wise least-squares
 * refit (runtime/train/local.ts), and after a short global fine-tune (DCFF through its
 * training hooks: full filter banks trained, P_top refreshed per epoch).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/dcff.js [--model fixtures/models/fmnist-resnet.onnx]
 *     [--keep 0.5] [--samples 5000] [--epochs 1] [--test 1000] [--local 512]
 *
 * Measured (2-core AMD EPYC, AVX2, ORT 1.30 CPU; fmnist-resnet at keepMacs 0.5, kept 12/16 11/16 9/16 24/32
 * 23/32 43/64 52/64, top-1 on 1000 test images, dense 92.10%):
 *   right after structuring        DCFF (T = 1) 11.50%   KL selection (T = 1e4) 13.70%   L1 25.00%
 *   local refit, 512 images        DCFF 86.40%           KL selection 90.00%             L1 91.10%
 *   1 epoch on 5000 (seed 1)       DCFF (hooks) 22.80%                                   L1 86.40%
 *   3 epochs on 5000               DCFF (hooks) 80.20%                                   L1 89.20%
 */
import path from 'node:path';
import { analyzeChannels } from '../compiler/analysis/channel-groups.js';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import type { Model } from '../compiler/ir/model.js';
import { loadModel } from '../compiler/onnx/io.js';
import { applyChannelMap, PREPARE, planPruning, removalSet, runPasses } from '../passes/index.js';
import { dcff, l1Scores, refreshCodes } from '../passes/methods/dcff.js';
import type { TrainingHooks } from '../passes/methods/method.js';
import { fixedBatchOf } from '../runtime/calibrate.js';
import { openDataset } from '../runtime/data/datasets.js';
import { inputSpecFor } from '../runtime/data/preprocess.js';
import { evaluate } from '../runtime/evaluate.js';
import { finetune } from '../runtime/train/finetune.js';
import { BenchArgs, requireFixtures, ROOT } from './args.js';

const args = new BenchArgs();
const file = path.resolve(ROOT, args.string('--model', 'fixtures/models/fmnist-resnet.onnx'));
requireFixtures([file]);
const keep = Number(args.string('--keep', '0.5'));
const samples = Number(args.string('--samples', '5000'));
const epochs = Number(args.string('--epochs', '1'));
const testLimit = Number(args.string('--test', '1000'));
const localSamples = Number(args.string('--local', '512'));

const dense = loadModel(file);
runPasses(dense, PREPARE, {}, { verify: false });
const spec = inputSpecFor(dense, {});
const train = await openDataset('fashion-mnist:train');
const test = await openDataset('fashion-mnist:test');

async function top1(model: Model): Promise<string> {
  const result = await evaluate(model, fixedBatchOf(model), test, spec, { limit: testLimit, batchSize: 100 });
  return `${(100 * result.top1).toFixed(2)}%`;
}

/** Plain L1 pruning with the planner's kept counts (the same plan DCFF's counts come from). */
function l1Pruned(): Model {
  const model = dense.clone().model;
  const shapes = inferShapes(model);
  const analysis = analyzeChannels(model, shapes);
  const plan = planPruning(analysis, computeCost(model, shapes), l1Scores(analysis), { keepMacs: keep });
  applyChannelMap(model, analysis, removalSet(plan, analysis));
  console.log(`kept per group: ${plan.groups.map((g) => `${g.keep}/${g.channels}`).join(' ')}`);
  return model;
}

async function fineTuned(model: Model, hooks?: TrainingHooks): Promise<string> {
  const result = await finetune(model, {
    train,
    test,
    spec,
    epochs,
    limit: samples,
    evalLimit: testLimit,
    seed: 1,
    batchSize: 128,
    hooks,
    augment: { pad: 2, flip: true },
  });
  return `${(100 * result.final!.top1).toFixed(2)}% (${result.global!.imagesPerSecond.toFixed(0)} img/s)`;
}

async function localRefit(model: Model): Promise<string> {
  const result = await finetune(model, {
    train,
    test,
    spec,
    epochs: 1,
    local: 'only',
    dense,
    localSamples,
    evalLimit: testLimit,
    seed: 1,
  });
  return `${(100 * result.final!.top1).toFixed(2)}%`;
}

/** DCFF's structure at the selection limit: P_top recomputed at T = 1e4 (KL-score selection) and baked. */
function klSelected(hooks: TrainingHooks): Model {
  const training = hooks.model!.clone().model;
  const current = (name: string) => training.graph.initializers.get(name)!.constValue!;
  const groups = hooks.frozen!.map((pTop) => {
    const p = current(pTop);
    const fulls = [...training.graph.nodes()]
      .filter((n) => n.opType === 'MatMul' && n.inputs[0]!.name === pTop)
      .map((n) => n.inputs[1]!.producer!.inputs[0]!.name);
    return {
      pTop,
      keep: p.dims[0]!,
      channels: p.dims[1]!,
      weights: fulls.filter((f) => current(f).dims.length > 1),
      tensors: [],
    };
  });
  for (const [name, tensor] of refreshCodes(groups, 1e4, current))
    training.graph.setInitializer(training.graph.initializers.get(name)!, tensor);
  return hooks.finish!(training);
}

const notes: string[] = [];
const ctx = {
  common: { keepMacs: keep, seed: 0, hasData: true },
  log: () => {},
  note: (line: string) => notes.push(line),
};
const structured = await dcff.structure(dense, { fromScratch: false, roundTo: 1 }, keep, ctx);
const l1 = l1Pruned();
const macs = (m: Model) =>
  (computeCost(m, inferShapes(m)).totals.macs / computeCost(dense, inferShapes(dense)).totals.macs).toFixed(3);
console.log(`${path.basename(file)}, keepMacs ${keep}: dense ${await top1(dense)} on ${testLimit} test images`);
console.log(notes.join('\n'));
console.log(`MACs kept: dcff ${macs(structured.model)}, l1 ${macs(l1)}`);
const selected = klSelected(structured.hooks!);
console.log(
  `right after structuring:  dcff (T = 1) ${await top1(structured.model)}   dcff KL selection (T = 1e4) ${await top1(selected)}   l1 ${await top1(l1)}`,
);
console.log(
  `local least-squares refit (${localSamples} images):  dcff ${await localRefit(structured.model)}   dcff KL selection ${await localRefit(selected)}   l1 ${await localRefit(l1)}`,
);
console.log(
  `fine-tuned ${epochs} epoch(s) on ${samples}:  dcff (hooks) ${await fineTuned(structured.model, structured.hooks)}   l1 ${await fineTuned(l1)}`,
);
