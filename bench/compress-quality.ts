/**
 * Compression quality at one MACs target, every method with the same fine-tuning budget
 * (local least squares, then global distillation from the dense model), against two
 * references: the dense model as given, and the **control** — the dense model put through the
 * same pipeline and budget at `--keep-macs 1` (an under-trained model gains from fine-tuning
 * alone, so "better than the original" proves nothing about a method). For each model it
 * prints dense, control and compressed top-1 on the full test split, the differences, the
 * structural MACs ratio (what the connectivity or pruned shapes cost) and the executed one
 * (what the lowered graph computes, padding and masked-dense layers included), and CPU
 * latency at batch 1.
 *
 * Run: node dist/bench/compress-quality.js [SUBJECT[,SUBJECT…]|all] [--epochs E] [--limit N] [--keep F]
 *      [--finetune local+global|global|local|none] [--methods control,sg-cnn,wsp,wsp+proxy,dcff,l1] [--seed S]
 *      [--keep-latency F --latency-batch B]   (compare at equal measured latency instead of equal MACs:
 *      each method compresses to F of the dense latency at batch B, `regroup compress --keep-latency`)
 *      [--latency-plan table|macs]   (how l1 and wsp choose channels under a latency target)
 *      [--round-to N]   (kept channel counts' multiple for the pruning methods; default the CPU's SIMD block)
 *      [--min-realised F]   (dgconv, msgc: the share of a grouping's saving the latency model must promise at
 *      --latency-batch for a factor to be gated; the outputs are also timed at that batch)
 *      [--allocate sensitivity|uniform] [--steps N] [--groups G]   (sg-cnn's cp allocation, steps
 *      and clusters per layer; default as `regroup compress`: per-layer cps from the sensitivity
 *      scan, one step, 64 clusters)
 * Method labels: any registered method name; `control` (dense at keep 1); `wsp+proxy` (WSP with
 * the official code's weight proxy instead of the paper's saliency); `dgconv+closed` (DGConv's
 * gates start closed) and `dgconv+kronecker` (the paper's free gate order); `msgc` prints a
 * second row for its dynamic form (`msgc:dynamic`, written beside the static output).
 * Subjects: fmnist, fmnist-vgg, fmnist-mobilenet — the project's trained Fashion-MNIST
 * baselines; cifar — the PyTorch ResNet-20 from ../shared/fixtures, fine-tuned on the CIFAR-10
 * training JPEGs, evaluated on the test JPEGs. `all` runs fmnist and cifar.
 */
import { BenchArgs, requireFixtures, ROOT } from './args.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cpuSimdBlock } from '../runtime/providers.js';
import { methodNamed } from '../passes/methods/index.js';
import { compressModel, type CompressOutcome, type FinetuneScheme } from '../cli/pipelines/compress.js';
import type { LatencyPlan } from '../cli/pipelines/latency-target.js';
import { loadModel } from '../compiler/onnx/io.js';
import { interleavedMedians, timedModel, type Timed } from './interleave.js';

const root = ROOT;
const args = new BenchArgs();
const epochs = args.number('--epochs', 2);
const limit = args.number('--limit', 30_000);
const keep = args.number('--keep', 0.5);
const scheme = args.string('--finetune', 'local+global') as FinetuneScheme;
const METHODS = args.string('--methods', 'control,sg-cnn,wsp,wsp+proxy,dcff,l1').split(',');
const allocate = args.string('--allocate', '') || undefined;
const steps = args.number('--steps', 1);
const groups = Number(args.string('--groups', '')) || undefined; // absent: compress's own default
const seed = args.number('--seed', 0);
const channelMultiple = args.number('--round-to', cpuSimdBlock());
const keepLatency = Number(args.string('--keep-latency', '')) || undefined;
const latencyBatch = args.number('--latency-batch', 1);
const latencyPlan = args.string('--latency-plan', 'macs') as LatencyPlan;
const minRealised = Number(args.string('--min-realised', '')) || undefined; // dgconv's; absent: its default
const which = (args.rest[0] ?? 'all').split(',');
const shared = path.resolve(root, '../shared/fixtures');

const SUBJECTS = {
  fmnist: {
    model: path.join(root, 'fixtures/models/fmnist-resnet.onnx'),
    data: 'fashion-mnist',
    testData: undefined as string | undefined,
  },
  'fmnist-vgg': {
    model: path.join(root, 'fixtures/models/fmnist-vgg.onnx'),
    data: 'fashion-mnist',
    testData: undefined as string | undefined,
  },
  'fmnist-mobilenet': {
    model: path.join(root, 'fixtures/models/fmnist-mobilenet.onnx'),
    data: 'fashion-mnist',
    testData: undefined as string | undefined,
  },
  cifar: {
    model: path.join(shared, 'models/resnet20-cifar10-pytorch/resnet20.onnx'),
    data: path.join(shared, 'data/cifar10-train-jpg'),
    testData: path.join(shared, 'data/cifar10-test-jpg'),
  },
};
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-quality-'));

const unknown = which.filter((name) => name !== 'all' && !(name in SUBJECTS));
if (unknown.length > 0) {
  console.error(
    `bench/compress-quality: unknown subject ${unknown.join(', ')}; choose from ${Object.keys(SUBJECTS).join(', ')}`,
  );
  process.exit(2);
}
const chosen = Object.entries(SUBJECTS).filter(([name]) =>
  which.includes('all') ? ['fmnist', 'cifar'].includes(name) : which.includes(name),
);
// Every subject's files up front: a missing one stops the run before hours of fine-tuning, not after.
requireFixtures(
  chosen.flatMap(([, s]) => [s.model, ...[s.data, s.testData].filter((d): d is string => d?.includes('/') === true)]),
);

for (const [name, subject] of chosen) {
  console.log(
    `\n${name}: ${path.relative(root, subject.model)}, ${keepLatency ? `keep ${keepLatency} of the latency at batch ${latencyBatch} (${latencyPlan} plan)` : `keep ${keep} of the MACs`}, fine-tuning ${scheme} (${epochs} epoch(s) of distillation on ${limit} training samples), seed ${seed}, pruned widths rounded to ${channelMultiple}`,
  );
  console.log(
    [
      'method'.padEnd(12),
      'dense',
      'control',
      'top-1',
      'Δ dense',
      'Δ control',
      'struct MACs',
      'exec MACs',
      `b${latencyBatch} dense`,
      `b${latencyBatch} after`,
      'ratio',
      'seconds',
    ]
      .map((h, i) => (i ? h.padStart(9) : h))
      .join(' '),
  );
  let control: number | undefined;
  const written: Timed[] = [];
  for (const label of METHODS) {
    const { method, keepMacs, methodOptions } = variant(label);
    const output = path.join(scratch, `${name}-${label}.onnx`);
    const outcome = await compressModel(subject.model, {
      output,
      method,
      methodOptions,
      keepMacs,
      latencyTarget:
        keepLatency && label !== 'control' ? { keep: keepLatency, batch: latencyBatch, plan: latencyPlan } : undefined,
      // The batch the outputs are meant to run fast at (dgconv gates for it; the lowering ranks forms at it).
      latencyBatch,
      data: subject.data,
      testData: subject.testData,
      // A method that learns its structure in training fine-tunes globally (no local phase).
      finetune: methodNamed(method).learnsStructure ? undefined : scheme,
      epochs,
      limit,
      seed,
      channelMultiple,
    });
    if (label === 'control') control = outcome.compressed.accuracy?.top1;
    console.log(row(label, outcome, control));
    // A method that learns its structure says what it learned (e.g. dgconv's group count per layer).
    for (const note of outcome.notes.filter((n) => /learned (groups|masks)/.test(n))) console.log(`  ${note}`);
    if (label !== 'control') written.push(timedModel(label, loadModel(output)));
    // Models written beside the output (msgc's dynamic form): a row each, timed side by side below.
    for (const c of outcome.companions) {
      console.log(row(`${label}:${c.suffix}`, { ...outcome, compressed: c.side, structuredMacsRatio: NaN }, control));
      written.push(timedModel(`${label}:${c.suffix}`, loadModel(c.file)));
    }
  }
  if ((keepLatency || written.some((w) => w.key.includes(':'))) && written.length > 0) {
    // Each row's latency was measured when its run ended; time every output again side by side.
    const timed = [timedModel('dense', loadModel(subject.model), { prepare: true }), ...written];
    const ms = await interleavedMedians(timed, { batch: latencyBatch, runs: 40, rounds: 8 });
    const cells = written.map((w) => `${w.key} ${(ms.get(w.key)! / ms.get('dense')!).toFixed(3)}`);
    console.log(
      `side by side at batch ${latencyBatch}, latency over dense (${ms.get('dense')!.toFixed(2)} ms): ${cells.join(', ')}`,
    );
  }
}
fs.rmSync(scratch, { recursive: true, force: true });

/** What a method label runs: a registered method, the control, or WSP with the weight proxy. */
function variant(label: string): { method: string; keepMacs: number; methodOptions: Record<string, unknown> } {
  if (label === 'control') return { method: 'l1', keepMacs: 1, methodOptions: {} };
  if (label === 'wsp+proxy') return { method: 'wsp', keepMacs: keep, methodOptions: { criterion: 'weight-proxy' } };
  const gates = minRealised ? { minRealised } : {};
  if (label === 'dgconv') return { method: 'dgconv', keepMacs: keep, methodOptions: gates };
  if (label === 'dgconv+closed')
    return { method: 'dgconv', keepMacs: keep, methodOptions: { ...gates, gateInit: 'closed' } };
  if (label === 'msgc') return { method: 'msgc', keepMacs: keep, methodOptions: gates };
  if (label === 'dgconv+kronecker')
    return { method: 'dgconv', keepMacs: keep, methodOptions: { ...gates, gateOrder: 'kronecker' } };
  return { method: label, keepMacs: keep, methodOptions: label === 'sg-cnn' ? { allocate, steps, groups } : {} };
}

function row(label: string, o: CompressOutcome, control: number | undefined): string {
  const pct = (x: number | undefined) => (x === undefined ? '—' : `${(100 * x).toFixed(2)}%`);
  const [d, c] = [o.dense.accuracy?.top1, o.compressed.accuracy?.top1];
  const delta = (ref: number | undefined) =>
    ref !== undefined && c !== undefined ? (100 * (c - ref)).toFixed(2) : '—';
  const at = (s: CompressOutcome['dense']) => s.latency.find((l) => l.batch === latencyBatch)?.medianMs;
  const ms = (s: CompressOutcome['dense']) => at(s)?.toFixed(3) ?? '—';
  const [dMs, cMs] = [at(o.dense), at(o.compressed)];
  const cells = [
    pct(d),
    pct(control),
    pct(c),
    delta(d),
    delta(control),
    Number.isNaN(o.structuredMacsRatio) ? '—' : o.structuredMacsRatio.toFixed(3),
    (o.compressed.macs / o.dense.macs).toFixed(3),
    ms(o.dense),
    ms(o.compressed),
    dMs && cMs ? (cMs / dMs).toFixed(3) : '—',
    o.seconds.toFixed(0),
  ];
  return [label.padEnd(12), ...cells.map((x) => x.padStart(9))].join(' ');
}
