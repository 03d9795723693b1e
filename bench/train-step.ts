/**
 * Training step against inference and against PyTorch on the same CPU (not a test):
 *
 *   node dist/bench/train-step.js [--subjects resnet20,resnet20-28,fmnist[,fmnist-mobilenet]] [--batch 128] [--steps 10]
 *                                 [--forms] [--no-torch]
 *
 * Subjects: ResNet-20 (../shared/fixtures) on 3×32×32; the same network on 1×28×28 (its first
 * convolution cut to one input channel); the Fashion-MNIST ResNet on 1×28×28. For each: the
 * step graph regroup trains with (SGD, Nesterov momentum, weight decay, cross-entropy; all
 * graph optimisations) and the inference model, timed in interleaved rounds so load hits
 * both alike; step ÷ 3× forward (a backward pass costs about two forwards, so ≈ 1 is the
 * floor); the arena's peak while stepping (onnxruntime's profile); and PyTorch's step and
 * forward on the same network (bench/torch-step.py) when a python3 with torch and onnx is found
 * ($REGROUP_PYTHON, python3 on PATH, /usr/bin/python3) — otherwise a note. `--forms` adds the step with plain (unblocked) convolutions and with the other Conv gradient formulations.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildTrainingGraph, type TrainingBuildOptions, type TrainingGraph } from '../compiler/autodiff/training.js';
import type { Model } from '../compiler/ir/model.js';
import { Tensor } from '../compiler/ir/tensor.js';
import { loadModel, saveModel } from '../compiler/onnx/io.js';
import { createSession, ort, run } from '../runtime/session.js';
import { trainLayout, type TrainLayout } from '../runtime/train/blocked-layout.js';
import { StepRunner } from '../runtime/train/step-runner.js';
import { profilePrefix } from '../runtime/profile.js';
import { BenchArgs, requireFixtures, ROOT, SHARED_FIXTURES } from './args.js';

ort.env.logLevel = 'error';
const args = new BenchArgs();
const batch = args.number('--batch', 128);
const steps = args.number('--steps', 10);
const forms = args.has('--forms');
const torch = !args.has('--no-torch');
const wanted = args.string('--subjects', 'resnet20,resnet20-28,fmnist').split(',');

// ResNet-20 is a third-party file: ../shared/fixtures beside the project, not the project's own fixtures/.
const resnet20 = path.join(SHARED_FIXTURES, 'models/resnet20-cifar10-pytorch/resnet20.onnx');
const SUBJECTS: Record<string, { file: string; channels: number; size: number }> = {
  resnet20: { file: resnet20, channels: 3, size: 32 },
  'resnet20-28': { file: resnet20, channels: 1, size: 28 },
  fmnist: { file: path.join(ROOT, 'fixtures/models/fmnist-resnet.onnx'), channels: 1, size: 28 },
  'fmnist-mobilenet': { file: path.join(ROOT, 'fixtures/models/fmnist-mobilenet.onnx'), channels: 1, size: 28 },
};
/**
 * Step graph forms: gradient formulations and the convolutions' layout (runtime/train/blocked-layout.ts);
 * in the blocked layout the step is built for the batch, as the trainer does, unless `anyBatch`.
 */
const FORMS: Record<string, { options?: TrainingBuildOptions; layout?: TrainLayout; anyBatch?: boolean }> = {
  default: {},
  ...(forms
    ? {
        'BN statistics by reductions': { options: { batchNormStatistics: 'reductions' } },
        'plain NCHW Convs': { layout: 'plain' },
        'any batch (depthwise ∂W by copies)': { anyBatch: true },
        'patches ∂W': { options: { convWeightGradient: 'patches' } },
        'ConvTranspose ∂x': { options: { convInputGradient: 'transpose' } },
        'swapped ∂W': { options: { convWeightGradient: 'swapped' } },
      }
    : {}),
};
const unknown = wanted.filter((name) => !SUBJECTS[name]);
if (unknown.length > 0) {
  console.error(
    `bench/train-step: unknown subject ${unknown.join(', ')}; choose from ${Object.keys(SUBJECTS).join(', ')}`,
  );
  process.exit(2);
}
requireFixtures([...new Set(wanted.map((name) => SUBJECTS[name]!.file))]);
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-train-step-'));

/** The model with its input made [N, channels, size, size] and its first Conv cut to `channels` inputs. */
function reshaped(file: string, channels: number, size: number): Model {
  const model = loadModel(file);
  const input = model.graph.inputs.find((v) => !v.isInitializer())!;
  const had = input.type!.shape![1] as number;
  input.type = { ...input.type!, shape: ['N', channels, size, size] };
  if (had !== channels) {
    const conv = model.graph.nodeList().find((n) => n.opType === 'Conv')!;
    const w = conv.input(1).constValue!;
    const [o, , kh, kw] = w.dims as number[];
    const cut = new Float32Array(o! * channels * kh! * kw!);
    const data = w.data as Float32Array;
    for (let f = 0; f < o!; f++)
      for (let c = 0; c < channels; c++)
        cut.set(
          data.subarray((f * had + c) * kh! * kw!, (f * had + c + 1) * kh! * kw!),
          (f * channels + c) * kh! * kw!,
        );
    model.graph.setInitializer(conv.input(1), Tensor.fromArray(w.dtype, [o!, channels, kh!, kw!], cut));
  }
  return model;
}

function randomBatch(channels: number, size: number) {
  let state = 12345;
  const next = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31 - 0.5;
  };
  const data = new ort.Tensor('float32', Float32Array.from({ length: batch * channels * size * size }, next), [
    batch,
    channels,
    size,
    size,
  ]);
  const labels = new ort.Tensor(
    'int64',
    BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 10)),
    [batch],
  );
  return { data, labels };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1]!;
/** A python3 with torch and onnx: $REGROUP_PYTHON, the one on PATH, or the system's. */
const python = torch
  ? [process.env.REGROUP_PYTHON, 'python3', '/usr/bin/python3']
      .filter((p): p is string => Boolean(p))
      .find((p) => spawnSync(p, ['-c', 'import torch, onnx'], { encoding: 'utf8' }).status === 0)
  : undefined;
if (torch && !python)
  console.log(
    'note: no python3 with torch and onnx here (Debian: python3-torch python3-onnx; or set REGROUP_PYTHON); PyTorch columns skipped',
  );

const rows: string[][] = [];
for (const name of wanted) {
  const subject = SUBJECTS[name]!;
  const model = reshaped(subject.file, subject.channels, subject.size);
  const { data, labels } = randomBatch(subject.channels, subject.size);
  const spec = {
    loss: { kind: 'cross-entropy' as const },
    optimizer: { kind: 'sgd' as const, momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
  };
  const graphs = new Map<string, TrainingGraph>();
  for (const [form, { options, layout, anyBatch }] of Object.entries(FORMS)) {
    const blocked = (await trainLayout({ layout })).layout === 'blocked';
    const fixed = blocked && !anyBatch ? { batch, blockedLayout: true } : {};
    const statistics = { batchNormStatistics: 'fused' } as const; // the CPU provider's, as the trainer takes
    graphs.set(form, buildTrainingGraph(model, spec, { ...statistics, ...fixed, ...options }));
  }
  const layoutOf = (form: string) => FORMS[form]!.layout;
  const runners = new Map<string, StepRunner>();
  for (const [form, graph] of graphs)
    runners.set(form, await StepRunner.create(graph, { optimization: 'all', layout: layoutOf(form) }));
  const inference = await createSession(model, { optimization: 'all' });
  const inputName = inference.inputNames[0]!;
  const times = new Map<string, number[]>([...runners.keys(), 'forward'].map((k) => [k, []]));
  // Each session's pool threads spin for more work after a run; a pause lets them sleep so
  // the next session (another form) does not share the cores with them.
  const settle = () => new Promise((resolve) => setTimeout(resolve, 30));
  for (let round = 0; round < steps + 2; round++) {
    for (const [form, runner] of runners) {
      await settle();
      const t = performance.now();
      await runner.step({ data, labels, lr: 0.01, step: round + 1 });
      if (round >= 2) times.get(form)!.push(performance.now() - t);
    }
    await settle();
    const t = performance.now();
    await run(inference, { [inputName]: data });
    if (round >= 2) times.get('forward')!.push(performance.now() - t);
  }
  // The arena's peak while stepping, per form, from a profiled runner of its graph (3 steps).
  const peaks = new Map<string, number>();
  for (const [form, graph] of graphs) {
    const profiled = await StepRunner.create(graph, {
      optimization: 'all',
      layout: layoutOf(form),
      profile: profilePrefix(),
    });
    for (let s = 1; s <= 3; s++) await profiled.step({ data, labels, lr: 0.01, step: s });
    peaks.set(form, profiled.finishProfile()!.peakBytes);
    await profiled.release();
  }
  await Promise.all([...runners.values()].map((r) => r.release()));
  await inference.release();

  let torchCells = ['—', '—', '—'];
  if (python) {
    const file = path.join(scratch, `${name}.onnx`);
    saveModel(model, file);
    const r = spawnSync(
      python,
      [path.join(ROOT, 'bench/torch-step.py'), file, String(batch), String(subject.channels), String(subject.size)],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`bench/torch-step.py failed: ${r.stderr}`);
    const t = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { step_ms: number; forward_ms: number; torch: string };
    torchCells = [
      t.step_ms.toFixed(1),
      t.forward_ms.toFixed(1),
      (median(times.get('default')!) / t.step_ms).toFixed(2),
    ];
    if (rows.length === 0) console.log(`PyTorch ${t.torch}`);
  }
  const forward = median(times.get('forward')!);
  for (const form of runners.keys()) {
    const step = median(times.get(form)!);
    rows.push([
      `${name} ${subject.channels}×${subject.size}×${subject.size}`,
      form,
      step.toFixed(1),
      forward.toFixed(1),
      (step / (3 * forward)).toFixed(2),
      `${(peaks.get(form)! / 2 ** 20).toFixed(0)} MiB`,
      ...(form === 'default' ? torchCells : ['', '', '']),
    ]);
  }
}
fs.rmSync(scratch, { recursive: true, force: true });
console.log(
  `\nbatch ${batch}, ${steps} steps per cell in interleaved rounds, ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), load ${os.loadavg()[0]!.toFixed(1)}`,
);
const head = [
  'subject',
  'Conv gradients',
  'step ms',
  'forward ms',
  'step/3fwd',
  'arena peak',
  'torch step',
  'torch fwd',
  'vs torch',
];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
for (const r of [head, ...rows])
  console.log(r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
