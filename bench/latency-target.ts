/**
 * Compressing to a measured latency (`regroup compress --keep-latency F --latency-batch B`):
 * for each method and batch, the model compressed by `compressModel` exactly as the command
 * does (no data, no fine-tuning: latency does not depend on the weights' values), then every
 * output timed again, fresh, beside the dense model in interleaved rounds at its batch. The
 * acceptance is the fresh measurement: within 5% of F × the dense latency.
 *
 * Run: node dist/bench/latency-target.js [--keep-latency 0.5] [--batches 1,8] [--methods l1,wsp]
 *      [--models resnet18,fmnist] [--runs 40] [--rounds 8] [--threads 0] [--latency-plan macs|table]
 * `wsp` runs its weight proxy (no data here). "planned k" is the search variable: the kept share of
 * the MACs, or of the predicted latency for the methods that price channels by the latency table
 * (l1, wsp); "MACs ratio" is the chosen structure's MACs over the dense model's.
 */
import { BenchArgs, requireFixtures, ROOT } from './args.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel } from '../compiler/onnx/io.js';
import { compressModel, type CompressOutcome } from '../cli/pipelines/compress.js';
import { interleavedMedians, timedModel, type Timed } from './interleave.js';
import type { LatencyPlan } from '../cli/pipelines/latency-target.js';

const args = new BenchArgs();
const keepLatency = args.number('--keep-latency', 0.5);
const batches = args.string('--batches', '1,8').split(',').map(Number);
const runs = args.number('--runs', 40);
const rounds = args.number('--rounds', 8);
const threads = args.number('--threads', 0);
const methods = args.string('--methods', 'l1,wsp').split(',');
const plan = args.string('--latency-plan', 'macs') as LatencyPlan;
const wanted = args.string('--models', 'resnet18').split(',');
const MODELS: Record<string, string> = {
  resnet18: path.resolve(ROOT, '../shared/fixtures/models/torchvision/resnet18-torchscript-op17.onnx'),
  fmnist: path.join(ROOT, 'fixtures/models/fmnist-resnet.onnx'),
};
const unknown = wanted.filter((name) => !MODELS[name]);
if (unknown.length > 0) {
  console.error(
    `bench/latency-target: unknown model ${unknown.join(', ')}; choose from ${Object.keys(MODELS).join(', ')}`,
  );
  process.exit(2);
}
requireFixtures(wanted.map((name) => MODELS[name]!));
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-latency-target-'));

for (const name of wanted) {
  const file = MODELS[name]!;
  const dense = timedModel('dense', loadModel(file), { prepare: true });
  for (const batch of batches) {
    const timed: Timed[] = [dense];
    const outcomes = new Map<string, CompressOutcome>();
    for (const method of methods) {
      const output = path.join(scratch, `${name}-${method}-b${batch}.onnx`);
      const outcome = await compressModel(file, {
        output,
        method,
        methodOptions: method === 'wsp' ? { criterion: 'weight-proxy' } : {},
        keepMacs: keepLatency,
        latencyTarget: { keep: keepLatency, batch, plan },
        finetune: 'none',
        latency: false,
        seed: 0,
        threads,
      });
      outcomes.set(method, outcome);
      timed.push(timedModel(method, loadModel(output)));
    }
    const times = await interleavedMedians(timed, { batch, runs, rounds, threads });
    console.log(
      `\n${name}, batch ${batch}: --keep-latency ${keepLatency} --latency-plan ${plan}; fresh timing ${runs} runs per cell in ${rounds} interleaved rounds, ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}`,
    );
    console.log(
      [
        'method',
        'probes',
        'planned k',
        'MACs ratio',
        'search ratio',
        'dense ms',
        'output ms',
        'fresh ratio',
        'within 5%',
        'seconds',
      ]
        .map((h, i) => (i ? h.padStart(12) : h.padEnd(8)))
        .join(' '),
    );
    const denseMs = times.get('dense')!;
    for (const [method, o] of outcomes) {
      const search = o.latencySearch!;
      const fresh = times.get(method)! / denseMs;
      const cells = [
        String(search.probes.length),
        search.chosen.keepMacs.toFixed(3),
        search.chosen.macsRatio.toFixed(3),
        (search.chosen.ms / search.chosen.denseMs).toFixed(3),
        denseMs.toFixed(2),
        times.get(method)!.toFixed(2),
        fresh.toFixed(3),
        Math.abs(fresh / keepLatency - 1) <= 0.05 ? 'yes' : 'NO',
        o.seconds.toFixed(0),
      ];
      console.log([method.padEnd(8), ...cells.map((c) => c.padStart(12))].join(' '));
    }
  }
}
fs.rmSync(scratch, { recursive: true, force: true });
