/**
 * Self-grouping benchmark: torchvision ResNet-18 (../shared/fixtures, random weights: structure
 * and speed only) self-grouped to ~50% of its MACs with 4, 8 and 16 clusters per layer, then
 * lowered with each form forced (grouped, padded, per-group, masked-dense), with the cost
 * model's choice (auto) and, with --tune, with per-layer measured choices. Dense and lowered
 * models are timed side by side in onnxruntime CPU (all graph optimisations), batch 1 and 8,
 * in interleaved rounds; the table gives medians, the speed-up over dense, and speed-up ×
 * MACs ratio (1.0 = latency falls exactly with the self-grouped MACs). masked-dense runs the
 * dense conv shapes, so its speed-up should read 1.00×: how far it strays is the noise.
 * Build, then run: node dist/bench/grouped.js [--groups 4,8,16] [--runs 24] [--rounds 6]
 *   [--threads 0] [--tune] [--keep-macs 0.5] [--batches 1,8]
 */
import { BenchArgs, requireFixtures, ROOT } from './args.js';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { computeCost } from '../compiler/analysis/cost.js';
import { inferShapes } from '../compiler/analysis/shape-inference.js';
import type { Model } from '../compiler/ir/model.js';
import { encodeModel } from '../compiler/onnx/encode.js';
import { loadModel } from '../compiler/onnx/io.js';
import {
  LOWERING_FORMS,
  lowerGrouped,
  PREPARE,
  runPasses,
  selfGroup,
  type LayerChoice,
  type LowerGroupedOptions,
  type TuneHook,
} from '../passes/index.js';
import { benchmark } from '../runtime/benchmark.js';
import { interleavedMedians } from './interleave.js';
import { ort } from '../runtime/session.js';
import { cpuSimdBlock } from '../runtime/providers.js';

const root = ROOT;
const args = new BenchArgs();
const modelPath = args.string(
  '--model',
  path.resolve(root, '../shared/fixtures/models/torchvision/resnet18-torchscript-op17.onnx'),
);
const groupCounts = args.numbers('--groups', '4,8,16');
const batches = args.numbers('--batches', '1,8');
const runs = args.number('--runs', 24);
const rounds = args.number('--rounds', 6);
const threads = args.number('--threads', 0);
const keep = args.number('--keep-macs', 0.5);
const tune = args.has('--tune');
requireFixtures([modelPath]);
const simdBlock = cpuSimdBlock();
ort.env.logLevel = 'error';

interface Variant {
  label: string;
  groups: number;
  bytes: Uint8Array;
  model: Model;
  /** Self-grouped MACs / dense MACs (the connectivity, what SG-CNN reports). */
  macsRatio: number;
  /** MACs the lowered graph executes / dense MACs (padding included). */
  executedRatio: number;
  forms: string;
}

const macsOf = (model: Model) => computeCost(model, inferShapes(model)).totals.macs;

/** Per-layer latencies of single-layer candidate models, measured at one batch size. */
function tuneHook(batch: number): TuneHook {
  return async (candidates) => {
    const out: number[] = [];
    for (const model of candidates) out.push((await benchmark(model, model, { batch, runs: 12, warmup: 2 })).medianMs);
    return out;
  };
}

function formSummary(choices: readonly LayerChoice[]): string {
  const counts = new Map<string, number>();
  for (const c of choices) counts.set(c.form, (counts.get(c.form) ?? 0) + 1);
  return [...counts].map(([form, n]) => `${form}×${n}`).join(' ');
}

async function variants(dense: Model, denseMacs: number): Promise<Variant[]> {
  const out: Variant[] = [];
  for (const groups of groupCounts) {
    const started = performance.now();
    const sg = selfGroup(dense, { groups, keepMacs: keep, seed: 0 });
    console.log(
      `groups ${groups}: self-group ${((performance.now() - started) / 1000).toFixed(1)} s, cp ${sg.stats.cp.toFixed(2)}, MACs ratio ${sg.stats.macsRatio.toFixed(3)}, ${sg.stats.layers.length} layers grouped, ${sg.stats.skipped.length} left dense`,
    );
    const plans: { label: string; options: LowerGroupedOptions }[] = [
      ...LOWERING_FORMS.map((form) => ({ label: form, options: { form, simdBlock } })),
      { label: 'auto', options: { simdBlock } },
      ...(tune ? [{ label: 'tuned b1', options: { simdBlock, tune: tuneHook(1), batch: 1 } }] : []),
    ];
    for (const { label, options } of plans) {
      const lowered = await lowerGrouped(sg.model, sg.connectivity, options);
      const bytes = encodeModel(lowered.model).bytes;
      out.push({
        label,
        groups,
        bytes,
        model: lowered.model,
        macsRatio: sg.stats.macsRatio,
        executedRatio: macsOf(lowered.model) / denseMacs,
        forms: formSummary(lowered.choices),
      });
    }
  }
  return out;
}

const hash = (bytes: Uint8Array) => createHash('sha1').update(bytes).digest('hex');

const dense = loadModel(modelPath);
runPasses(dense, PREPARE, {}, { fixpoint: true });
const denseBytes = encodeModel(dense).bytes;
const denseMacs = macsOf(dense);
console.log(
  `model: ${path.basename(modelPath)} (${(denseMacs / 1e9).toFixed(2)} GMACs), target ${keep} of MACs, SIMD block ${simdBlock}, ${runs} timed runs per cell in ${rounds} interleaved rounds, ${threads || 'default'} threads, ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}`,
);
const all = await variants(dense, denseMacs);
const unique = new Map<string, { key: string; bytes: Uint8Array; model: Model }>([
  ['dense', { key: 'dense', bytes: denseBytes, model: dense }],
]);
for (const v of all)
  if (!unique.has(hash(v.bytes))) unique.set(hash(v.bytes), { key: hash(v.bytes), bytes: v.bytes, model: v.model });
const timings = new Map<number, Map<string, number>>();
for (const batch of batches)
  timings.set(batch, await interleavedMedians([...unique.values()], { batch, runs, rounds, threads }));

console.log(`\nload average after timing: ${os.loadavg()[0]!.toFixed(1)}`);
const header = [
  'groups',
  'form'.padEnd(12),
  'MACs',
  'exec',
  ...batches.flatMap((b) => [`b${b} ms`.padStart(8), `b${b} speed-up`, `×MACs`]),
  'layers',
];
console.log(header.join('  '));
console.log(
  [
    '-',
    'dense'.padEnd(12),
    '1.000',
    '1.000',
    ...batches.flatMap((b) => [
      timings.get(b)!.get('dense')!.toFixed(2).padStart(8),
      '1.00×'.padStart(12),
      '1.00'.padStart(5),
    ]),
  ].join('  '),
);
for (const v of all) {
  const cells = batches.flatMap((b) => {
    const ms = timings.get(b)!.get(hash(v.bytes))!;
    const speedup = timings.get(b)!.get('dense')! / ms;
    return [
      ms.toFixed(2).padStart(8),
      `${speedup.toFixed(2)}×`.padStart(12),
      (speedup * v.macsRatio).toFixed(2).padStart(5),
    ];
  });
  console.log(
    [
      String(v.groups).padEnd(6),
      v.label.padEnd(12),
      v.macsRatio.toFixed(3),
      v.executedRatio.toFixed(3),
      ...cells,
      v.forms,
    ].join('  '),
  );
}
