/**
 * The `regroup` command line. Each subcommand parses its flags, calls the library API in
 * api.ts and prints a table (or JSON with --json). Errors print one line
 * `regroup: error[code]: …` and exit non-zero: 2 for usage, 1 for bad input, 70 for bugs.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { RegroupError } from '../compiler/errors.js';
import { parseProvider, PROVIDERS } from '../runtime/providers.js';
import { benchModel, convertModel, inspectModel, type InspectReport } from './api.js';
import { formatShape, human, percent, table } from './format.js';
import { progress } from './progress.js';

const VERSION = '0.1.0';

function positiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`'${text}' is not a positive integer`);
  return n;
}

function nonNegativeInt(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`'${text}' is not a non-negative integer`);
  return n;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function printInspect(report: InspectReport): void {
  const rows = report.layers.map((l) => [l.name || '<unnamed>', l.op, formatShape(l.outputShape ?? undefined), human(l.macs), human(l.params), percent(l.macs, report.totals.macs)]);
  console.log(`${report.file}: IR ${report.irVersion}, opsets ${Object.entries(report.opsets).map(([d, v]) => `${d} ${v}`).join(', ')}${report.producer ? `, from ${report.producer}` : ''}, ${report.nodes} nodes`);
  console.log(table(['layer', 'op', 'output', 'MACs', 'params', 'share'], rows, ['left', 'left', 'left', 'right', 'right', 'right']));
  console.log(`total: ${human(report.totals.macs)} MACs (${report.totals.macs}), ${human(report.totals.params)} params (${report.totals.params}), ${human(report.totals.bytes)}B moved`);
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
    .action((file: string, opts: { json?: boolean; all?: boolean; batch: number; inputShape: string[] }) => {
      const report = inspectModel(file, { all: opts.all, batch: opts.batch, inputShapes: opts.inputShape });
      if (opts.json) console.log(JSON.stringify(report, null, 2));
      else printInspect(report);
      for (const issue of report.issues) console.error(`regroup: warning: ${issue.message}`);
    });

  program
    .command('convert')
    .description('re-emit a model through the IR with no rewrite (e.g. to move weights to external data)')
    .argument('<model>', 'ONNX model file')
    .requiredOption('-o, --output <file>', 'where to write the model (written atomically)')
    .option('--external-data', 'write tensors of at least --threshold bytes to <output>.data beside the model')
    .option('--threshold <bytes>', 'smallest tensor moved to external data', nonNegativeInt, 1024)
    .option('--force', 'allow overwriting the input file')
    .option('--json', 'print the result as JSON')
    .action((file: string, opts: { output: string; externalData?: boolean; threshold: number; force?: boolean; json?: boolean }) => {
      const result = convertModel(file, opts.output, { externalData: opts.externalData, threshold: opts.threshold, force: opts.force });
      if (opts.json) console.log(JSON.stringify({ input: file, output: opts.output, ...result }, null, 2));
      else {
        const side = result.externalFile ? ` + ${result.externalFile} (${human(result.externalBytes ?? 0)}B)` : '';
        console.log(`wrote ${opts.output} (${human(result.bytes)}B)${side}: ${result.nodes} nodes, ${result.initializers} initializers`);
      }
    });

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
    .action(async (file: string, opts: { ep: string; batch: number; runs: number; warmup: number; threads: number; inputShape: string[]; json?: boolean }) => {
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
    });

  return program;
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
    else process.stderr.write('regroup: this is a bug in regroup; rerun with REGROUP_DEBUG=1 for a stack trace and report it\n');
    return 70;
  }
}
