/**
 * Before and after side by side, as plain text cells shared by every rendering (the
 * `regroup compress` summary, `regroup report`'s text, the HTML page, which escapes them):
 * accuracy (difference in percentage points), latency per batch (speed-up = before / after),
 * MACs of the structure and MACs executed, parameters (after / before).
 *
 * Structure vs executed: the structure's MACs (`totals.structureMacsRatio`) count only the
 * connections a grouped layer keeps; the written model executes each layer as lowered, and a
 * layer left masked dense runs its dense MACs on weights that are partly zero.
 */
import { human } from '../format.js';
import { pct } from './charts.js';
import type { Report, ReportLatency, ReportLayer } from './schema.js';

/** One row of the comparison; an empty string where a side has no value. */
export interface SideRow {
  metric: string;
  before: string;
  after: string;
  change: string;
}

export interface SideOptions {
  /** Show each latency's p90 beside its median (default false). */
  p90?: boolean;
}

/** The comparison rows of a report: only the metrics the report has. */
export function sideBySide(report: Report, options: SideOptions = {}): SideRow[] {
  const macsBefore = report.totals.macsBefore ?? report.baseline?.macs;
  const paramsBefore = report.totals.paramsBefore ?? report.baseline?.params;
  const ratio = report.totals.structureMacsRatio;
  return [
    ...accuracyRows(report),
    ...latencyRows(report, options),
    ...(ratio === undefined || macsBefore === undefined
      ? []
      : [
          {
            metric: 'MACs of the structure',
            before: human(macsBefore),
            after: human(ratio * macsBefore),
            change: pct(ratio),
          },
        ]),
    countRow(ratio === undefined ? 'MACs' : 'MACs executed', macsBefore, report.totals.macsAfter),
    countRow('parameters', paramsBefore, report.totals.paramsAfter),
    { metric: 'file size', before: '', after: `${human(report.model.bytes)}B`, change: '' },
  ];
}

function accuracyRows({ accuracy, baseline }: Report): SideRow[] {
  if (!accuracy) return [];
  const dense = baseline?.accuracy;
  return (['top1', 'top5'] as const).map((key) => ({
    metric: key === 'top1' ? 'top-1 accuracy' : 'top-5 accuracy',
    before: dense ? percent2(dense[key]) : '',
    after: percent2(accuracy[key]),
    change: dense ? pointsText(accuracy[key] - dense[key]) : '',
  }));
}

function latencyRows({ latency, baseline }: Report, options: SideOptions): SideRow[] {
  const text = (l: ReportLatency) => `${l.medianMs.toFixed(3)} ms${options.p90 ? ` (p90 ${l.p90Ms.toFixed(3)})` : ''}`;
  return (latency ?? []).map((l) => {
    const dense = baseline?.latency?.find((d) => d.ep === l.ep && d.batch === l.batch);
    return {
      metric: `latency, batch ${l.batch} (${l.ep})`,
      before: dense ? text(dense) : '',
      after: text(l),
      change: dense && l.medianMs > 0 ? `speed-up ${(dense.medianMs / l.medianMs).toFixed(2)}×` : '',
    };
  });
}

/** "79.9% (1.25× fewer)": after as a share of before. */
function countRow(metric: string, before: number | undefined, after: number): SideRow {
  if (before === undefined) return { metric, before: '', after: human(after), change: '' };
  // "1.00× fewer" says nothing: name the factor only when it shows at two decimals.
  const fewer = after > 0 && before / after >= 1.005 ? ` (${(before / after).toFixed(2)}× fewer)` : '';
  return {
    metric,
    before: human(before),
    after: human(after),
    change: before > 0 ? `${pct(after / before)}${fewer}` : '',
  };
}

/**
 * Sentences on structure vs execution: the structure's MACs beside the executed ones, and
 * how many grouped layers stay masked dense (their saving is parameter sparsity only).
 */
export function structureSummary(report: Report): string[] {
  const lines: string[] = [];
  const { structureMacsRatio, macsBefore, macsAfter } = report.totals;
  if (structureMacsRatio !== undefined && macsBefore !== undefined && macsBefore > 0)
    lines.push(
      `The structure needs ${pct(structureMacsRatio)} of the dense MACs; the written model executes ${pct(macsAfter / macsBefore)}.`,
    );
  const grouped = (report.layers ?? []).filter((l) => l.lowering !== undefined);
  const masked = grouped.filter((l) => l.lowering!.form === 'masked-dense').length;
  if (masked > 0)
    lines.push(
      `${masked} of ${grouped.length} grouped layers stay masked dense: parameter sparsity only, no latency saving.`,
    );
  return lines;
}

/** "masked-dense", "grouped ×4": a layer's lowering in a few characters, or '' when it has none. */
export function loweringText(layer: ReportLayer): string {
  const l = layer.lowering;
  if (!l) return '';
  return l.groups ? `${l.form} ×${l.groups}` : l.form;
}

function percent2(fraction: number): string {
  return `${(100 * fraction).toFixed(2)}%`;
}

/** "+0.42 pt", "−1.10 pt" for a difference of fractions. */
function pointsText(difference: number): string {
  const points = 100 * difference;
  const sign = points > 0.005 ? '+' : points < -0.005 ? '−' : '±';
  return `${sign}${Math.abs(points).toFixed(2)} pt`;
}
