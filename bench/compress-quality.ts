/**
 * Compression quality at one MACs target: SG-CNN (as published and balanced) against the two
 * baselines — uniform ResNeXt-style groups and L1 channel pruning — with the same fine-tuning
 * budget (local least squares, then global distillation from the dense model). For each
 * model it prints dense and compressed top-1 on the full test split, the structural MACs
 * ratio (what the connectivity or pruned shapes cost) and the executed one (what the lowered
 * graph computes, padding and masked-dense layers included), and CPU latency at batch 1.
 *
 * Run: node dist/bench/compress-quality.js [SUBJECT[,SUBJECT…]|all] [--epochs E] [--limit N] [--keep F]
 *      [--finetune local+global|global|local|none] [--methods sg-cnn,sg-balanced,uniform,l1] [--seed S]
 *      [--allocate sensitivity|uniform] [--steps N] [--groups G]   (sg-cnn's cp allocation, steps
 *      and clusters per layer; default as `regroup compress`: per-layer cps from the sensitivity
 *      scan, one step, 64 clusters)
 * Subjects: fmnist, fmnist-vgg, fmnist-mobilenet — the project's trained Fashion-MNIST
 * baselines; cifar — the PyTorch ResNet-20 from ../shared/fixtures, fine-tuned on the CIFAR-10
 * training JPEGs, evaluated on the test JPEGs. `all` runs fmnist and cifar.
 */
import { BenchArgs, ROOT } from './args.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compressModel, type CompressOutcome, type FinetuneScheme } from '../cli/pipelines/compress.js';

const root = ROOT;
const args = new BenchArgs();
const epochs = args.number('--epochs', 2);
const limit = args.number('--limit', 30_000);
const keep = args.number('--keep', 0.5);
const scheme = args.string('--finetune', 'local+global') as FinetuneScheme;
const METHODS = args.string('--methods', 'sg-cnn,sg-balanced,uniform,l1').split(',');
const allocate = args.string('--allocate', '') || undefined;
const steps = args.number('--steps', 1);
const groups = Number(args.string('--groups', '')) || undefined; // absent: compress's own default
const seed = args.number('--seed', 0);
const which = (args.rest[0] ?? 'all').split(',');
const shared = path.resolve(root, '../shared/fixtures');

const SUBJECTS = {
  fmnist: { model: path.join(root, 'fixtures/models/fmnist-resnet.onnx'), data: 'fashion-mnist', testData: undefined as string | undefined },
  'fmnist-vgg': { model: path.join(root, 'fixtures/models/fmnist-vgg.onnx'), data: 'fashion-mnist', testData: undefined as string | undefined },
  'fmnist-mobilenet': { model: path.join(root, 'fixtures/models/fmnist-mobilenet.onnx'), data: 'fashion-mnist', testData: undefined as string | undefined },
  cifar: { model: path.join(shared, 'models/resnet20-cifar10-pytorch/resnet20.onnx'), data: path.join(shared, 'data/cifar10-train-jpg'), testData: path.join(shared, 'data/cifar10-test-jpg') },
};
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-quality-'));

for (const [name, subject] of Object.entries(SUBJECTS)) {
  if (which.includes('all') ? !['fmnist', 'cifar'].includes(name) : !which.includes(name)) continue;
  if (!fs.existsSync(subject.model)) {
    console.error(`bench/compress-quality: ${subject.model} not found`);
    process.exit(1);
  }
  console.log(`\n${name}: ${path.relative(root, subject.model)}, keep ${keep} of the MACs, fine-tuning ${scheme} (${epochs} epoch(s) of distillation on ${limit} training samples)`);
  console.log(`${'method'.padEnd(12)} ${'dense'.padStart(7)} ${'top-1'.padStart(7)} ${'Δ pt'.padStart(6)} ${'struct MACs'.padStart(11)} ${'exec MACs'.padStart(9)} ${'b1 dense'.padStart(9)} ${'b1 after'.padStart(9)} ${'seconds'.padStart(8)}`);
  for (const method of METHODS) {
    const methodOptions = method === 'sg-cnn' ? { allocate, steps, groups } : {};
    const output = path.join(scratch, `${name}-${method}.onnx`);
    const outcome = await compressModel(subject.model, { output, method, methodOptions, keepMacs: keep, data: subject.data, testData: subject.testData, finetune: scheme, epochs, limit, seed });
    console.log(row(method, outcome));
  }
}
fs.rmSync(scratch, { recursive: true, force: true });

function row(method: string, o: CompressOutcome): string {
  const pct = (x: number | undefined) => (x === undefined ? '—' : `${(100 * x).toFixed(2)}%`);
  const [d, c] = [o.dense.accuracy?.top1, o.compressed.accuracy?.top1];
  const delta = d !== undefined && c !== undefined ? (100 * (c - d)).toFixed(2) : '—';
  const ms = (s: CompressOutcome['dense']) => `${s.latency.find((l) => l.batch === 1)?.medianMs.toFixed(3) ?? '—'}`;
  return `${method.padEnd(12)} ${pct(d).padStart(7)} ${pct(c).padStart(7)} ${delta.padStart(6)} ${o.structuredMacsRatio.toFixed(3).padStart(11)} ${(o.compressed.macs / o.dense.macs).toFixed(3).padStart(9)} ${ms(o.dense).padStart(9)} ${ms(o.compressed).padStart(9)} ${o.seconds.toFixed(0).padStart(8)}`;
}
