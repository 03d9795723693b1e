/**
 * The zoo report: one self-contained HTML page over every finished job of a results folder,
 * drawn with the report machinery's assets (Chart.js inlined, the same page script and CSS):
 * top-1 accuracy against executed MACs and against measured latency, one series per model and
 * method, and a table linking each job's own report page. Jobs without accuracy (no data) are
 * plotted as the MACs kept instead, and the page says so.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RegroupError } from '../../compiler/errors.js';
import { writeAtomic } from '../../compiler/onnx/io.js';
import type { PointDataset, ScatterChartSpec } from '../report/charts.js';
import { escapeHtml, htmlPage } from '../report/html.js';
import type { JobResult } from './job-child.js';
import { methodLabel } from './spec.js';

const PALETTE = ['#2563eb', '#d97706', '#059669', '#dc2626', '#7c3aed', '#0891b2', '#db2777', '#65a30d'];

/** Every published job under `results` (folders holding result.json), in id order. */
export function finishedJobs(results: string): JobResult[] {
  if (!fs.existsSync(results)) throw new RegroupError('io', `results folder ${results} does not exist`);
  return fs
    .readdirSync(results, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => path.join(results, e.name, 'result.json'))
    .filter((f) => fs.existsSync(f))
    .map((f) => JSON.parse(fs.readFileSync(f, 'utf8')) as JobResult)
    .sort((a, b) => a.id.localeCompare(b.id));
}

/** Render the zoo page for `results` to `output` (atomically); returns the number of jobs shown. */
export function writeZooReport(results: string, output: string): number {
  const jobs = finishedJobs(results);
  if (jobs.length === 0)
    throw new RegroupError('usage', `no finished jobs in ${results}; run the batch first (regroup batch SPEC)`);
  writeAtomic(output, [Buffer.from(renderZoo(jobs, path.relative(path.dirname(path.resolve(output)), results)))]);
  return jobs.length;
}

/** The page; `linkBase` is the results folder relative to the page, for links to job reports. */
export function renderZoo(jobs: readonly JobResult[], linkBase: string): string {
  const title = `regroup model zoo: ${jobs.length} job${jobs.length === 1 ? '' : 's'}`;
  const charts = [
    chartOf(jobs, 'chart-zoo-macs', 'MACs kept (fraction of dense)', (j) => j.macsRatio),
    chartOf(jobs, 'chart-zoo-latency', 'measured latency (ms)', (j) => j.latencyAfterMs),
  ].filter((c): c is ScatterChartSpec => c !== undefined);
  const header = `<header><h1>${escapeHtml(title)}</h1></header>`;
  return htmlPage(title, header, [...charts.map(chartSection), jobTable(jobs, linkBase)], charts);
}

/** Top-1 (or, without accuracy, the MACs kept) against `x`, one series per model × method. */
function chartOf(
  jobs: readonly JobResult[],
  id: string,
  xTitle: string,
  x: (job: JobResult) => number | undefined,
): ScatterChartSpec | undefined {
  const withAccuracy = jobs.some((j) => j.top1After !== undefined);
  const series = new Map<string, PointDataset>();
  for (const job of jobs) {
    const xValue = x(job);
    const yValue = withAccuracy ? job.top1After : job.macsRatio;
    if (xValue === undefined || yValue === undefined) continue;
    const key = `${path.basename(job.job.model)} · ${methodLabel(job.job)}`;
    const set = series.get(key) ?? { label: key, color: PALETTE[series.size % PALETTE.length]!, data: [] };
    series.set(key, set);
    set.data.push({ x: xValue, y: 100 * yValue, label: targetText(job) });
  }
  if (series.size === 0) return undefined;
  const datasets = [...series.values()];
  for (const d of datasets) d.data.sort((a, b) => a.x - b.x);
  const yTitle = withAccuracy ? 'top-1 accuracy (%)' : 'MACs kept (%) — no job measured accuracy';
  return {
    type: 'scatter',
    id,
    title: `${withAccuracy ? 'Top-1' : 'MACs kept'} against ${xTitle}`,
    xTitle,
    yTitle,
    datasets,
    summary: datasets
      .map(
        (d) =>
          `${d.label}: ${d.data.map((p) => `${p.label} → ${p.y.toFixed(2)}% at ${p.x.toPrecision(3)}`).join('; ')}.`,
      )
      .join(' '),
  };
}

function chartSection(chart: ScatterChartSpec): string {
  return [
    '<section class="chart">',
    `<h2>${escapeHtml(chart.title)}</h2>`,
    `<div class="chart-box"><canvas id="${escapeHtml(chart.id)}" role="img" aria-label="${escapeHtml(chart.summary)}"></canvas></div>`,
    `<p class="summary">${escapeHtml(chart.summary)}</p>`,
    '</section>',
  ].join('\n');
}

function jobTable(jobs: readonly JobResult[], linkBase: string): string {
  const pct = (v: number | undefined) => (v === undefined ? '—' : `${(100 * v).toFixed(2)}%`);
  const ms = (v: number | undefined) => (v === undefined ? '—' : v.toFixed(2));
  const rows = jobs.map((j) => {
    const href = [linkBase, j.id, 'report.html'].filter((p) => p !== '').join('/');
    const cells = [
      path.basename(j.job.model),
      methodLabel(j.job),
      targetText(j),
      j.job.data ?? '—',
      pct(j.macsRatio),
      `${pct(j.top1Before)} → ${pct(j.top1After)}`,
      `${ms(j.latencyBeforeMs)} → ${ms(j.latencyAfterMs)}`,
      `${j.seconds.toFixed(1)} s`,
    ].map((c) => `<td>${escapeHtml(c)}</td>`);
    return `<tr>${cells.join('')}<td><a href="${escapeHtml(href)}">${escapeHtml(j.id)}</a></td></tr>`;
  });
  const head = ['model', 'method', 'target', 'data', 'MACs kept', 'top-1', 'latency (ms)', 'time', 'job report'];
  return [
    '<section>',
    '<h2>Jobs</h2>',
    `<table><thead><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead>`,
    `<tbody>${rows.join('\n')}</tbody></table>`,
    '</section>',
  ].join('\n');
}

function targetText(job: JobResult): string {
  const t = job.job.target;
  return 'keepMacs' in t ? `keep-macs ${t.keepMacs}` : `keep-latency ${t.keepLatency}@${t.latencyBatch}`;
}
