/**
 * Local reconstruction benchmark: ResNet-20 on CIFAR-10 (../shared/fixtures) pruned to 50%
 * of its MACs with the l1 criterion, then refitted layer by layer against the dense model
 * on CIFAR-10 training images (no labels used). Prints top-1 on a seeded subset of the
 * CIFAR-10 test images for the dense, pruned and refitted models, top-1 agreement with the
 * dense model, and the refit's wall time; with --layers, the per-layer errors too.
 * Run: node dist/bench/local.js [--samples 512] [--positions 16] [--test 1000] [--keep-macs 0.5] [--layers]
 */
import { BenchArgs, requireFixtures, ROOT } from './args.js';
import path from 'node:path';
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
import { openDataset } from '../runtime/data/datasets.js';
import { inputSpecFor } from '../runtime/data/preprocess.js';
import type { Dataset, InputSpec } from '../runtime/data/types.js';
import { evaluate } from '../runtime/evaluate.js';
import { localReconstruct, type LocalLayerResult, type LocalOptions } from '../runtime/train/local.js';

const root = ROOT;
const shared = path.resolve(root, '../shared/fixtures');
const args = new BenchArgs();
const samples = args.number('--samples', 512);
const positions = args.number('--positions', 16);
const testImages = args.number('--test', 1000);
const keepMacs = args.number('--keep-macs', 0.5);
const modelPath = path.join(shared, 'models/resnet20-cifar10-pytorch/resnet20.onnx');
const trainDir = path.join(shared, 'data/cifar10-train-jpg');
const testDir = path.join(shared, 'data/cifar10-test-jpg');
requireFixtures([modelPath, trainDir, testDir]);

/** Prune as `regroup prune --keep-macs K --criterion l1 --round-to 1` does; returns the model and its MACs ratio. */
function prune(dense: Model): { model: Model; macsRatio: number } {
  const model = decodeModel(encodeModel(dense).bytes);
  runPasses(model, PREPARE, {}, { fixpoint: true });
  const shapes = inferShapes(model);
  const analysis = analyzeChannels(model, shapes);
  const cost = computeCost(model, shapes);
  const plan = planPruning(
    analysis,
    cost,
    channelImportance(analysis, { criterion: 'l1' }),
    { keepMacs, roundTo: 1 },
    'l1',
  );
  applyChannelMap(model, analysis, removalSet(plan, analysis));
  runPasses(model, TIDY, {}, { fixpoint: true });
  return { model, macsRatio: computeCost(model, inferShapes(model)).totals.macs / cost.totals.macs };
}

async function score(
  model: Model,
  test: Dataset,
  spec: InputSpec,
  reference: Model,
): Promise<{ top1: number; agreement: number }> {
  const r = await evaluate(model, 1, test, spec, { limit: testImages, reference });
  return { top1: r.top1, agreement: r.agreement!.top1Agreement };
}

function row(label: string, s: { top1: number; agreement: number }, extra = ''): void {
  console.log(
    `${label.padEnd(34)} ${(100 * s.top1).toFixed(1).padStart(6)}%  ${(100 * s.agreement).toFixed(1).padStart(9)}%  ${extra}`,
  );
}

function layerTable(layers: readonly LocalLayerResult[]): void {
  console.log('  layer      outputs  map        error before → after   seconds');
  for (const l of layers) {
    if (l.status === 'skipped') console.log(`  ${l.name.padEnd(10)} skipped: ${l.reason}`);
    else
      console.log(
        `  ${l.name.padEnd(10)} ${`${l.outputs}/${l.denseOutputs}`.padStart(7)}  ${l.outputMap!.padEnd(9)}  ${l.errorBefore!.toFixed(3).padStart(12)} → ${l.errorAfter!.toFixed(3)}   ${l.seconds!.toFixed(2).padStart(7)}`,
      );
  }
}

const dense = loadModel(modelPath);
const spec = inputSpecFor(dense, { preset: 'cifar10' });
const [train, test] = [await openDataset(trainDir), await openDataset(testDir)];
const { model: pruned, macsRatio } = prune(dense);
console.log(
  `ResNet-20 CIFAR-10, pruned to MACs ratio ${macsRatio.toFixed(3)} (l1); refit on ${samples} train images × ${positions} positions; top-1 on ${testImages} test images (seeded subset)`,
);
console.log(`${'model'.padEnd(34)} ${'top-1'.padStart(7)}  ${'agrees w/ dense'.padStart(10)}`);
row('dense', await score(dense, test, spec, dense));
row('pruned', await score(pruned, test, spec, dense));
const variants: [string, LocalOptions][] = [
  ['pruned + local (ridge → current W)', {}],
  ['pruned + local (plain ridge ‖W‖²)', { ridgeTowards: 'zero' }],
];
for (const [label, options] of variants) {
  const result = await localReconstruct(dense, pruned, train, spec, {
    samples,
    positionsPerImage: positions,
    ...options,
  });
  row(label, await score(result.model, test, spec, dense), `refit ${result.seconds.toFixed(1)} s`);
  if (args.has('--layers')) layerTable(result.layers);
}
