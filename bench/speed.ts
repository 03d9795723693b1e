/**
 * Real speed of every compression method at one MACs target, no data and no fine-tuning
 * (latency does not depend on the weights' values): torchvision ResNet-18 from
 * ../shared/fixtures and the project's Fashion-MNIST ResNet, compressed by `compressModel`
 * exactly as `regroup compress` does — sg-cnn and sg-balanced with the cost model's
 * lowering and with --tune (candidate forms measured per layer at batch 1), uniform groups,
 * L1 channel pruning, WSP (weight proxy: no data here), DCFF — then timed side by side with the dense model in onnxruntime CPU (all
 * graph optimisations) at batch 1 and 8 in interleaved rounds.
 *
 * "× MACs" is the realised speed-up divided by the structural MACs reduction
 * (speed-up × MACs ratio): 1.0 means latency fell exactly as the learned structure's MACs.
 *
 * Run: node dist/bench/speed.js [--keep 0.5] [--runs 40] [--rounds 8] [--threads 0] [--round-to N]
 *      [--models resnet18,fmnist] [--methods sg-cnn,sg-cnn+tune,sg-balanced,sg-balanced+tune,uniform,l1,wsp,dcff]
 * A label is a registered method name, +tune to measure lowerings; `wsp` runs its weight proxy;
 * channel-pruning methods (l1, wsp, dcff) keep multiples of --round-to (default the SIMD block).
 */
import { BenchArgs, requireFixtures, ROOT } from './args.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeModel } from '../compiler/onnx/encode.js';
import { loadModel } from '../compiler/onnx/io.js';
import { PREPARE, runPasses } from '../passes/index.js';
import { compressModel, type CompressOutcome } from '../cli/pipelines/compress.js';
import { methodNamed } from '../passes/methods/index.js';
import { cpuSimdBlock } from '../runtime/providers.js';
import { interleavedMedians, type Timed } from './interleave.js';

const args = new BenchArgs();
const keep = args.number('--keep', 0.5);
const runs = args.number('--runs', 40);
const rounds = args.number('--rounds', 8);
const threads = args.number('--threads', 0);
// Channel-pruning methods keep multiples of this (default: the CPU's SIMD block, as `prune` does).
const roundTo = args.number('--round-to', cpuSimdBlock());
const wanted = args.string('--models', 'resnet18,fmnist').split(',');
const methods = args
  .string('--methods', 'sg-cnn,sg-cnn+tune,sg-balanced,sg-balanced+tune,uniform,l1,wsp,dcff')
  .split(',');
const MODELS: Record<string, string> = {
  resnet18: path.resolve(ROOT, '../shared/fixtures/models/torchvision/resnet18-torchscript-op17.onnx'),
  fmnist: path.join(ROOT, 'fixtures/models/fmnist-resnet.onnx'),
};
const unknown = wanted.filter((name) => !MODELS[name]);
if (unknown.length > 0) {
  console.error(`bench/speed: unknown model ${unknown.join(', ')}; choose from ${Object.keys(MODELS).join(', ')}`);
  process.exit(2);
}
requireFixtures(wanted.map((name) => MODELS[name]!));
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-speed-'));

for (const name of wanted) {
  const file = MODELS[name]!;
  const dense = loadModel(file);
  runPasses(dense, PREPARE, {}, { fixpoint: true });
  const timed: Timed[] = [{ key: 'dense', bytes: encodeModel(dense).bytes, model: dense }];
  const outcomes = new Map<string, CompressOutcome>();
  for (const label of methods) {
    const [method, tune] = [label.replace('+tune', ''), label.endsWith('+tune')];
    const output = path.join(scratch, `${name}-${label}.onnx`);
    const prunes = methodNamed(method).flags.some((f) => f.key === 'roundTo');
    const methodOptions = {
      ...(method === 'wsp' ? { criterion: 'weight-proxy' } : {}),
      ...(prunes ? { roundTo } : {}),
    };
    const outcome = await compressModel(file, {
      output,
      method,
      methodOptions,
      keepMacs: keep,
      finetune: 'none',
      latency: false,
      tune,
      seed: 0,
      threads,
    });
    outcomes.set(label, outcome);
    const model = loadModel(output);
    timed.push({ key: label, bytes: fs.readFileSync(output), model });
    console.log(
      `${name} ${label}: compressed in ${outcome.seconds.toFixed(1)} s, peak RSS ${outcome.peakRssMb.toFixed(0)} MB`,
    );
  }
  const timings = new Map<number, Map<string, number>>();
  for (const batch of [1, 8]) timings.set(batch, await interleavedMedians(timed, { batch, runs, rounds, threads }));
  console.log(
    `\n${name}: keep ${keep} of the MACs, ${runs} runs per cell in ${rounds} interleaved rounds, ${threads || 'default'} threads, ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}`,
  );
  console.log(
    [
      'method'.padEnd(17),
      'struct',
      '  exec',
      ...[1, 8].flatMap((b) => [`b${b} ms`.padStart(9), `speed-up`, '×MACs']),
    ].join('  '),
  );
  console.log(
    [
      'dense'.padEnd(17),
      ' 1.000',
      ' 1.000',
      ...[1, 8].flatMap((b) => [timings.get(b)!.get('dense')!.toFixed(2).padStart(9), '   1.00×', ' 1.00']),
    ].join('  '),
  );
  for (const [label, o] of outcomes) {
    const cells = [1, 8].flatMap((b) => {
      const speedup = timings.get(b)!.get('dense')! / timings.get(b)!.get(label)!;
      return [
        timings.get(b)!.get(label)!.toFixed(2).padStart(9),
        `${speedup.toFixed(2)}×`.padStart(8),
        (speedup * o.structuredMacsRatio).toFixed(2).padStart(5),
      ];
    });
    const forms = new Map<string, number>();
    for (const c of o.choices) forms.set(c.form, (forms.get(c.form) ?? 0) + 1);
    console.log(
      [
        label.padEnd(17),
        o.structuredMacsRatio.toFixed(3).padStart(6),
        (o.compressed.macs / o.dense.macs).toFixed(3).padStart(6),
        ...cells,
        [...forms].map(([f, n]) => `${f}×${n}`).join(' '),
      ].join('  '),
    );
  }
}
fs.rmSync(scratch, { recursive: true, force: true });
