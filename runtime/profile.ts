/**
 * onnxruntime's per-node profiling, summarised: where a session's time goes.
 *
 * With `SessionOptions.profile` a session records one event per kernel run ('Node' events,
 * `<node>_kernel_time`, duration in µs, the op type after graph optimisation — FusedConv,
 * ReorderInput, … — and the arena's memory in use) and one per `run()` ('model_run'). On
 * `finishProfile` onnxruntime writes them as Chrome-trace JSON; `summariseProfile` adds them
 * up by op type, by node and by layer. Layers are read from regroup's node names: the
 * autodiff step graph names a backward node `grad/<forward node>/<op>`, a training-mode
 * BatchNormalization's nodes `bn/<node>/<op>` and the optimizer's and loss's `train/…`; a fused node keeps one of its members' names, so a layer's row is the best
 * attribution the optimised graph allows, not an exact one.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import { RegroupError } from '../compiler/errors.js';

/** One row of a profile table: total time over the profiled runs, and its share. */
export interface ProfileRow {
  readonly name: string;
  /** Milliseconds per run (total over the counted runs / runs). */
  readonly msPerRun: number;
  /** Share of all kernel time. */
  readonly share: number;
  /** Kernel calls per run. */
  readonly callsPerRun: number;
}

export interface ProfileSummary {
  /** Runs counted (the first, which pays one-time allocations, is left out when there are more). */
  readonly runs: number;
  /** Wall time of a counted run (median of the 'model_run' events), ms. */
  readonly runMs: number;
  /** Kernel time of a counted run (sum of node events / runs), ms. */
  readonly kernelMs: number;
  /** Most memory the session's arena had in use, bytes (onnxruntime's mem_in_use_peak). */
  readonly peakBytes: number;
  readonly byOp: readonly ProfileRow[];
  readonly byLayer: readonly ProfileRow[];
  readonly byNode: readonly ProfileRow[];
}

interface TraceEvent {
  cat?: string;
  name?: string;
  dur?: number;
  ts?: number;
  args?: { op_name?: string; mem_in_use_peak?: string | number };
}

/** Where a profiled session writes: a fresh folder, and the prefix onnxruntime is given. */
export function profilePrefix(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-profile-')), 'session');
}

/** End profiling on `session` (opened with `prefix`) and return its trace events; the folder is removed. */
export function finishProfile(session: InferenceSession, prefix: string): unknown[] {
  session.endProfiling();
  const dir = path.dirname(prefix);
  const base = path.basename(prefix);
  const file = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(`${base}_`) && f.endsWith('.json'))
    .sort()
    .at(-1);
  try {
    if (!file) throw new RegroupError('runtime', `onnxruntime wrote no profile under ${dir}`);
    return JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as unknown[];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The layer a node's time belongs to (see the header). */
export function layerOf(node: string): string {
  // onnxruntime names a fused node after one member plus the fusion: …/MatmulTransposeFusion/.
  const fused = /^(.*)\/[A-Za-z]+Fusion\/?$/.exec(node);
  if (fused) return layerOf(fused[1]!);
  const scoped = /^(grad|bn)\/(.+)\/[^/]+$/.exec(node);
  if (scoped) return layerOf(scoped[2]!); // the backward of a training-mode BN node: bn/<node>/<op>
  if (node.startsWith('grad/')) return '(backward, shared)';
  if (node.startsWith('train/')) return '(optimizer and loss)';
  return node.replace(/(_nchwc|_token_\d+)+$/, '');
}

/** Add up trace events (see the header). */
export function summariseProfile(events: readonly unknown[]): ProfileSummary {
  const trace = events as readonly TraceEvent[];
  const runs = trace.filter((e) => e.cat === 'Session' && e.name === 'model_run');
  // Leave out the first run when there are more: it pays the arena's growth and kernel set-up.
  const from = runs.length > 1 ? (runs[0]!.ts ?? 0) + (runs[0]!.dur ?? 0) : Number.NEGATIVE_INFINITY;
  const counted = runs.length > 1 ? runs.slice(1) : runs;
  const n = Math.max(1, counted.length);
  const nodes = trace.filter(
    (e) => e.cat === 'Node' && e.name?.endsWith('_kernel_time') && (e.ts ?? 0) >= from && e.dur !== undefined,
  );
  const kernelUs = nodes.reduce((sum, e) => sum + e.dur!, 0);
  const table = (key: (e: TraceEvent) => string): ProfileRow[] => {
    const sums = new Map<string, { us: number; calls: number }>();
    for (const e of nodes) {
      const k = key(e);
      const s = sums.get(k) ?? { us: 0, calls: 0 };
      s.us += e.dur!;
      s.calls++;
      sums.set(k, s);
    }
    return [...sums]
      .map(([name, s]) => ({
        name,
        msPerRun: s.us / 1000 / n,
        share: s.us / Math.max(1, kernelUs),
        callsPerRun: s.calls / n,
      }))
      .sort((a, b) => b.msPerRun - a.msPerRun);
  };
  const nodeName = (e: TraceEvent) => e.name!.slice(0, -'_kernel_time'.length);
  const durations = counted.map((e) => e.dur ?? 0).sort((a, b) => a - b);
  return {
    runs: counted.length,
    runMs: durations.length ? durations[Math.floor((durations.length - 1) / 2)]! / 1000 : 0,
    kernelMs: kernelUs / 1000 / n,
    peakBytes: trace.reduce((peak, e) => Math.max(peak, Number(e.args?.mem_in_use_peak ?? 0) || 0), 0),
    byOp: table((e) => e.args?.op_name ?? '(unknown op)'),
    byLayer: table((e) => layerOf(nodeName(e))),
    byNode: table(nodeName),
  };
}
