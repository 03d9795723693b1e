/**
 * What the report page draws: chart specifications (data only, no code) and the short text
 * summary printed under each chart. The page script (page-assets.ts) turns a spec into a
 * Chart.js chart; keeping the choice of data here lets tests check it without a browser.
 *
 * Charts: for one report with layers, grouped bars of channels and of MACs per layer, before
 * vs after; for one report with a training section, the loss curve (mean loss per window of
 * updates) and train/test accuracy per epoch as lines; for several reports, top-1 (accuracy, or agreement with the reference where a
 * report has no accuracy) against MACs, one labelled point per report.
 */
import path from 'node:path';
import { human } from '../format.js';
import type { Report, ReportLayer, ReportTraining } from './schema.js';

export const COLOR_BEFORE = '#9aa5b1';
export const COLOR_AFTER = '#2563eb';
export const COLOR_AGREEMENT = '#d97706';

export interface BarDataset {
  label: string;
  color: string;
  /** One value per label; null where a layer has no value. */
  data: (number | null)[];
}

export interface PointDataset {
  label: string;
  color: string;
  data: { x: number; y: number; label: string }[];
}

interface ChartBase {
  id: string;
  title: string;
  xTitle: string;
  yTitle: string;
  summary: string;
}

export interface BarChartSpec extends ChartBase {
  type: 'bar';
  labels: string[];
  datasets: BarDataset[];
}

export interface ScatterChartSpec extends ChartBase {
  type: 'scatter';
  datasets: PointDataset[];
}

export interface LineDataset {
  label: string;
  color: string;
  data: { x: number; y: number }[];
}

export interface LineChartSpec extends ChartBase {
  type: 'line';
  datasets: LineDataset[];
  /** How the page formats y values: plain numbers or percentages. */
  yFormat: 'number' | 'percent';
  /** Distance between x ticks (1 for epochs); automatic when absent. */
  xStep?: number;
}

export type ChartSpec = BarChartSpec | ScatterChartSpec | LineChartSpec;

/** The charts a page for these reports shows, in page order. */
export function planCharts(reports: readonly Report[]): ChartSpec[] {
  if (reports.length === 1) {
    const layers = reports[0]!.layers ?? [];
    const layerCharts =
      layers.length === 0
        ? []
        : [channelChart(layers), macsChart(layers)].filter((c): c is BarChartSpec => c !== undefined);
    return [...layerCharts, ...trainingCharts(reports[0]!.training)];
  }
  const tradeoff = tradeoffChart(reports);
  return tradeoff ? [tradeoff] : [];
}

/** A short name per report: the model's file name, numbered when two reports share one. */
export function reportLabels(reports: readonly Report[]): string[] {
  const names = reports.map((r) => path.basename(r.model.file));
  const repeated = (name: string) => names.filter((n) => n === name).length > 1;
  return names.map((name, index) => (repeated(name) ? `#${index + 1} ${name}` : name));
}

function channelChart(layers: readonly ReportLayer[]): BarChartSpec | undefined {
  const shown = layers.filter((l) => l.channelsAfter !== undefined);
  if (shown.length === 0) return undefined;
  const hasBefore = shown.some((l) => l.channelsBefore !== undefined);
  const datasets: BarDataset[] = [];
  if (hasBefore)
    datasets.push({ label: 'before', color: COLOR_BEFORE, data: shown.map((l) => l.channelsBefore ?? null) });
  datasets.push({
    label: hasBefore ? 'after' : 'channels',
    color: COLOR_AFTER,
    data: shown.map((l) => l.channelsAfter!),
  });
  return {
    type: 'bar',
    id: 'chart-channels',
    title: 'Output channels per layer',
    xTitle: 'layer',
    yTitle: 'output channels',
    labels: shown.map((l) => l.name),
    datasets,
    summary: channelSummary(shown),
  };
}

function channelSummary(layers: readonly ReportLayer[]): string {
  const after = sum(layers.map((l) => l.channelsAfter ?? 0));
  const compared = layers.filter((l) => l.channelsBefore !== undefined);
  if (compared.length === 0) return `${layers.length} layers with ${after} output channels in all.`;
  const before = sum(compared.map((l) => l.channelsBefore!));
  const afterCompared = sum(compared.map((l) => l.channelsAfter!));
  const pruned = compared.filter((l) => l.channelsAfter! < l.channelsBefore!);
  const text = `${layers.length} layers; ${pruned.length} of them lost channels. Output channels in all: ${before} → ${afterCompared} (${keptText(afterCompared, before)}).`;
  const most = maxBy(pruned, (l) => 1 - l.channelsAfter! / l.channelsBefore!);
  return most ? `${text} Deepest cut: ${most.name} (${most.channelsBefore} → ${most.channelsAfter}).` : text;
}

function macsChart(layers: readonly ReportLayer[]): BarChartSpec {
  const hasBefore = layers.some((l) => l.macsBefore !== undefined);
  const datasets: BarDataset[] = [];
  if (hasBefore) datasets.push({ label: 'before', color: COLOR_BEFORE, data: layers.map((l) => l.macsBefore ?? null) });
  datasets.push({ label: hasBefore ? 'after' : 'MACs', color: COLOR_AFTER, data: layers.map((l) => l.macsAfter) });
  return {
    type: 'bar',
    id: 'chart-macs',
    title: 'MACs per layer',
    xTitle: 'layer',
    yTitle: 'MACs',
    labels: layers.map((l) => l.name),
    datasets,
    summary: macsSummary(layers),
  };
}

function macsSummary(layers: readonly ReportLayer[]): string {
  const after = sum(layers.map((l) => l.macsAfter));
  const largest = maxBy(layers, (l) => l.macsAfter);
  const heaviest =
    largest && after > 0
      ? ` Largest layer now: ${largest.name} (${human(largest.macsAfter)}, ${pct(largest.macsAfter / after)} of the total).`
      : '';
  const compared = layers.filter((l) => l.macsBefore !== undefined);
  if (compared.length === 0) return `${layers.length} layers, ${human(after)} MACs in all.${heaviest}`;
  const before = sum(compared.map((l) => l.macsBefore!));
  const afterCompared = sum(compared.map((l) => l.macsAfter));
  const saved = maxBy(compared, (l) => l.macsBefore! - l.macsAfter);
  const savedText =
    saved && saved.macsBefore! > saved.macsAfter
      ? ` Most MACs saved in ${saved.name} (${human(saved.macsBefore!)} → ${human(saved.macsAfter)}).`
      : '';
  return `${layers.length} layers; MACs in all: ${human(before)} → ${human(afterCompared)} (${keptText(afterCompared, before)}).${savedText}${heaviest}`;
}

function trainingCharts(training: ReportTraining | undefined): LineChartSpec[] {
  if (!training) return [];
  const charts: LineChartSpec[] = [];
  if (training.lossCurve.length > 0) charts.push(lossChart(training));
  if (training.history.length > 0) charts.push(accuracyChart(training));
  return charts;
}

function lossChart(training: ReportTraining): LineChartSpec {
  const points = training.lossCurve.map((p) => ({ x: p.step, y: p.loss }));
  const first = points[0]!;
  const last = points.at(-1)!;
  const lowest = points.reduce((a, b) => (b.y < a.y ? b : a));
  const summary = `Training loss (mean per window of updates) from ${first.y.toFixed(3)} at update ${first.x} to ${last.y.toFixed(3)} at update ${last.x}; lowest ${lowest.y.toFixed(3)} at update ${lowest.x}.`;
  return {
    type: 'line',
    id: 'chart-loss',
    title: 'Training loss',
    xTitle: 'update',
    yTitle: 'loss',
    yFormat: 'number',
    datasets: [{ label: 'training loss', color: COLOR_AFTER, data: points }],
    summary,
  };
}

function accuracyChart(training: ReportTraining): LineChartSpec {
  const history = training.history;
  const datasets: LineDataset[] = [
    {
      label: 'train top-1 (augmented batches)',
      color: COLOR_BEFORE,
      data: history.map((e) => ({ x: e.epoch, y: 100 * e.trainAccuracy })),
    },
  ];
  const tested = history.filter((e) => e.testAccuracy !== undefined);
  if (tested.length > 0)
    datasets.push({
      label: 'test top-1',
      color: COLOR_AFTER,
      data: tested.map((e) => ({ x: e.epoch, y: 100 * e.testAccuracy! })),
    });
  const best = maxBy(tested, (e) => e.testAccuracy!);
  const last = history.at(-1)!;
  const testText = best
    ? ` Test top-1 after the last epoch ${pct(tested.at(-1)!.testAccuracy!)}, best ${pct(best.testAccuracy!)} after epoch ${best.epoch}.`
    : ' No test split was evaluated.';
  const summary = `${history.length} epoch${history.length === 1 ? '' : 's'}; train top-1 ${pct(last.trainAccuracy)} in the last epoch.${testText}`;
  return {
    type: 'line',
    id: 'chart-accuracy',
    title: 'Accuracy per epoch',
    xTitle: 'epoch',
    yTitle: 'top-1 (%)',
    yFormat: 'percent',
    xStep: 1,
    datasets,
    summary,
  };
}

function tradeoffChart(reports: readonly Report[]): ScatterChartSpec | undefined {
  const labels = reportLabels(reports);
  const accuracy: PointDataset = { label: 'top-1 accuracy', color: COLOR_AFTER, data: [] };
  const agreement: PointDataset = { label: 'top-1 agreement with reference', color: COLOR_AGREEMENT, data: [] };
  const missing: string[] = [];
  reports.forEach((r, index) => {
    const label = labels[index]!;
    if (r.accuracy) accuracy.data.push({ x: r.model.macs, y: 100 * r.accuracy.top1, label });
    else if (r.agreement) agreement.data.push({ x: r.model.macs, y: 100 * r.agreement.top1Agreement, label });
    else missing.push(label);
  });
  const datasets = [accuracy, agreement].filter((d) => d.data.length > 0);
  if (datasets.length === 0) return undefined;
  for (const d of datasets) d.data.sort((a, b) => a.x - b.x);
  const yTitle =
    datasets.length === 2
      ? 'top-1 (%): accuracy or agreement'
      : accuracy.data.length > 0
        ? 'top-1 accuracy (%)'
        : 'top-1 agreement with reference (%)';
  return {
    type: 'scatter',
    id: 'chart-tradeoff',
    title: 'Top-1 against MACs',
    xTitle: 'MACs',
    yTitle,
    datasets,
    summary: tradeoffSummary(datasets, missing),
  };
}

function tradeoffSummary(datasets: readonly PointDataset[], missing: readonly string[]): string {
  const parts = datasets.map(
    (d) =>
      `${capitalize(d.label)}: ${d.data.map((p) => `${p.label} ${p.y.toFixed(2)}% at ${human(p.x)} MACs`).join('; ')}.`,
  );
  if (missing.length > 0) parts.push(`Not plotted (no accuracy or agreement): ${missing.join(', ')}.`);
  return parts.join(' ');
}

/** "48.2% kept" for a before → after pair. */
function keptText(after: number, before: number): string {
  return before > 0 ? `${pct(after / before)} kept` : 'nothing before';
}

export function pct(fraction: number): string {
  return `${(100 * fraction).toFixed(1)}%`;
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function maxBy<T>(items: readonly T[], score: (item: T) => number): T | undefined {
  let best: T | undefined;
  let bestScore = -Infinity;
  for (const item of items) {
    const s = score(item);
    if (s > bestScore) [best, bestScore] = [item, s];
  }
  return best;
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
