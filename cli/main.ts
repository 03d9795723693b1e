/**
 * The `regroup` command line. Each subcommand parses its flags, calls the library API in
 * api.ts and prints a table (or JSON with --json). Errors print one line
 * `regroup: error[code]: …` and exit non-zero: 2 for usage, 1 for bad input, 70 for bugs.
 */
import { Command, CommanderError, Option } from 'commander';
import { positiveInt, nonNegativeInt, fraction } from './args.js';
import { RegroupError } from '../compiler/errors.js';
import { parseProvider, PROVIDERS } from '../runtime/providers.js';
import { benchModel, convertModel, inspectGroups, inspectModel, type GroupRow, type InspectReport } from './api.js';
import { pruneModel, pruneReportToReport, type PruneReport } from './prune.js';
import { evalModel, type EvalOutcome } from './evaluate.js';
import { readReport, renderReportCommand, writeReport } from './report/command.js';
import { renderHtml } from './report/html.js';
import { renderText } from './report/text.js';
import type { Report } from './report/schema.js';
import { writeAtomic } from '../compiler/onnx/io.js';
import { CRITERIA } from '../passes/importance.js';
import { describeFolds } from '../passes/fold-log.js';
import { cpuSimdBlock } from '../runtime/providers.js';
import { formatShape, human, percent, table } from './format.js';
import { progress } from './progress.js';
import { registerTrainCommands } from './train.js';
import { registerCompressCommand } from './compress.js';
import { registerProfileCommand } from './profile.js';
import { registerBatchCommands } from './batch.js';
import { addPreprocessFlags, preprocessOptionsOf, type PreprocessFlags } from './preprocess-flags.js';

const VERSION = '0.1.0';

const collect = (value: string, previous: string[] = []) => [...previous, value];

function printInspect(report: InspectReport): void {
  const rows = report.layers.map((l) => [
    l.name || '<unnamed>',
    l.op,
    formatShape(l.outputShape ?? undefined),
    human(l.macs),
    human(l.params),
    percent(l.macs, report.totals.macs),
  ]);
  console.log(
    `${report.file}: IR ${report.irVersion}, opsets ${Object.entries(report.opsets)
      .map(([d, v]) => `${d} ${v}`)
      .join(', ')}${report.producer ? `, from ${report.producer}` : ''}, ${report.nodes} nodes`,
  );
  for (const line of describeFolds(report.folded)) console.log(line);
  console.log(
    table(['layer', 'op', 'output', 'MACs', 'params', 'share'], rows, [
      'left',
      'left',
      'left',
      'right',
      'right',
      'right',
    ]),
  );
  console.log(
    `total: ${human(report.totals.macs)} MACs (${report.totals.macs}), ${human(report.totals.params)} params (${report.totals.params}), ${human(report.totals.bytes)}B moved`,
  );
}

function buildProgram(): Command {
  const program = new Command('regroup')
    .description('Compress convolutional networks in ONNX: analyse, prune, regroup, verify.')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('inspect')
    .description('per-layer MACs, parameters and output shapes of a model')
    .argument('<model>', 'ONNX model file')
    .option('--json', 'print a JSON report { totals, layers, issues } instead of a table')
    .option('--all', 'list every node, not only layers with MACs or parameters')
    .option('--batch <n>', 'value of a symbolic batch dimension when counting', positiveInt, 1)
    .option('--input-shape <spec>', 'input shape, name=1x3x224x224 (repeatable); fixes symbolic dims', collect, [])
    .option('--groups', 'list the channel groups: size, prunable or why pinned, and every member')
    .action(
      async (
        file: string,
        opts: { json?: boolean; all?: boolean; batch: number; inputShape: string[]; groups?: boolean },
      ) => {
        if (opts.groups) {
          const result = await inspectGroups(file, { inputShapes: opts.inputShape });
          if (opts.json) console.log(JSON.stringify(result, null, 2));
          else {
            for (const line of describeFolds(result.folded)) console.log(line);
            printGroups(result.file, result.groups, result.unsupported);
          }
          return;
        }
        const report = await inspectModel(file, { all: opts.all, batch: opts.batch, inputShapes: opts.inputShape });
        if (opts.json) console.log(JSON.stringify(report, null, 2));
        else printInspect(report);
        for (const issue of report.issues) console.error(`regroup: warning: ${issue.message}`);
      },
    );

  program
    .command('convert')
    .description('re-emit a model through the IR with no rewrite (e.g. to move weights to external data)')
    .argument('<model>', 'ONNX model file')
    .requiredOption('-o, --output <file>', 'where to write the model (written atomically)')
    .option('--external-data', 'write tensors of at least --threshold bytes to <output>.data beside the model')
    .option('--threshold <bytes>', 'smallest tensor moved to external data', nonNegativeInt, 1024)
    .option('--force', 'allow overwriting the input file')
    .option('--json', 'print the result as JSON')
    .action(
      (
        file: string,
        opts: { output: string; externalData?: boolean; threshold: number; force?: boolean; json?: boolean },
      ) => {
        const result = convertModel(file, opts.output, {
          externalData: opts.externalData,
          threshold: opts.threshold,
          force: opts.force,
        });
        if (opts.json) console.log(JSON.stringify({ input: file, output: opts.output, ...result }, null, 2));
        else {
          const side = result.externalFile ? ` + ${result.externalFile} (${human(result.externalBytes ?? 0)}B)` : '';
          console.log(
            `wrote ${opts.output} (${human(result.bytes)}B)${side}: ${result.nodes} nodes, ${result.initializers} initializers`,
          );
        }
      },
    );

  program
    .command('bench')
    .description('latency of a model on an execution provider (median and p90 over timed runs)')
    .argument('<model>', 'ONNX model file')
    .addOption(new Option('--ep <provider>', 'execution provider').choices([...PROVIDERS]).default('cpu'))
    .option('--batch <n>', 'batch size (for a symbolic batch dimension)', positiveInt, 1)
    .option('--runs <n>', 'timed runs', positiveInt, 50)
    .option('--warmup <n>', 'untimed warm-up runs', nonNegativeInt, 5)
    .option('--threads <n>', 'intra-op threads (0 = onnxruntime default)', nonNegativeInt, 0)
    .option('--input-shape <spec>', 'input shape, name=1x3x224x224 (repeatable)', collect, [])
    .option('--json', 'print the figures as JSON')
    .action(
      async (
        file: string,
        opts: {
          ep: string;
          batch: number;
          runs: number;
          warmup: number;
          threads: number;
          inputShape: string[];
          json?: boolean;
        },
      ) => {
        const bar = progress(`bench ${opts.ep} batch ${opts.batch}`, opts.runs, { quiet: opts.json });
        const stats = await benchModel(file, {
          ep: parseProvider(opts.ep),
          batch: opts.batch,
          runs: opts.runs,
          warmup: opts.warmup,
          threads: opts.threads,
          inputShapes: opts.inputShape,
          onRun: (done) => bar.tick(done),
        });
        bar.done();
        if (opts.json) console.log(JSON.stringify({ model: file, ...stats }, null, 2));
        else
          console.log(
            `${file} on ${stats.ep}, batch ${stats.batch}, ${stats.runs} runs: median ${stats.medianMs.toFixed(2)} ms, p90 ${stats.p90Ms.toFixed(2)} ms, min ${stats.minMs.toFixed(2)} ms, ${stats.throughput.toFixed(1)} samples/s`,
          );
      },
    );

  program
    .command('prune')
    .description('structured channel pruning to a MACs or parameter budget, exact across coupled layers')
    .argument('<model>', 'ONNX model file')
    .requiredOption('-o, --output <file>', 'where to write the pruned model (written atomically)')
    .option('--keep-macs <fraction>', 'fraction of the MACs to keep, e.g. 0.5', fraction)
    .option('--keep-params <fraction>', 'fraction of the parameters to keep', fraction)
    .addOption(new Option('--criterion <name>', 'channel importance').choices([...CRITERIA]).default('l1'))
    .addOption(
      new Option('--aggregate <how>', "how a coupled channel's scores across layers combine")
        .choices(['sum', 'mean', 'max'])
        .default('sum'),
    )
    .option(
      '--round-to <n>',
      `kept channel counts are multiples of n (default: this CPU's SIMD block, ${cpuSimdBlock()})`,
      positiveInt,
    )
    .option('--min-channels <n>', 'fewest channels any group keeps', positiveInt, 1)
    .option('--uniform', 'prune every group by the same fraction instead of one global threshold')
    .option('--plan <file>', 'apply a saved plan (JSON) instead of planning')
    .option('--save-plan <file>', 'write the plan as JSON for review or editing')
    .option('--verify', 'run original and pruned on seeded inputs: cosine similarity, top-1 agreement')
    .option('--input-shape <spec>', 'input shape, name=1x3x224x224 (repeatable)', collect, [])
    .option('--force', 'allow overwriting the input file')
    .option('--json', 'print the report as JSON')
    .option('--report <file>', 'also write the report in the common JSON format (see `regroup report`)')
    .option('--html <file>', 'also write a self-contained HTML page with per-layer charts')
    .action(
      async (
        file: string,
        opts: {
          report?: string;
          html?: string;
          output: string;
          keepMacs?: number;
          keepParams?: number;
          criterion: string;
          aggregate: string;
          roundTo?: number;
          minChannels: number;
          uniform?: boolean;
          plan?: string;
          savePlan?: string;
          verify?: boolean;
          inputShape: string[];
          force?: boolean;
          json?: boolean;
        },
      ) => {
        if (!opts.plan && opts.keepMacs === undefined && opts.keepParams === undefined)
          throw new RegroupError('usage', 'say how much to keep: --keep-macs 0.5, --keep-params 0.5, or --plan FILE');
        if (opts.keepMacs !== undefined && opts.keepParams !== undefined)
          throw new RegroupError('usage', 'give --keep-macs or --keep-params, not both');
        const report = await pruneModel(file, opts.output, {
          keepMacs: opts.keepMacs,
          keepParams: opts.keepParams,
          criterion: opts.criterion as (typeof CRITERIA)[number],
          aggregate: opts.aggregate as 'sum' | 'mean' | 'max',
          roundTo: opts.roundTo ?? cpuSimdBlock(),
          minChannels: opts.minChannels,
          uniform: opts.uniform,
          plan: opts.plan,
          savePlan: opts.savePlan,
          verify: opts.verify,
          inputShapes: opts.inputShape,
          force: opts.force,
        });
        if (opts.json) console.log(JSON.stringify(report, null, 2));
        else printPrune(report);
        saveReports(pruneReportToReport(report), opts);
      },
    );

  const evalCommand = program
    .command('eval')
    .description('accuracy on labelled data, agreement with a reference model, latency, size and MACs')
    .argument('<model>', 'ONNX model file')
    .requiredOption(
      '--data <spec>',
      'an image folder (one sub-folder per class), DIR,labels.csv, mnist[:train|:test], fashion-mnist[:train|:test], or idx:PATH',
    );
  addPreprocessFlags(evalCommand)
    .option(
      '--ref <model>',
      'a reference model to compare with on the same inputs (top-1 agreement, cosine, max |diff|)',
    )
    .addOption(new Option('--ep <provider>', 'execution provider').choices([...PROVIDERS]).default('cpu'))
    .option('--limit <n>', 'evaluate the first n samples only', positiveInt)
    .option('--batch <n>', 'batch size (models with a fixed batch use theirs)', positiveInt, 32)
    .option('--threads <n>', 'intra-op threads (0 = onnxruntime default)', nonNegativeInt, 0)
    .option('--strict', 'stop at the first unreadable image instead of skipping it')
    .option('--no-latency', 'skip the latency measurement')
    .option('--json', 'print the report as JSON')
    .option('--report <file>', 'write the report as JSON')
    .option('--html <file>', 'write a self-contained HTML page')
    .action(
      async (
        file: string,
        opts: PreprocessFlags & {
          data: string;
          ref?: string;
          ep: string;
          limit?: number;
          batch: number;
          threads: number;
          strict?: boolean;
          latency: boolean;
          json?: boolean;
          report?: string;
          html?: string;
        },
      ) => {
        const bar = progress('eval', 0, { quiet: opts.json });
        const outcome = await evalModel(file, {
          data: opts.data,
          preprocessing: preprocessOptionsOf(opts),
          reference: opts.ref,
          ep: parseProvider(opts.ep),
          limit: opts.limit,
          batch: opts.batch,
          threads: opts.threads,
          strict: opts.strict,
          latency: opts.latency,
          onProgress: (done, total) => bar.tick(done, total),
        });
        bar.done();
        if (opts.json) console.log(JSON.stringify(outcome.report, null, 2));
        else printEval(outcome);
        saveReports(outcome.report, opts);
      },
    );

  program
    .command('report')
    .description(
      'print one or more JSON reports as text (before and after side by side), or render them as a self-contained HTML page with --html (several: accuracy against MACs)',
    )
    .argument('<reports...>', 'report files written with --report')
    .option('--html <file>', 'write the HTML page here instead of printing text')
    .option('--title <text>', 'page title')
    .action((files: string[], opts: { html?: string; title?: string }) => {
      if (!opts.html) {
        console.log(files.map((f) => renderText(readReport(f))).join('\n\n'));
        return;
      }
      const summary = renderReportCommand(files, opts.html, { title: opts.title });
      console.log(
        `wrote ${summary.output} (${human(summary.bytes)}B): ${summary.reports.length} report(s), ${summary.charts} chart(s)`,
      );
    });

  registerTrainCommands(program);
  registerCompressCommand(program);
  registerProfileCommand(program);
  registerBatchCommands(program);
  return program;
}

/** Write --report JSON and --html pages when asked. */
function saveReports(report: Report, opts: { report?: string; html?: string }): void {
  if (opts.report) writeReport(opts.report, report);
  if (opts.html) writeAtomic(opts.html, [Buffer.from(renderHtml([report]))]);
}

function printEval(o: EvalOutcome): void {
  const a = o.accuracy;
  console.log(
    `${o.report.model.file} on ${o.dataset}: top-1 ${(100 * a.top1).toFixed(2)}%, top-5 ${(100 * a.top5).toFixed(2)}% over ${a.samples} samples (${a.seconds.toFixed(1)} s)`,
  );
  if (a.agreement)
    console.log(
      `vs ${o.report.agreement?.reference}: top-1 agreement ${(100 * a.agreement.top1Agreement).toFixed(2)}%, cosine ${a.agreement.cosine.toFixed(6)}, max |diff| ${a.agreement.maxAbsDiff.toPrecision(3)}`,
    );
  for (const l of o.latency)
    console.log(`latency ${l.ep} batch ${l.batch}: median ${l.medianMs.toFixed(2)} ms, p90 ${l.p90Ms.toFixed(2)} ms`);
  console.log(
    `model: ${human(o.report.model.macs)} MACs, ${human(o.report.model.params)} params, ${human(o.report.model.bytes)}B on disk`,
  );
  for (const note of o.report.notes) console.log(`note: ${note}`);
}

function printGroups(file: string, groups: GroupRow[], unsupported?: string): void {
  console.log(`${file}: ${groups.length} channel groups, ${groups.filter((g) => g.prunable).length} prunable`);
  if (unsupported) console.log(`note: ${unsupported}`);
  for (const g of groups) {
    const state = g.prunable
      ? g.prunableChannels < g.channels
        ? `prunable (${g.prunableChannels} of ${g.channels})`
        : 'prunable'
      : 'pinned';
    console.log(
      `group ${g.id}: ${g.channels} channels, ${state}${g.reasons.length ? ` — ${g.reasons.join('; ')}` : ''}`,
    );
    for (const m of g.members) console.log(`  ${m.node || '<unnamed>'} (${m.op}) ${m.role} @${m.offset} ×${m.count}`);
  }
}

function printPrune(r: PruneReport): void {
  for (const line of describeFolds(r.folded)) console.log(line);
  const rows = r.layers
    .filter((l) => l.channelsBefore !== l.channelsAfter || l.macsBefore > 0)
    .map((l) => [
      l.name || '<unnamed>',
      l.op,
      `${l.channelsBefore} → ${l.channelsAfter}`,
      `${human(l.macsBefore)} → ${human(l.macsAfter)}`,
    ]);
  if (rows.length) console.log(table(['layer', 'op', 'channels', 'MACs'], rows, ['left', 'left', 'right', 'right']));
  console.log(`MACs   ${human(r.before.macs)} → ${human(r.after.macs)} (${(100 * r.macsRatio).toFixed(1)}%)`);
  console.log(`params ${human(r.before.params)} → ${human(r.after.params)} (${(100 * r.paramsRatio).toFixed(1)}%)`);
  console.log(
    `groups: ${r.groups.pruned} pruned of ${r.groups.prunable} prunable (${r.groups.total} in all); criterion ${r.criterion}; ${r.seconds.toFixed(2)} s`,
  );
  if (r.verify)
    console.log(
      `verify: cosine ${r.verify.cosine.toFixed(4)}, top-1 agreement ${(100 * r.verify.top1Agreement).toFixed(1)}% over ${r.verify.samples} seeded inputs, max |diff| ${r.verify.maxAbsDiff.toPrecision(3)}`,
    );
  for (const note of r.notes) console.log(`note: ${note}`);
  console.log(r.changed ? `wrote ${r.output}` : `wrote ${r.output} (unchanged)`);
}

/** Run the CLI with arguments (without `node` and the script); resolves to the exit code. */
export async function runCli(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed help or the usage error.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof RegroupError) {
      process.stderr.write(`regroup: error[${err.code}]: ${err.message}\n`);
      return err.code === 'usage' ? 2 : 1;
    }
    const message = (err as Error)?.message ?? String(err);
    process.stderr.write(`regroup: internal error: ${message.split('\n')[0]}\n`);
    if (process.env.REGROUP_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    else
      process.stderr.write(
        'regroup: this is a bug in regroup; rerun with REGROUP_DEBUG=1 for a stack trace and report it\n',
      );
    return 70;
  }
}
