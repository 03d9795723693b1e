/**
 * WSP benchmark: the PyTorch MNIST CNN (../shared/fixtures) pruned to a MACs target in one shot,
 * without fine-tuning, by `--method wsp` with each criterion and by global l1 pruning (the
 * `regroup prune --criterion l1 --round-to 1` plan). Saliency is measured on MNIST training
 * digits (the embedded `mnist:train` set); top-1 is on the MNIST test set (IDX files).
 * Prints top-1 before and after, the MACs kept and the method's notes.
 * Run: node dist/bench/wsp.js [--keep-macs 0.5] [--samples 256] [--test 10000]
 */
import path from 'node:path';
import { BenchArgs, requireFixtures, ROOT } from './args.js';
import { analyzeChannels } from '../compiler/analysis/channel-groups.js';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import type { Model } from '../compiler/ir/model.js';
import { decodeModel } from '../compiler/onnx/decode.js';
import { encodeModel } from '../compiler/onnx/encode.js';
import { loadModel } from '../compiler/onnx/io.js';
import {
  applyChannelMap,
  channelImportance,
  planPruning,
  PREPARE,
  removalSet,
  runPasses,
  TIDY,
} from '../passes/index.js';
import type { StructureContext } from '../passes/methods/method.js';
import { wsp, type WspCriterion } from '../passes/methods/wsp.js';
import { openDataset } from '../runtime/data/datasets.js';
import { inputSpecFor } from '../runtime/data/preprocess.js';
import { evaluate } from '../runtime/evaluate.js';
import { channelSaliency } from '../runtime/saliency.js';

const args = new BenchArgs();
const keepMacs = args.number('--keep-macs', 0.5);
const samples = args.number('--samples', 256);
const testImages = args.number('--test', 10000);
const shared = path.resolve(ROOT, '../shared/fixtures');
const modelPath = path.join(shared, 'models/mnist-cnn-pytorch/mnist_cnn.onnx');
const testDir = path.join(shared, 'data/mnist-test');
requireFixtures([modelPath, testDir]);

const dense = loadModel(modelPath);
runPasses(dense, PREPARE, {}, { fixpoint: true });
const spec = inputSpecFor(dense, { preset: 'mnist' });
const train = await openDataset('mnist:train');
const test = await openDataset(`idx:${testDir}`);
const top1 = async (model: Model) =>
  (await evaluate(model, undefined, test, spec, { limit: testImages, optimization: 'disabled' })).top1;

/** The context the compress pipeline gives a method, with saliency measured on training digits. */
function context(notes: string[]): StructureContext {
  return {
    common: { keepMacs, seed: 0, hasData: true },
    log: () => {},
    note: (line) => notes.push(line),
    measure: {
      channelMeanAbs: () => Promise.reject(new Error('not used by wsp')),
      divergenceProbe: () => Promise.reject(new Error('not used by wsp')),
      channelSaliency: (model, values, n) => channelSaliency(model, train, spec, values, { samples: n ?? samples }),
    },
  };
}

function l1Global(model: Model): { model: Model; macsRatio: number } {
  const copy = decodeModel(encodeModel(model).bytes);
  const shapes = inferShapes(copy);
  const analysis = analyzeChannels(copy, shapes);
  const cost = computeCost(copy, shapes);
  const plan = planPruning(
    analysis,
    cost,
    channelImportance(analysis, { criterion: 'l1' }),
    { keepMacs, roundTo: 1 },
    'l1',
  );
  applyChannelMap(copy, analysis, removalSet(plan, analysis));
  runPasses(copy, TIDY, {}, { fixpoint: true });
  return { model: copy, macsRatio: computeCost(copy, inferShapes(copy)).totals.macs / cost.totals.macs };
}

console.log(
  `MNIST CNN, keep-macs ${keepMacs}, no fine-tuning; top-1 on ${Math.min(testImages, test.size)} MNIST test images`,
);
console.log(`dense: ${(100 * (await top1(dense))).toFixed(2)}%`);
for (const criterion of ['saliency', 'weight-proxy'] as WspCriterion[]) {
  const notes: string[] = [];
  const started = performance.now();
  const result = await wsp.structure(
    dense,
    wsp.options({ criterion }, context(notes).common),
    keepMacs,
    context(notes),
  );
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `wsp ${criterion}: ${(100 * (await top1(result.model))).toFixed(2)}% at ${(100 * result.macsRatio).toFixed(1)}% MACs (${seconds.toFixed(1)} s)`,
  );
  for (const note of notes) console.log(`  ${note}`);
}
const l1 = l1Global(dense);
console.log(`l1 global: ${(100 * (await top1(l1.model))).toFixed(2)}% at ${(100 * l1.macsRatio).toFixed(1)}% MACs`);
