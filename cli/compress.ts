/**
 * The `regroup compress` command: flags → compressModel (cli/pipelines/compress.ts) → a
 * before/after table (report/sides.ts: accuracy, latency, MACs of the structure and executed,
 * params), the per-layer lowering, and the reports. Method flags come from the registry (passes/methods/): each method declares its
 * own, and a flag given with a method that does not take it is refused.
 */
import path from 'node:path';
import { Option, type Command } from 'commander';
import { RegroupError } from '../compiler/errors.js';
import { writeAtomic } from '../compiler/onnx/io.js';
import { DEFAULT_METHOD, METHODS, methodFlags } from '../passes/methods/index.js';
import { parseProvider, PROVIDERS } from '../runtime/providers.js';
import { fraction, nonNegativeInt, positiveInt, positiveNumber, unitFraction } from './args.js';
import { addMethodFlags, methodName, methodOptionsOf } from './method-flags.js';
import { addPreprocessFlags, preprocessOptionsOf, type PreprocessFlags } from './preprocess-flags.js';
import { compressModel, FINETUNE_SCHEMES, type CompressOptions } from './pipelines/compress.js';
import { LATENCY_PLANS, type LatencyPlan } from './pipelines/latency-target.js';
import { reportJson, writeReport } from './report/command.js';
import { renderHtml } from './report/html.js';
import { writeProfile } from './profile-output.js';
import { printCompress } from './report/compress-text.js';
import { ProgressBars } from './train.js';

type Flags = Omit<CompressOptions, 'ep' | 'methodOptions' | 'onProgress' | 'log' | 'preset' | 'preprocessing'> &
  PreprocessFlags & {
    method?: string;
    ep: string;
    json?: boolean;
    report?: string;
    html?: string;
    profile?: string;
  } & Record<string, unknown>;

export function registerCompressCommand(program: Command): void {
  const methods = METHODS.map((m) => `${m.name}: ${m.description}`).join('; ');
  const command = program
    .command('compress')
    .description(
      'compress a CNN with one of the registered methods, fine-tune it, lower it to ONNX ops that run, and measure before and after',
    )
    .argument('<model>', 'ONNX model file')
    .requiredOption('-o, --output <file>', 'where to write the compressed model (written atomically)')
    .option(
      '--method <name>',
      `compression method (default ${DEFAULT_METHOD}; without --data it ranks channels by its weight proxy) — ${methods}`,
      methodName,
    )
    .option('--keep-macs <fraction>', 'fraction of the MACs to keep, e.g. 0.5', fraction)
    .option(
      '--keep-latency <fraction>',
      "fraction of the dense model's measured latency to keep, e.g. 0.5: the MACs target is searched by timing the method's lowered structure beside the dense model on --ep at --latency-batch",
      fraction,
    )
    .option(
      '--latency-ms <ms>',
      'target latency in milliseconds per run at --latency-batch (instead of --keep-latency)',
      positiveNumber,
    )
    .option(
      '--latency-batch <n>',
      'batch size the latency target is measured at, and measured besides 1 and 8 with --keep-macs (default 1; --batch is the fine-tuning batch)',
      positiveInt,
      1,
    )
    .addOption(
      new Option(
        '--latency-plan <how>',
        "with a latency target, how the pruning methods (l1, wsp) choose channels: 'macs' plans by MACs and the search times the result; 'table' weighs each channel's importance against the milliseconds it saves (each layer timed, cached) — faster per MAC, but it thins early layers and lost accuracy at equal latency where measured",
      )
        .choices([...LATENCY_PLANS])
        .default('macs'),
    );
  addMethodFlags(command);
  command
    .option(
      '--data <spec>',
      'training data for data-aware importance and fine-tuning: mnist, fashion-mnist, DIR (DIR/train + DIR/test), DIR,labels.csv, idx:PATH',
    )
    .option('--test-data <spec>', 'evaluation data (default: the test split that goes with --data)');
  addPreprocessFlags(command)
    .addOption(
      new Option(
        '--finetune <scheme>',
        'local: layer-wise least squares against the dense model; global: training with distillation (default local+global with --data, none without)',
      ).choices([...FINETUNE_SCHEMES]),
    )
    .option('--epochs <n>', 'global fine-tuning epochs', positiveInt, 1)
    .option('--lr <rate>', 'peak fine-tuning learning rate (cosine schedule; default 0.01)', positiveNumber)
    .option('--batch <n>', 'fine-tuning batch size (default 128)', positiveInt)
    .option('--limit <n>', 'fine-tune on a seeded subset of n training samples', positiveInt)
    .option('--eval-limit <n>', 'evaluate on a seeded subset of n test samples', positiveInt)
    .option('--no-kd', 'plain cross-entropy instead of distillation from the dense model')
    .option('--kd-temperature <t>', 'distillation temperature', positiveNumber, 4)
    .option('--kd-alpha <a>', 'weight of the distillation term (the rest is cross-entropy)', unitFraction, 0.9)
    .option(
      '--tune',
      'time candidate lowerings of each layer on the execution provider at --latency-batch and keep the fastest (msgc does by default)',
    )
    .option('--no-tune', 'rank lowering forms by the cost model only, even for a method that times them (msgc)')
    .addOption(new Option('--ep <provider>', 'execution provider').choices([...PROVIDERS]).default('cpu'))
    .option('--threads <n>', 'intra-op threads (0 = onnxruntime default)', nonNegativeInt, 0)
    .option('--seed <n>', 'seed of clustering, data order and augmentation', nonNegativeInt, 0)
    .option('--no-latency', 'skip the latency measurements')
    .option('--force', 'allow overwriting the input model')
    .option('--json', 'print the report as JSON')
    .option('--report <file>', 'also write the report as JSON (see `regroup report`)')
    .option('--html <file>', 'also write a self-contained HTML page')
    .option(
      '--profile <file>',
      'profile the fine-tuning step with onnxruntime: time by op type, by layer and by node, arena peak; printed and written to FILE as JSON',
    )
    .action(async (file: string, flags: Flags, command: Command) => {
      if (command.getOptionValueSource('latencyPlan') === 'cli' && flags.keepMacs !== undefined)
        throw new RegroupError(
          'usage',
          '--latency-plan applies to a latency target (--keep-latency or --latency-ms), not to --keep-macs',
        );
      const bars = new ProgressBars(flags.json === true);
      const log = flags.json ? () => {} : (line: string) => process.stderr.write(`${line}\n`);
      const outcome = await compressModel(file, {
        ...flags,
        ...budgetOf(flags),
        preprocessing: preprocessOptionsOf(flags),
        methodOptions: methodOptionsOf({ ...flags, method: flags.method ?? DEFAULT_METHOD }),
        ep: parseProvider(flags.ep),
        profileStep: flags.profile !== undefined,
        onProgress: (event) => bars.on(event),
        log,
      });
      bars.close();
      if (flags.json) console.log(reportJson(outcome.report));
      else printCompress(file, flags.output, outcome);
      if (flags.report) writeReport(flags.report, outcome.report);
      if (flags.profile) writeProfile(flags.profile, outcome.steps.at(-1)?.profile, !flags.json);
      if (flags.html)
        writeAtomic(flags.html, [
          Buffer.from(
            renderHtml([outcome.report], { title: `regroup compress report: ${path.basename(flags.output)}` }),
          ),
        ]);
    });
}

/**
 * The budget flags: exactly one of --keep-macs, --keep-latency, --latency-ms, or none when a
 * method flag that sets its own budget is given (sg-cnn's --cp); the MACs target is then 1,
 * none, and the flag decides what goes.
 */
function budgetOf(flags: Flags): Pick<CompressOptions, 'keepMacs' | 'latencyTarget'> {
  const given = (['keepMacs', 'keepLatency', 'latencyMs'] as const).filter((k) => flags[k] !== undefined);
  if (given.length === 0 && methodFlags().some(({ flag }) => flag.setsBudget && flags[flag.key] !== undefined))
    return { keepMacs: 1 };
  if (given.length === 0)
    throw new RegroupError(
      'usage',
      'say how much to keep: --keep-macs 0.5 (of the MACs), --keep-latency 0.5 (of the measured latency) or --latency-ms X',
    );
  if (given.length > 1) throw new RegroupError('usage', 'give one of --keep-macs, --keep-latency, --latency-ms');
  if (flags.keepMacs !== undefined) return { keepMacs: flags.keepMacs };
  const batch = flags.latencyBatch as number;
  const keep = flags.keepLatency as number | undefined;
  const ms = flags.latencyMs as number | undefined;
  return { keepMacs: keep ?? 0.5, latencyTarget: { keep, ms, batch, plan: flags.latencyPlan as LatencyPlan } };
}
