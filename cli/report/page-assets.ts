/**
 * The fixed parts of the report page: its style sheet, the script that draws the charts from
 * their JSON specs, and the Chart.js UMD bundle read from node_modules so the page needs no
 * network. Nothing here depends on a report; report data reaches the page only as escaped
 * HTML text or as JSON inside a non-executable script element.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { RegroupError } from '../../compiler/errors.js';

export const PAGE_CSS = `
:root { color-scheme: light; --fg: #1f2933; --muted: #52606d; --rule: #d9e2ec; --head: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { padding: 20px 32px 12px; border-bottom: 1px solid var(--rule); background: var(--head); }
header ul { margin: 6px 0 0; padding-left: 20px; }
main { max-width: 1100px; margin: 0 auto; padding: 8px 32px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta, .summary { color: var(--muted); }
.meta { font-size: 13px; margin: 0; }
.summary { font-size: 14px; margin: 6px 0 0; max-width: 80ch; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 6px 0 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 12px; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; }
.num { text-align: right; white-space: nowrap; }
.name { white-space: nowrap; }
.scroll { overflow-x: auto; }
.chart { margin-top: 8px; }
.chart-box { position: relative; width: 100%; height: 360px; }
.chart-box canvas { max-width: 100%; }
ul.notes { padding-left: 20px; }
details summary { cursor: pointer; color: var(--muted); }
.conn-grid { display: flex; flex-wrap: wrap; gap: 16px; margin-top: 8px; }
figure.conn { margin: 0; width: 180px; font-size: 12px; color: var(--muted); }
figure.conn figcaption { margin-top: 4px; }
svg.connectivity { display: block; border: 1px solid var(--rule); }
svg.connectivity .conn-empty { fill: #f5f7fa; }
svg.connectivity .conn-filled { fill: none; stroke: #2563eb; }
@page { margin: 14mm; }
@media print {
  body { font-size: 10.5pt; }
  header { background: none; padding: 0 0 8px; }
  main { max-width: none; padding: 0; }
  th { background: none; }
  th, td { padding: 3px 6px; }
  .scroll { overflow: visible; }
  .name { white-space: normal; }
  /* Chart.js may not redraw at the paper's width before printing; scaling the canvas
     with its aspect ratio kept can never overlap the text or distort the chart. */
  .chart-box { height: auto; }
  .chart-box canvas { width: 100% !important; height: auto !important; }
  .chart, table, tr, figure.conn { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
}
`;

/**
 * Runs in the page: draws every chart spec found in #regroup-charts with Chart.js, labels
 * scatter points with their model, and redraws at the paper's width when printing.
 */
export const PAGE_SCRIPT = `
(function () {
  'use strict';
  var specs = JSON.parse(document.getElementById('regroup-charts').textContent);
  function human(n) {
    var abs = Math.abs(n), units = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
    for (var i = 0; i < units.length; i++) if (abs >= units[i][0]) return +(n / units[i][0]).toPrecision(3) + units[i][1];
    return Number.isInteger(n) ? String(n) : (+n.toPrecision(3)).toString();
  }
  // Layer names differ at their ends (/layer1/layer1.0/conv1/Conv), so keep the end.
  function shortLabel(text) { return text.length > 22 ? '\\u2026' + text.slice(-21) : text; }
  var pointLabels = {
    id: 'regroupPointLabels',
    afterDatasetsDraw: function (chart) {
      var ctx = chart.ctx, area = chart.chartArea;
      ctx.save();
      ctx.font = '12px system-ui, sans-serif';
      ctx.fillStyle = '#1f2933';
      ctx.textBaseline = 'bottom';
      chart.data.datasets.forEach(function (dataset, datasetIndex) {
        var meta = chart.getDatasetMeta(datasetIndex);
        if (!chart.isDatasetVisible(datasetIndex)) return;
        meta.data.forEach(function (point, index) {
          var right = point.x > area.left + area.width * 0.7;
          ctx.textAlign = right ? 'right' : 'left';
          ctx.fillText(dataset.data[index].label, point.x + (right ? -8 : 8), point.y - 6);
        });
      });
      ctx.restore();
    }
  };
  function axisTitle(text) { return { display: true, text: text }; }
  function barConfig(spec) {
    return {
      type: 'bar',
      data: { labels: spec.labels, datasets: spec.datasets.map(function (d) {
        return { label: d.label, data: d.data, backgroundColor: d.color, borderColor: d.color, borderWidth: 0 };
      }) },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: 'index', intersect: false },
        plugins: { tooltip: { callbacks: {
          title: function (items) { return spec.labels[items[0].dataIndex]; },
          label: function (item) { return item.dataset.label + ': ' + human(item.parsed.y); }
        } } },
        scales: {
          x: { title: axisTitle(spec.xTitle), ticks: { autoSkip: true, maxRotation: 60,
            callback: function (value) { return shortLabel(this.getLabelForValue(value)); } } },
          y: { beginAtZero: true, title: axisTitle(spec.yTitle), ticks: { callback: function (v) { return human(v); } } }
        }
      }
    };
  }
  function scatterConfig(spec) {
    return {
      type: 'scatter',
      data: { datasets: spec.datasets.map(function (d) {
        return { label: d.label, data: d.data, backgroundColor: d.color, borderColor: d.color,
          pointRadius: 5, pointHoverRadius: 7, showLine: true, borderWidth: 1.5 };
      }) },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        layout: { padding: { top: 12, right: 16 } },
        plugins: { tooltip: { callbacks: { label: function (item) {
          return item.raw.label + ': ' + item.parsed.y.toFixed(2) + '% at ' + human(item.parsed.x) + ' MACs';
        } } } },
        scales: {
          x: { type: 'linear', grace: '8%', title: axisTitle(spec.xTitle), ticks: { callback: function (v) { return human(v); } } },
          y: { grace: '8%', title: axisTitle(spec.yTitle), ticks: { callback: function (v) { return +v.toFixed(2) + '%'; } } }
        }
      },
      plugins: [pointLabels]
    };
  }
  function lineConfig(spec) {
    var percent = spec.yFormat === 'percent';
    return {
      type: 'line',
      data: { datasets: spec.datasets.map(function (d) {
        return { label: d.label, data: d.data, backgroundColor: d.color, borderColor: d.color,
          pointRadius: d.data.length > 40 ? 0 : 3, borderWidth: 1.5, tension: 0 };
      }) },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false, parsing: true,
        interaction: { mode: 'nearest', intersect: false },
        plugins: { tooltip: { callbacks: { label: function (item) {
          return item.dataset.label + ': ' + (percent ? item.parsed.y.toFixed(2) + '%' : item.parsed.y.toPrecision(4));
        } } } },
        scales: {
          x: { type: 'linear', title: axisTitle(spec.xTitle), ticks: { stepSize: spec.xStep, callback: function (v) { return human(v); } } },
          y: { grace: '5%', title: axisTitle(spec.yTitle), ticks: { callback: function (v) { return percent ? +v.toFixed(2) + '%' : +v.toPrecision(3); } } }
        }
      }
    };
  }
  function configFor(spec) {
    if (spec.type === 'bar') return barConfig(spec);
    if (spec.type === 'line') return lineConfig(spec);
    return scatterConfig(spec);
  }
  specs.forEach(function (spec) {
    new Chart(document.getElementById(spec.id), configFor(spec));
  });
  function resizeAll() { Object.values(Chart.instances).forEach(function (chart) { chart.resize(); }); }
  window.addEventListener('beforeprint', resizeAll);
  window.addEventListener('afterprint', resizeAll);
  document.documentElement.setAttribute('data-charts', String(specs.length));
})();
`;

let chartJsSource: string | undefined;

/** The Chart.js UMD bundle, safe to place inside a <script> element. */
export function chartJsBundle(): string {
  chartJsSource ??= readChartJs();
  return chartJsSource;
}

function readChartJs(): string {
  let file: string;
  try {
    // The package exports only its ESM/CJS entries; the UMD bundle sits beside them.
    file = path.join(path.dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js');
  } catch (err) {
    throw new RegroupError(
      'io',
      `cannot find chart.js (${(err as Error).message}); reinstall regroup's dependencies with npm ci`,
    );
  }
  if (!fs.existsSync(file))
    throw new RegroupError('io', `chart.js has no UMD bundle at ${file}; reinstall regroup's dependencies with npm ci`);
  return inlineScriptText(fs.readFileSync(file, 'utf8'));
}

/** Drop the source-map comment (the page has no map beside it) and close no <script> early. */
export function inlineScriptText(code: string): string {
  return code.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n').replace(/<\/(script)/gi, '<\\/$1');
}

/** JSON for a `<script type="application/json">` element: nothing in it can end the element. */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}
