/**
 * Step time of a training graph (not a test; run with `node dist/bench/train-step.js
 * [model.onnx] [batch] [size]`): ResNet-20 (../shared/fixtures) by default at batch 64 on
 * 3×32×32, SGD with Nesterov momentum, all graph optimisations; the Conv gradient
 * formulations (∂x as a flipped-kernel Conv or ConvTranspose, ∂W by patches or a swapped Conv)
 * interleaved run by run so machine noise hits them alike. Prints the median of each.
 */
import { buildTrainingGraph } from '../compiler/autodiff/training.js';
import type { GradientOptions } from '../compiler/autodiff/gradients.js';
import { loadModel } from '../compiler/onnx/io.js';
import { ort } from '../runtime/session.js';
import { sharedModel } from '../test/helpers/shared.js';
import { StepHarness, syntheticBatch } from '../test/autodiff/step.js';

ort.env.logLevel = 'error';
const [file = sharedModel('resnet20'), batchArg = '64', sizeArg = '32'] = process.argv.slice(2);
const [batchSize, size] = [Number(batchArg), Number(sizeArg)];
const model = loadModel(file);
const channels = model.graph.inputs.find((v) => !v.isInitializer())!.type!.shape![1] as number;
const batch = syntheticBatch([batchSize, channels, size, size], 10, 1);
const variants: Record<string, GradientOptions> = {
  'conv ∂x': { convWeightGradient: 'patches', convInputGradient: 'conv' },
  'ConvTranspose ∂x': { convWeightGradient: 'patches', convInputGradient: 'transpose' },
  'swapped ∂W': { convWeightGradient: 'swapped', convInputGradient: 'conv' },
};
const harness: Record<string, StepHarness> = {};
for (const [name, options] of Object.entries(variants)) {
  const t = performance.now();
  const graph = buildTrainingGraph(
    model,
    { loss: { kind: 'cross-entropy' }, optimizer: { kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 5e-4 } },
    options,
  );
  harness[name] = await StepHarness.open(graph, 'all');
  console.log(
    `${name}: ${graph.model.graph.nodeCount} nodes, built and loaded in ${(performance.now() - t).toFixed(0)} ms`,
  );
}
const times: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
for (let round = 0; round < 9; round++) {
  for (const name of Object.keys(variants)) {
    const t = performance.now();
    await harness[name]!.step(batch, 0.01, round + 1);
    if (round >= 2) times[name]!.push(performance.now() - t);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
for (const [name, xs] of Object.entries(times))
  console.log(
    `${name}: median step ${median(xs).toFixed(0)} ms over ${xs.length} steps (${xs.map((x) => x.toFixed(0)).join(' ')})`,
  );
