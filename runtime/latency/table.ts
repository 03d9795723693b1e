/**
 * The latency table: measured latencies of candidate layer structures on one execution
 * provider, machine, onnxruntime build, batch and thread count, cached on disk.
 *
 *   key    = { format version, ep, CPU model + SIMD flags + arch + platform + cores,
 *              onnxruntime-node version, batch, threads }
 *   file   = <cache dir>/<ep>-b<batch>-<first 16 hex of sha256(canonical JSON of key)>.json
 *   entry  = candidate string (e.g. `conv cin=64 cout=64 g=1 k=3x3 s=1x1 p=1,1,1,1 d=1x1 in=56x56`)
 *            → { medianMs, p90Ms, minMs, runs }
 *
 * Cache dir: $REGROUP_CACHE_DIR, else $XDG_CACHE_HOME/regroup/latency, else
 * ~/.cache/regroup/latency. The file holds its full key; a file whose stored key differs in
 * any field from the key asked for (another CPU, another onnxruntime, another format version,
 * another batch), or that does not parse, is never trusted: it is ignored with a note and
 * rebuilt. Files are written atomically (temp file + rename), so a crash mid-write leaves
 * the previous table.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { RegroupError } from '../../compiler/errors.js';
import { writeAtomic } from '../../compiler/onnx/io.js';
import type { ExecutionProvider } from '../providers.js';

/** Bump when the meaning of entries or candidate strings changes: old files are then rebuilt. */
export const TABLE_FORMAT_VERSION = 1;
const TABLE_FORMAT = 'regroup-latency-table';

/** CPU flags that change which kernels onnxruntime's CPU provider runs. */
const RELEVANT_FLAGS = [
  'sse4_1',
  'sse4_2',
  'avx',
  'avx2',
  'fma',
  'f16c',
  'avx512f',
  'avx512bw',
  'avx512vl',
  'avx512_vnni',
  'avx512_bf16',
  'avx512_fp16',
  'avx_vnni',
  'amx_tile',
  'asimd',
  'asimddp',
  'asimdhp',
  'sve',
  'i8mm',
  'bf16',
];

/** Everything a measured latency depends on; two tables are interchangeable only when every field agrees. */
export interface TableKey {
  format: number;
  ep: ExecutionProvider;
  /** CPU model name (/proc/cpuinfo `model name`, else os.cpus()[0].model). */
  cpu: string;
  /** The relevant SIMD flags present, sorted. */
  cpuFlags: string[];
  arch: string;
  platform: string;
  /** Logical CPUs available to this process (onnxruntime's default thread count follows them). */
  cores: number;
  /** onnxruntime-node package version. */
  ort: string;
  batch: number;
  /** Intra-op threads (0 = onnxruntime's default). */
  threads: number;
}

/** One measured candidate: median (what planners use), p90 and minimum over `runs` timed runs. */
export interface LatencyEntry {
  medianMs: number;
  p90Ms: number;
  /** The fastest run: the least disturbed by other load on a shared machine. */
  minMs: number;
  runs: number;
}

/** The cached measurements under one key, and where they are stored. */
export class LatencyTable {
  readonly entries = new Map<string, LatencyEntry>();

  constructor(
    readonly key: TableKey,
    readonly file: string,
  ) {}

  get(candidate: string): LatencyEntry | undefined {
    return this.entries.get(candidate);
  }

  has(candidate: string): boolean {
    return this.entries.has(candidate);
  }

  set(candidate: string, entry: LatencyEntry): void {
    this.entries.set(candidate, entry);
  }

  /** Median latency of a measured candidate, or undefined. */
  ms(candidate: string): number | undefined {
    return this.entries.get(candidate)?.medianMs;
  }

  get size(): number {
    return this.entries.size;
  }
}

/** The key of this machine for a provider, batch and thread count. */
export function tableKey(options: { ep: ExecutionProvider; batch: number; threads?: number }): TableKey {
  const cpu = cpuIdentity();
  return {
    format: TABLE_FORMAT_VERSION,
    ep: options.ep,
    cpu: cpu.model,
    cpuFlags: cpu.flags,
    arch: process.arch,
    platform: process.platform,
    cores: os.availableParallelism(),
    ort: onnxruntimeVersion(),
    batch: options.batch,
    threads: options.threads ?? 0,
  };
}

/** CPU model and relevant flags: from /proc/cpuinfo on Linux, else os.cpus() (flags empty). */
export function cpuIdentity(): { model: string; flags: string[] } {
  let info: string | undefined;
  try {
    info = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // not Linux
  }
  const fallback = os.cpus()[0]?.model?.trim() || process.arch;
  if (!info) return { model: fallback, flags: [] };
  const model = /^(?:model name|Model|Hardware|cpu model)\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() || fallback;
  const flagLine = /^(?:flags|Features)\s*:\s*(.*)$/m.exec(info)?.[1] ?? '';
  const present = new Set(flagLine.split(/\s+/));
  return { model, flags: RELEVANT_FLAGS.filter((f) => present.has(f)).sort() };
}

/** The installed onnxruntime-node version (its package.json). */
export function onnxruntimeVersion(): string {
  const require = createRequire(import.meta.url);
  const file = require.resolve('onnxruntime-node/package.json');
  return String(JSON.parse(fs.readFileSync(file, 'utf8')).version);
}

/** The cache folder: $REGROUP_CACHE_DIR, else $XDG_CACHE_HOME/regroup/latency, else ~/.cache/regroup/latency. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.REGROUP_CACHE_DIR) return path.resolve(env.REGROUP_CACHE_DIR);
  if (env.XDG_CACHE_HOME) return path.join(path.resolve(env.XDG_CACHE_HOME), 'regroup', 'latency');
  return path.join(os.homedir(), '.cache', 'regroup', 'latency');
}

/** Canonical JSON of a key: fields in a fixed order, so equal keys hash equally. */
function canonicalKey(key: TableKey): string {
  return JSON.stringify({
    format: key.format,
    ep: key.ep,
    cpu: key.cpu,
    cpuFlags: [...key.cpuFlags].sort(),
    arch: key.arch,
    platform: key.platform,
    cores: key.cores,
    ort: key.ort,
    batch: key.batch,
    threads: key.threads,
  });
}

/** The file that holds the table for `key` under `dir`. */
export function tablePath(dir: string, key: TableKey): string {
  const hash = crypto.createHash('sha256').update(canonicalKey(key)).digest('hex').slice(0, 16);
  return path.join(dir, `${key.ep}-b${key.batch}-${hash}.json`);
}

/**
 * The table for `key` from `dir` (default: defaultCacheDir()), or an empty one when there is
 * no file or the file cannot be trusted; `note` says why a file was ignored.
 */
export function openTable(key: TableKey, dir: string = defaultCacheDir()): { table: LatencyTable; note?: string } {
  const file = tablePath(dir, key);
  const table = new LatencyTable(key, file);
  if (!fs.existsSync(file)) return { table };
  const why = readInto(table);
  if (why === undefined) return { table };
  table.entries.clear();
  return { table, note: `ignored the latency table ${file}: ${why}; it will be rebuilt` };
}

/** Fill `table` from its file; the reason the file is not usable, or undefined. */
function readInto(table: LatencyTable): string | undefined {
  let stored: unknown;
  try {
    stored = JSON.parse(fs.readFileSync(table.file, 'utf8'));
  } catch (err) {
    return `it does not parse (${(err as Error).message.split('\n')[0]})`;
  }
  const doc = stored as { format?: unknown; key?: unknown; entries?: unknown };
  if (typeof doc !== 'object' || doc === null || doc.format !== TABLE_FORMAT) return 'it is not a latency table';
  const mismatch = keyMismatch(table.key, doc.key);
  if (mismatch) return mismatch;
  if (typeof doc.entries !== 'object' || doc.entries === null) return 'it has no entries object';
  for (const [candidate, entry] of Object.entries(doc.entries as Record<string, unknown>)) {
    if (!isEntry(entry)) return `entry '${candidate}' is malformed`;
    table.set(candidate, { medianMs: entry.medianMs, p90Ms: entry.p90Ms, minMs: entry.minMs, runs: entry.runs });
  }
  return undefined;
}

/** Which field of the stored key differs from the wanted one, or undefined when none does. */
function keyMismatch(wanted: TableKey, stored: unknown): string | undefined {
  if (typeof stored !== 'object' || stored === null) return 'it stores no key';
  const have = stored as Record<string, unknown>;
  const want = JSON.parse(canonicalKey(wanted)) as Record<string, unknown>;
  for (const field of Object.keys(want)) {
    const a = JSON.stringify(want[field]);
    const b = JSON.stringify(
      field === 'cpuFlags' && Array.isArray(have[field]) ? [...have[field]].sort() : have[field],
    );
    if (a !== b) return `it was measured with ${field} ${b ?? 'missing'}, this run has ${a}`;
  }
  const extra = Object.keys(have).filter((field) => !(field in want));
  return extra.length ? `its key has unknown field(s) ${extra.join(', ')}` : undefined;
}

function isEntry(x: unknown): x is LatencyEntry {
  const e = x as LatencyEntry;
  return (
    typeof e === 'object' &&
    e !== null &&
    Number.isFinite(e.medianMs) &&
    e.medianMs >= 0 &&
    Number.isFinite(e.p90Ms) &&
    Number.isFinite(e.minMs) &&
    Number.isInteger(e.runs) &&
    e.runs > 0
  );
}

/**
 * Write the table to its file atomically (creating the cache folder). Entries that another
 * process saved to the same file since this table was opened are kept (the file is read
 * again under the same key check; this table's own entries win), so two runs profiling
 * different models on one machine do not drop each other's measurements.
 */
export function saveTable(table: LatencyTable): void {
  const dir = path.dirname(table.file);
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new RegroupError(
      'io',
      `cannot create the latency cache folder ${dir} (${(err as NodeJS.ErrnoException).code}); set REGROUP_CACHE_DIR to a writable folder`,
    );
  }
  const merged = new Map(table.entries);
  if (fs.existsSync(table.file)) {
    const onDisk = new LatencyTable(table.key, table.file);
    if (readInto(onDisk) === undefined)
      for (const [candidate, entry] of onDisk.entries) if (!merged.has(candidate)) merged.set(candidate, entry);
  }
  const entries = Object.fromEntries([...merged].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const doc = { format: TABLE_FORMAT, key: JSON.parse(canonicalKey(table.key)), entries };
  writeAtomic(table.file, [Buffer.from(`${JSON.stringify(doc, null, 1)}\n`)]);
}
