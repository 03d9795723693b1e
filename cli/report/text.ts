/**
 * A report as plain text, for `regroup report FILE.json` without `--html`: what the model is,
 * before and after side by side (sides.ts), structure vs executed MACs, agreement, training,
 * the layer table with each grouped layer's lowering and connected share, and the notes.
 */
import { type Align, human, table } from '../format.js';
import { connectedFraction } from './connectivity.js';
import { pct } from './charts.js';
import type { Report, ReportLayer } from './schema.js';
import { loweringText, sideBySide, structureSummary } from './sides.js';

/** Render one validated report as text (no trailing newline). */
export function renderText(report: Report): string {
  const from = report.baseline ? ` from ${report.baseline.file}` : '';
  const lines = [`${report.kind} report: ${report.model.file}${from} (written ${report.createdAt})`];
  const rows = sideBySide(report, { p90: true }).map((r) => [r.metric, r.before, r.after, r.change]);
  lines.push(table(['', 'before', 'after', 'change'], rows, ['left', 'right', 'right', 'right']));
  if (report.accuracy) lines.push(`accuracy on ${report.accuracy.dataset}, ${report.accuracy.samples} samples`);
  lines.push(...structureSummary(report));
  if (report.agreement) {
    const a = report.agreement;
    lines.push(
      `agreement with ${a.reference}: top-1 ${(100 * a.top1Agreement).toFixed(2)}%, cosine ${a.cosine.toFixed(6)}, max |diff| ${a.maxAbsDiff.toPrecision(3)} over ${a.samples} samples`,
    );
  }
  if (report.training) {
    const t = report.training;
    lines.push(
      `${t.mode}: ${t.epochs} epoch(s), ${t.steps} updates of batch ${t.batchSize}; ${t.optimizer}; ${t.loss}`,
    );
  }
  if (report.layers && report.layers.length > 0) lines.push(layerTable(report.layers));
  for (const note of report.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}

function layerTable(layers: readonly ReportLayer[]): string {
  const columns: [header: string, value: (l: ReportLayer) => string][] = [
    ['layer', (l) => l.name],
    ['op', (l) => l.op],
    ['lowered as', loweringText],
    ['connected', (l) => (l.connectivity ? pct(connectedFraction(l.connectivity)) : '')],
    ['channels', (l) => pair(l.channelsBefore, l.channelsAfter, String)],
    ['MACs', (l) => pair(l.macsBefore, l.macsAfter, human)],
    ['parameters', (l) => pair(l.paramsBefore, l.paramsAfter, human)],
  ];
  // Only the columns some layer has a value for.
  const shown = columns.filter(([, value]) => layers.some((l) => value(l) !== ''));
  const align = shown.map(([header]) => (['layer', 'op', 'lowered as'].includes(header) ? 'left' : 'right') as Align);
  return table(
    shown.map(([header]) => header),
    layers.map((l) => shown.map(([, value]) => value(l))),
    align,
  );
}

/** "64 → 16", or just the after value when there is no before. */
function pair(before: number | undefined, after: number | undefined, format: (n: number) => string): string {
  if (after === undefined) return '';
  return before === undefined ? format(after) : `${format(before)} → ${format(after)}`;
}
