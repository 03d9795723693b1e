/**
 * `regroup report`'s page: one self-contained HTML file (inline CSS, inline Chart.js, no
 * URLs) showing the model(s), before and after side by side (sides.ts: accuracy, latency,
 * MACs of the structure and executed, parameters), agreement, the charts chosen in charts.ts
 * with a text summary under each, the layers with their lowering, and for each grouped layer
 * an inline SVG of its connectivity (connectivity.ts). Every string taken from a report goes
 * through `escapeHtml` or, for chart data, `scriptJson`. The same reports always give the
 * same bytes (the page shows the reports' own dates, never the time it was rendered).
 */
import { RegroupError } from '../../compiler/errors.js';
import { human } from '../format.js';
import { pct, planCharts, reportLabels, type ChartSpec } from './charts.js';
import { connectedFraction, connectivityCells, connectivitySvg } from './connectivity.js';
import { chartJsBundle, PAGE_CSS, PAGE_SCRIPT, scriptJson } from './page-assets.js';
import type { Report, ReportLayer, ReportTraining } from './schema.js';
import { loweringText, sideBySide, structureSummary } from './sides.js';

export interface HtmlOptions {
  /** Page title; by default named after the report kind and model. */
  title?: string;
}

/** Layer tables up to this many rows start unfolded (and so print). */
const OPEN_LAYER_ROWS = 30;

/** Render one or more validated reports as a single self-contained HTML page. */
export function renderHtml(reports: readonly Report[], options: HtmlOptions = {}): string {
  if (reports.length === 0) throw new RegroupError('usage', 'no reports to render; pass at least one report file');
  const title = options.title ?? defaultTitle(reports);
  const labels = reportLabels(reports);
  const charts = planCharts(reports);
  const sections =
    reports.length === 1
      ? [
          reportSection(reports[0]!, 'Totals', false),
          trainingSection(reports[0]!.training),
          ...charts.map(chartSection),
          layerSection(reports[0]!.layers),
          connectivitySection(reports[0]!.layers),
          notesSection(reports[0]!.notes),
        ]
      : [
          comparisonSection(reports, labels),
          ...charts.map(chartSection),
          ...reports.map((r, i) => reportSection(r, `#${i + 1} ${labels[i]}`, true)),
        ];
  return htmlPage(title, pageHeader(title, reports, labels), sections, charts);
}

/** A self-contained page: head, header, the non-empty sections, the charts' data and Chart.js inline. */
export function htmlPage(title: string, header: string, sections: readonly string[], charts: unknown): string {
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${PAGE_CSS}</style>`,
    '</head>',
    '<body>',
    header,
    '<main>',
    ...sections.filter((s) => s !== ''),
    '</main>',
    `<script type="application/json" id="regroup-charts">${scriptJson(charts)}</script>`,
    `<script>\n${chartJsBundle()}\n</script>`,
    `<script>${PAGE_SCRIPT}</script>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/** Escape text for HTML element content and double- or single-quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function defaultTitle(reports: readonly Report[]): string {
  if (reports.length > 1) return `regroup report: ${reports.length} models`;
  const [label] = reportLabels(reports);
  return `regroup ${reports[0]!.kind} report: ${label}`;
}

function pageHeader(title: string, reports: readonly Report[], labels: readonly string[]): string {
  const items = reports.map((r, i) => {
    const baseline = r.baseline ? `, from <code>${escapeHtml(r.baseline.file)}</code>` : '';
    const name = reports.length > 1 ? `#${i + 1} ${escapeHtml(labels[i]!)}: ` : '';
    return `<li>${name}<code>${escapeHtml(r.model.file)}</code> (${r.kind}${baseline}; ${human(r.model.macs)} MACs, ${human(r.model.params)} parameters, ${bytesText(r.model.bytes)}) <span class="meta">written ${escapeHtml(r.createdAt)}</span></li>`;
  });
  const count = reports.length === 1 ? '1 model' : `${reports.length} models`;
  return `<header>\n<h1>${escapeHtml(title)}</h1>\n<p class="meta">regroup report, ${count}</p>\n<ul>\n${items.join('\n')}\n</ul>\n</header>`;
}

/** One report's tables: before and after, agreement, and optionally its notes. */
function reportSection(report: Report, heading: string, withNotes: boolean): string {
  const notes = withNotes && report.notes.length > 0 ? `<h3>Notes</h3>\n${notesList(report.notes)}` : '';
  return [
    `<section>`,
    `<h2>${escapeHtml(heading)}</h2>`,
    sidesTable(report),
    agreementTable(report),
    notes,
    `</section>`,
  ]
    .filter((s) => s !== '')
    .join('\n');
}

/** Before and after side by side, then what was measured on and the structure vs execution sentences. */
function sidesTable(report: Report): string {
  const rows = sideBySide(report, { p90: true }).map((r) =>
    row([escapeHtml(r.metric), ...[r.before, r.after, r.change].map((text) => cell(escapeHtml(text), 'num'))]),
  );
  const facts = [
    ...(report.accuracy ? [`Accuracy on ${report.accuracy.dataset}, ${report.accuracy.samples} samples.`] : []),
    ...structureSummary(report),
  ];
  const summary = facts.length === 0 ? '' : `\n<p class="summary">${escapeHtml(facts.join(' '))}</p>`;
  return `${table(['', 'before', 'after', 'change'], rows, ['', 'num', 'num', 'num'])}${summary}`;
}

function agreementTable({ agreement }: Report): string {
  if (!agreement) return '';
  const against = `against <code>${escapeHtml(agreement.reference)}</code>, ${agreement.samples} samples`;
  const rows = [
    row(['Top-1 agreement', cell(percent2(agreement.top1Agreement), 'num'), against]),
    row(['Output cosine', cell(agreement.cosine.toFixed(6), 'num'), against]),
    row(['Max abs difference', cell(agreement.maxAbsDiff.toPrecision(3), 'num'), against]),
  ];
  return `<h3>Agreement</h3>\n${table(['', 'value', 'measured'], rows, ['', 'num', ''])}`;
}

function notesList(notes: readonly string[]): string {
  return `<ul class="notes">\n${notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('\n')}\n</ul>`;
}

function notesSection(notes: readonly string[]): string {
  return notes.length === 0 ? '' : `<section>\n<h2>Notes</h2>\n${notesList(notes)}\n</section>`;
}

/** A column of the comparison table: shown only when some report has a value for it. */
interface Column {
  header: string;
  numeric: boolean;
  value: (report: Report, index: number) => string | undefined;
}

function comparisonColumns(labels: readonly string[]): Column[] {
  return [
    { header: 'model', numeric: false, value: (_r, i) => `#${i + 1} ${escapeHtml(labels[i]!)}` },
    { header: 'kind', numeric: false, value: (r) => r.kind },
    { header: 'MACs', numeric: true, value: (r) => human(r.model.macs) },
    {
      header: 'MACs kept',
      numeric: true,
      value: (r) => (r.baseline && r.baseline.macs > 0 ? pct(r.model.macs / r.baseline.macs) : undefined),
    },
    { header: 'parameters', numeric: true, value: (r) => human(r.model.params) },
    { header: 'size', numeric: true, value: (r) => bytesText(r.model.bytes) },
    { header: 'top-1', numeric: true, value: (r) => r.accuracy && percent2(r.accuracy.top1) },
    { header: 'top-5', numeric: true, value: (r) => r.accuracy && percent2(r.accuracy.top5) },
    { header: 'agreement', numeric: true, value: (r) => r.agreement && percent2(r.agreement.top1Agreement) },
    {
      header: 'median ms (EP, batch)',
      numeric: true,
      value: (r) =>
        r.latency?.[0] && `${r.latency[0].medianMs.toFixed(3)} (${escapeHtml(r.latency[0].ep)}, ${r.latency[0].batch})`,
    },
  ];
}

function comparisonSection(reports: readonly Report[], labels: readonly string[]): string {
  const columns = comparisonColumns(labels).filter((c) => reports.some((r, i) => c.value(r, i) !== undefined));
  const rows = reports.map((r, i) => row(columns.map((c) => cell(c.value(r, i) ?? '', c.numeric ? 'num' : 'name'))));
  const body = table(
    columns.map((c) => c.header),
    rows,
    columns.map((c) => (c.numeric ? 'num' : '')),
  );
  return `<section>\n<h2>Comparison</h2>\n${body}\n</section>`;
}

function chartSection(chart: ChartSpec): string {
  const label = `${chart.title}. ${chart.summary}`;
  return [
    `<section class="chart">`,
    `<h2>${escapeHtml(chart.title)}</h2>`,
    `<div class="chart-box"><canvas id="${escapeHtml(chart.id)}" role="img" aria-label="${escapeHtml(label)}"></canvas></div>`,
    `<p class="summary">${escapeHtml(chart.summary)}</p>`,
    `</section>`,
  ].join('\n');
}

/** How the model was trained, and one row per epoch. */
function trainingSection(training: ReportTraining | undefined): string {
  if (!training) return '';
  const facts = [
    `${training.mode === 'finetune' ? 'Fine-tuned' : 'Trained'} for ${training.epochs} epoch${training.epochs === 1 ? '' : 's'} (${training.steps} updates of batch ${training.batchSize} over ${training.trainSamples} samples)`,
    `optimizer ${training.optimizer}; schedule ${training.schedule}; loss ${training.loss}`,
    `${training.imagesPerSecond.toFixed(1)} training images/s`,
  ];
  const rows = training.history.map((e) =>
    row([
      cell(String(e.epoch), 'num'),
      cell(e.trainLoss.toFixed(4), 'num'),
      cell(percent2(e.trainAccuracy), 'num'),
      cell(e.testAccuracy === undefined ? '' : percent2(e.testAccuracy), 'num'),
      cell(e.lr.toPrecision(3), 'num'),
      cell(e.seconds.toFixed(1), 'num'),
    ]),
  );
  const body = table(['epoch', 'train loss', 'train top-1', 'test top-1', 'last lr', 'seconds'], rows, [
    'num',
    'num',
    'num',
    'num',
    'num',
    'num',
  ]);
  return `<section>\n<h2>Training</h2>\n<p class="summary">${facts.map(escapeHtml).join('. ')}.</p>\n${body}\n</section>`;
}

function layerSection(layers: readonly ReportLayer[] | undefined): string {
  if (!layers || layers.length === 0) return '';
  const lowered = layers.some((l) => l.lowering !== undefined);
  const rows = layers.map((l) =>
    row(
      [
        `<code>${escapeHtml(l.name)}</code>`,
        escapeHtml(l.op),
        ...(lowered ? [escapeHtml(loweringText(l))] : []),
        pair(l.channelsBefore, l.channelsAfter, String),
        pair(l.macsBefore, l.macsAfter, human),
        pair(l.paramsBefore, l.paramsAfter, human),
      ].map((c, col) => (col >= (lowered ? 3 : 2) ? cell(c, 'num') : c)),
    ),
  );
  const open = layers.length <= OPEN_LAYER_ROWS ? ' open' : '';
  const header = ['layer', 'op', ...(lowered ? ['lowered as'] : []), 'channels', 'MACs', 'parameters'];
  const body = table(
    header,
    rows,
    header.map((_h, col) => (col >= (lowered ? 3 : 2) ? 'num' : '')),
  );
  return `<section>\n<h2>Layers</h2>\n<details${open}>\n<summary>${layers.length} layers</summary>\n${body}\n</details>\n</section>`;
}

/** One small picture per grouped layer: filters (rows, in cluster order) × input channels (columns). */
function connectivitySection(layers: readonly ReportLayer[] | undefined): string {
  const grouped = (layers ?? []).filter((l) => l.connectivity !== undefined);
  if (grouped.length === 0) return '';
  const figures = grouped.map((l) => {
    const conn = l.connectivity!;
    const cells = connectivityCells(conn);
    const blocks =
      cells.filtersPerRow * cells.inputsPerCol > 1
        ? `, drawn in blocks of ${cells.filtersPerRow} filters × ${cells.inputsPerCol} inputs`
        : '';
    const facts = `${conn.filters} filters × ${conn.inputs} inputs, ${conn.clusters.length} clusters, ${pct(connectedFraction(conn))} connected`;
    const form = l.lowering ? `; ${loweringText(l)}` : '';
    const svg = connectivitySvg(cells, `${l.name}: ${facts}`, escapeHtml);
    return `<figure class="conn">${svg}<figcaption><code>${escapeHtml(l.name)}</code><br>${escapeHtml(facts + blocks + form)}</figcaption></figure>`;
  });
  const intro =
    'Rows are filters, grouped by cluster; columns are input channels; a filled cell means the filter reads that input. ' +
    'Layers wider than 128 channels are drawn in blocks (a block is filled when any filter of it reads any input of it).';
  return `<section>\n<h2>Connectivity</h2>\n<p class="summary">${escapeHtml(intro)}</p>\n<div class="conn-grid">\n${figures.join('\n')}\n</div>\n</section>`;
}

/** "64 → 16", or just the after value when there is no before. */
function pair(before: number | undefined, after: number | undefined, format: (n: number) => string): string {
  if (after === undefined) return '';
  return before === undefined ? format(after) : `${format(before)} → ${format(after)}`;
}

/** A cell already rendered as HTML, with a class for its <td>. */
interface Cell {
  html: string;
  className: string;
}

function cell(html: string, className: string): Cell {
  return { html, className };
}

/** A table row; plain strings must already be escaped HTML. */
function row(cells: readonly (string | Cell)[]): string {
  const tds = cells.map((c) => (typeof c === 'string' ? `<td>${c}</td>` : `<td class="${c.className}">${c.html}</td>`));
  return `<tr>${tds.join('')}</tr>`;
}

function table(header: readonly string[], rows: readonly string[], classes: readonly string[]): string {
  const ths = header.map((h, col) =>
    classes[col] ? `<th class="${classes[col]}">${escapeHtml(h)}</th>` : `<th>${escapeHtml(h)}</th>`,
  );
  return `<div class="scroll"><table>\n<thead><tr>${ths.join('')}</tr></thead>\n<tbody>\n${rows.join('\n')}\n</tbody>\n</table></div>`;
}

function percent2(fraction: number): string {
  return `${(100 * fraction).toFixed(2)}%`;
}

function bytesText(bytes: number): string {
  return `${human(bytes)}B`;
}
