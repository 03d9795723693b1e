/**
 * The `regroup compress` command: flags → compressModel (cli/compress.ts) → a before/after
 * table (accuracy, MACs, params, CPU latency), the per-layer lowering, and the reports.
 */
import path from 'node:path';
import { Option, type Command } from 'commander';
import { writeAtomic } from '../compiler/onnx/io.js';
import { parseProvider, PROVIDERS } from '../runtime/providers.js';
import { fraction, nonNegativeInt, positiveInt, positiveNumber, unitFraction } from './args.js';
import { ALLOCATE, allMaskedDense, COMPRESS_METHODS, compressModel, FINETUNE_SCHEMES, type Allocate, type CompressMethod, type CompressOutcome, type FinetuneScheme } from './compress.js';
import { human, table } from './format.js';
import { writeReport } from './report/command.js';
import { renderHtml } from './report/html.js';
import { ProgressBars } from './train.js';

interface CompressFlags {
  output: string;
  method: CompressMethod;
  keepMacs: number;
  groups?: number;
  cp?: number[];
  steps?: number;
  allocate?: Allocate;
  includeFc?: boolean;
  data?: string;
  testData?: string;
  preset?: string;
  finetune?: FinetuneScheme;
  epochs: number;
  lr?: number;
  batch?: number;
  limit?: number;
  evalLimit?: number;
  kd: boolean;
  kdTemperature: number;
  kdAlpha: number;
  tune?: boolean;
  ep: string;
  threads: number;
  seed: number;
  latency: boolean;
  force?: boolean;
  json?: boolean;
  report?: string;
  html?: string;
}

function percentiles(text: string): number[] {
  return text.split(',').map((part) => Number(part.trim()));
}

export function registerCompressCommand(program: Command): void {
  program
    .command('compress')
    .description('compress a CNN: self-grouping (SG-CNN) or a baseline, fine-tuning, grouped-conv lowering, before/after measurements')
    .argument('<model>', 'ONNX model file')
    .requiredOption('-o, --output <file>', 'where to write the compressed model (written atomically)')
    .addOption(new Option('--method <name>', 'sg-cnn: learned diverse groups (as published); sg-balanced: learned groups made equal and disjoint, so they run as Conv(group); uniform: equal ResNeXt-style groups; l1: channel pruning by one global L1 threshold; l1-uniform: every channel group pruned by the same fraction').choices([...COMPRESS_METHODS]).default('sg-cnn'))
    .requiredOption('--keep-macs <fraction>', 'fraction of the MACs to keep, e.g. 0.5', fraction)
    .option('--groups <n>', 'sg-cnn clusters per layer (default 64; at most one per filter). More clusters let filters pick their inputs more finely: at the same MACs 64 beat 16 by 0.1–0.8 points on the measured networks (README, Performance); fewer keep the groups coarse and k-means faster', positiveInt)
    .option('--cp <percentiles>', 'sg-cnn: centroid percentile(s) instead of solving for --keep-macs; a rising list (10,30,50) fine-tunes after each step', percentiles)
    .option('--steps <n>', 'sg-cnn: reach --keep-macs in n steps with fine-tuning after each, the fine-tuning samples split between the steps (default 1)', positiveInt)
    .addOption(new Option('--allocate <how>', 'sg-cnn with --keep-macs: sensitivity gives each layer its own cp from a scan of how far grouping it alone moves the output on training images (default with --data); uniform gives every layer the same cp (default without)').choices([...ALLOCATE]))
    .option('--include-fc', 'sg-cnn: group fully connected layers too')
    .option('--data <spec>', 'training data for data-aware importance and fine-tuning: mnist, fashion-mnist, DIR (DIR/train + DIR/test), DIR,labels.csv, idx:PATH')
    .option('--test-data <spec>', 'evaluation data (default: the test split that goes with --data)')
    .option('--preset <name>', 'preprocessing preset (default: chosen from the input shape)')
    .addOption(new Option('--finetune <scheme>', 'local: layer-wise least squares against the dense model; global: training with distillation (default local+global with --data, none without)').choices([...FINETUNE_SCHEMES]))
    .option('--epochs <n>', 'global fine-tuning epochs', positiveInt, 1)
    .option('--lr <rate>', 'peak fine-tuning learning rate (cosine schedule; default 0.01)', positiveNumber)
    .option('--batch <n>', 'fine-tuning batch size (default 128)', positiveInt)
    .option('--limit <n>', 'fine-tune on a seeded subset of n training samples', positiveInt)
    .option('--eval-limit <n>', 'evaluate on a seeded subset of n test samples', positiveInt)
    .option('--no-kd', 'plain cross-entropy instead of distillation from the dense model')
    .option('--kd-temperature <t>', 'distillation temperature', positiveNumber, 4)
    .option('--kd-alpha <a>', 'weight of the distillation term (the rest is cross-entropy)', unitFraction, 0.9)
    .option('--tune', 'time candidate lowerings of each layer on the execution provider and keep the fastest')
    .addOption(new Option('--ep <provider>', 'execution provider').choices([...PROVIDERS]).default('cpu'))
    .option('--threads <n>', 'intra-op threads (0 = onnxruntime default)', nonNegativeInt, 0)
    .option('--seed <n>', 'seed of clustering, data order and augmentation', nonNegativeInt, 0)
    .option('--no-latency', 'skip the latency measurements')
    .option('--force', 'allow overwriting the input model')
    .option('--json', 'print the report as JSON')
    .option('--report <file>', 'also write the report as JSON (see `regroup report`)')
    .option('--html <file>', 'also write a self-contained HTML page')
    .action(async (file: string, flags: CompressFlags) => {
      const bars = new ProgressBars(flags.json === true);
      const log = flags.json ? () => {} : (line: string) => process.stderr.write(`${line}\n`);
      const outcome = await compressModel(file, {
        ...flags,
        ep: parseProvider(flags.ep),
        onProgress: (event) => bars.on(event),
        log,
      });
      bars.close();
      if (flags.json) console.log(JSON.stringify(outcome.report, null, 2));
      else printCompress(file, flags.output, outcome);
      if (flags.report) writeReport(flags.report, outcome.report);
      if (flags.html) writeAtomic(flags.html, [Buffer.from(renderHtml([outcome.report], { title: `regroup compress report: ${path.basename(flags.output)}` }))]);
    });
}

function printCompress(file: string, output: string, o: CompressOutcome): void {
  const acc = (s: CompressOutcome['dense']) => (s.accuracy ? `${(100 * s.accuracy.top1).toFixed(2)}%` : '—');
  const lat = (s: CompressOutcome['dense'], batch: number) => {
    const l = s.latency.find((x) => x.batch === batch);
    return l ? `${l.medianMs.toFixed(2)} ms` : '—';
  };
  const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(3)}×` : '—');
  const latRatio = (batch: number) => {
    const [d, c] = [o.dense.latency.find((x) => x.batch === batch), o.compressed.latency.find((x) => x.batch === batch)];
    return d && c ? `speed-up ${(d.medianMs / c.medianMs).toFixed(2)}×` : '—';
  };
  const rows = [
    ['top-1', acc(o.dense), acc(o.compressed), o.dense.accuracy && o.compressed.accuracy ? `${(100 * (o.compressed.accuracy.top1 - o.dense.accuracy.top1)).toFixed(2)} pt` : '—'],
    ['MACs of the learned structure', human(o.dense.macs), human(o.structuredMacsRatio * o.dense.macs), `${o.structuredMacsRatio.toFixed(3)}×`],
    ['MACs executed (as lowered)', human(o.dense.macs), human(o.compressed.macs), ratio(o.compressed.macs, o.dense.macs)],
    ['params', human(o.dense.params), human(o.compressed.params), ratio(o.compressed.params, o.dense.params)],
    ['latency, batch 1 (interleaved)', lat(o.dense, 1), lat(o.compressed, 1), latRatio(1)],
    ['latency, batch 8 (interleaved)', lat(o.dense, 8), lat(o.compressed, 8), latRatio(8)],
  ];
  console.log(`${file} → ${output} (${o.seconds.toFixed(1)} s, peak RSS ${o.peakRssMb.toFixed(0)} MB)`);
  console.log(table(['', 'dense', 'compressed', 'change'], rows, ['left', 'right', 'right', 'right']));
  if (o.choices.length > 0) {
    const layers = o.choices.map((c) => [c.node, c.form, c.groups ? String(c.groups) : '—', `${human(c.denseMacs)} → ${human(c.macs)}`, c.reason]);
    console.log(table(['layer', 'lowered as', 'groups', 'MACs', 'why'], layers, ['left', 'left', 'right', 'right', 'left']));
  }
  if (o.loweringError === 0 && allMaskedDense(o.choices)) console.log('lowered graph: the masked-dense reference itself (every grouped layer stayed masked dense; compared byte for byte)');
  else if (o.loweringError !== undefined) console.log(`lowered graph vs masked-dense reference: max |diff| ${o.loweringError.toExponential(2)} of the output scale`);
  for (const note of o.notes) console.log(`note: ${note}`);
}
