/**
 * `--profile FILE` of train, finetune and compress: the step graph's onnxruntime profile
 * (runtime/profile.ts) printed as tables — by op type, by layer, the heaviest nodes — and
 * written as JSON.
 */
import { writeAtomic } from '../compiler/onnx/io.js';
import type { ProfileSummary } from '../runtime/profile.js';
import { table } from './format.js';

/** Rows shown per table when printing (the JSON has them all). */
const SHOWN = 12;

/** The summary as text tables. */
export function formatProfile(p: ProfileSummary): string {
  const rows = (list: ProfileSummary['byOp']) =>
    list
      .slice(0, SHOWN)
      .map((r) => [r.name, r.msPerRun.toFixed(2), `${(100 * r.share).toFixed(1)}%`, r.callsPerRun.toFixed(0)]);
  const head = (what: string) => [what, 'ms/step', 'share', 'calls/step'];
  const align = ['left', 'right', 'right', 'right'] as const;
  return [
    `training step profile (onnxruntime, ${p.runs} steps after the first): ${p.runMs.toFixed(1)} ms per step, ` +
      `${p.kernelMs.toFixed(1)} ms in kernels, arena peak ${(p.peakBytes / 2 ** 20).toFixed(0)} MiB`,
    table(head('op type'), rows(p.byOp), [...align]),
    table(head('layer (backward charged to its forward node)'), rows(p.byLayer), [...align]),
    table(head('node'), rows(p.byNode), [...align]),
  ].join('\n');
}

/** Print the summary (when `print`) and write it to `file` as JSON. */
export function writeProfile(file: string, profile: ProfileSummary | undefined, print: boolean): void {
  if (!profile) {
    process.stderr.write(`note: --profile ${file}: no global training ran, so there is no step graph to profile\n`);
    return;
  }
  writeAtomic(file, [Buffer.from(`${JSON.stringify(profile, null, 2)}\n`)]);
  if (print) console.log(formatProfile(profile));
}
