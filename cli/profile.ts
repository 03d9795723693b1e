/**
 * `regroup profile`: measure a model's latency table (runtime/latency) and print it — per
 * layer its dense latency, the latency at 3/4, 1/2 and 1/4 of its width (both sides, on the
 * SIMD grid), and as uniform grouped convs (g = 2, 4, 8) — then the whole model against the
 * sum of its layers (the fixed rest that shrinking layers cannot remove). The table is cached
 * per provider, machine, onnxruntime version, batch and thread count; a second run reuses it.
 *
 * The runtime (onnxruntime's native library) is imported only when the command runs.
 */
import type { Command } from 'commander';
import { loadModel } from '../compiler/onnx/io.js';
import type { LayerShape, Structure } from '../runtime/latency/shapes.js';
import type { LatencyTable, TableKey } from '../runtime/latency/table.js';
import { parseProvider, PROVIDERS, type ExecutionProvider } from '../runtime/providers.js';
import { nonNegativeInt, positiveInt } from './args.js';
import { table } from './format.js';
import { progress } from './progress.js';

/** Width fractions shown per layer (both sides scaled). */
export const SHOWN_FRACTIONS = [3 / 4, 1 / 2, 1 / 4] as const;
/** Group counts shown per layer. */
export const SHOWN_GROUPS = [2, 4, 8] as const;

export interface ProfileCommandOptions {
  ep?: ExecutionProvider;
  batch?: number;
  threads?: number;
  refresh?: boolean;
  cacheDir?: string;
  onProgress?: (done: number, total: number) => void;
}

/** One layer of the model in the printed table. */
export interface ProfileRow {
  label: string;
  /** The layer's dense candidate string (its table entry). */
  shape: string;
  denseMs: number;
  /** Latency with both sides at a fraction of the width (on the grid), keyed '0.75', '0.5', '0.25'. */
  widthMs: Record<string, { cin: number; cout: number; ms: number }>;
  /** Latency as a uniform grouped conv at full width, keyed by group count; absent where not measured. */
  groupMs: Record<string, number>;
}

export interface ProfileReport {
  model: string;
  ep: ExecutionProvider;
  batch: number;
  threads: number;
  tableFile: string;
  key: TableKey;
  rows: ProfileRow[];
  wholeMs: number;
  layersMs: number;
  fixedMs: number;
  measured: number;
  reused: number;
  seconds: number;
  notes: string[];
}

/** Profile a model file: measure what the cached table lacks, and the per-layer rows. */
export async function profileFile(file: string, options: ProfileCommandOptions = {}): Promise<ProfileReport> {
  const model = loadModel(file);
  const { profileModel } = await import('../runtime/latency/profile.js');
  const ep = options.ep ?? 'cpu';
  const batch = options.batch ?? 1;
  const threads = options.threads ?? 0;
  const result = await profileModel(model, {
    ep,
    batch,
    threads,
    refresh: options.refresh,
    cacheDir: options.cacheDir,
    onProgress: options.onProgress,
  });
  const rows: ProfileRow[] = [];
  for (const shape of result.shapes) {
    const row = await rowOf(result.table, shape);
    for (const layer of shape.layers) rows.push({ ...row, label: layer.label });
  }
  return {
    model: file,
    ep,
    batch,
    threads,
    tableFile: result.table.file,
    key: result.table.key,
    rows,
    wholeMs: result.cost.wholeMs,
    layersMs: result.cost.layersMs,
    fixedMs: result.cost.fixedMs,
    measured: result.measured,
    reused: result.reused,
    seconds: result.seconds,
    notes: result.notes,
  };
}

async function rowOf(latency: LatencyTable, shape: LayerShape): Promise<ProfileRow> {
  const { layerMs, gridWidth, groupCounts, groupStep, simdBlockOf } = await import('../runtime/latency/profile.js');
  const block = simdBlockOf(latency.key);
  const scaled = (fraction: number): Structure => {
    if (shape.group === 1)
      return { cin: gridWidth(shape.cin, fraction, block), cout: gridWidth(shape.cout, fraction, block), group: 1 };
    const groups = gridWidth(shape.group, fraction, groupStep(shape, block));
    return { cin: (groups * shape.cin) / shape.group, cout: (groups * shape.cout) / shape.group, group: groups };
  };
  const widthMs: ProfileRow['widthMs'] = {};
  for (const fraction of SHOWN_FRACTIONS) {
    const s = scaled(fraction);
    widthMs[String(fraction)] = { cin: s.cin, cout: s.cout, ms: layerMs(latency, shape, s) };
  }
  const groupMs: ProfileRow['groupMs'] = {};
  for (const group of groupCounts(shape, block))
    groupMs[String(group)] = layerMs(latency, shape, { cin: shape.cin, cout: shape.cout, group });
  return { label: '', shape: shape.key, denseMs: layerMs(latency, shape, shape), widthMs, groupMs };
}

/** Text report: the per-layer table, the whole model against its layers, the cache file and counts. */
export function formatProfile(r: ProfileReport): string {
  const ms = (x: number | undefined) => (x === undefined ? '—' : x.toFixed(3));
  const header = [
    'layer',
    'shape',
    'dense ms',
    ...SHOWN_FRACTIONS.map((f) => `×${f} ms`),
    ...SHOWN_GROUPS.map((g) => `g=${g} ms`),
  ];
  const rows = r.rows.map((row) => [
    row.label,
    displayShape(row.shape),
    ms(row.denseMs),
    ...SHOWN_FRACTIONS.map((f) => ms(row.widthMs[String(f)]?.ms)),
    ...SHOWN_GROUPS.map((g) => ms(row.groupMs[String(g)])),
  ]);
  const align = header.map((_, col) => (col < 2 ? 'left' : 'right') as 'left' | 'right');
  const share = r.wholeMs > 0 ? ` (${((100 * r.fixedMs) / r.wholeMs).toFixed(0)}% of the whole)` : '';
  return [
    `${r.model} on ${r.ep}, batch ${r.batch}, ${r.threads || 'default'} threads — ${r.key.cpu} (${r.key.cpuFlags.join(' ') || 'no SIMD flags read'}), onnxruntime ${r.key.ort}`,
    table(header, rows, align),
    `whole model ${r.wholeMs.toFixed(3)} ms; Σ layers ${r.layersMs.toFixed(3)} ms; fixed rest ${r.fixedMs.toFixed(3)} ms${share}`,
    `table: ${r.tableFile}`,
    `measured ${r.measured}, reused ${r.reused} from cache, ${r.seconds.toFixed(1)} s`,
    ...r.notes.map((note) => `note: ${note}`),
  ].join('\n');
}

/** `conv cin=64 cout=64 g=1 k=3x3 s=1x1 … in=56x56` → `64→64 3x3/s1 @56x56`; `gemm in=512 out=1000` → `512→1000 gemm`. */
export function displayShape(key: string): string {
  const field = (name: string) => new RegExp(`\\b${name}=(\\S+)`).exec(key)?.[1];
  const half = key.endsWith(' f16') ? ' f16' : '';
  if (!key.startsWith('conv')) {
    const rows = field('m');
    return `${field('in')}→${field('out')} ${key.split(' ')[0]}${rows ? ` ×${rows}` : ''}${half}`;
  }
  const strides = field('s')!.split('x');
  const stride = strides.every((s) => s === strides[0]) ? strides[0] : strides.join('x');
  const group = field('g') === '1' ? '' : ` g${field('g')}`;
  return `${field('cin')}→${field('cout')} ${field('k')}/s${stride}${group} @${field('in')}${half}`;
}

const HELP = `
A latency table is what a latency-aware planner needs instead of MACs: for each distinct layer
shape of the model, the measured latency of candidate structures — channel widths on this
CPU's SIMD grid (1/4 … 1 of each side) and uniform group counts — each timed as a single-layer
ONNX model in onnxruntime at the given batch, with all graph optimisations on. The whole model
is timed too: what the layers do not explain (stem, pooling, memory-bound ops) is the fixed
rest that shrinking layers cannot remove.

The table is cached under $REGROUP_CACHE_DIR (else $XDG_CACHE_HOME/regroup/latency, else
~/.cache/regroup/latency), one file per provider, CPU, onnxruntime version, batch and thread
count; a later run measures only what is missing. A file measured elsewhere is never used.`;

/** Register `regroup profile` on the program. */
export function registerProfileCommand(program: Command): void {
  program
    .command('profile')
    .description('measure per-layer latency of candidate widths and groups on an execution provider (cached)')
    .argument('<model>', 'ONNX model file')
    .option('--ep <provider>', `execution provider: ${PROVIDERS.join(', ')}`, 'cpu')
    .option('--batch <n>', 'batch size to time at', positiveInt, 1)
    .option('--threads <n>', 'intra-op threads (0 = onnxruntime default)', nonNegativeInt, 0)
    .option('--refresh', 'measure everything again, ignoring the cached entries')
    .option('--json', 'print the report as JSON')
    .addHelpText('after', HELP)
    .action(
      async (file: string, opts: { ep: string; batch: number; threads: number; refresh?: boolean; json?: boolean }) => {
        const ep = parseProvider(opts.ep);
        const bar = progress(`profile ${ep} batch ${opts.batch}`, 0, { quiet: opts.json });
        const report = await profileFile(file, {
          ep,
          batch: opts.batch,
          threads: opts.threads,
          refresh: opts.refresh,
          onProgress: (done, total) => bar.tick(done, total),
        });
        bar.done();
        console.log(opts.json ? JSON.stringify(report, null, 2) : formatProfile(report));
      },
    );
}
