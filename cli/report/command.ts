/**
 * `regroup report FILE.json... -o report.html` as a library call, and the writer the other
 * commands use for `--report FILE.json`. Both validate first, so a bad report never reaches
 * disk and a bad input names its file and field.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RegroupError } from '../../compiler/errors.js';
import { writeAtomic } from '../../compiler/onnx/io.js';
import { planCharts } from './charts.js';
import { renderHtml, type HtmlOptions } from './html.js';
import { validateReport, type Report } from './schema.js';

export interface ReportCommandSummary {
  output: string;
  bytes: number;
  reports: { file: string; kind: Report['kind']; model: string }[];
  /** Number of charts drawn on the page. */
  charts: number;
}

/** Read and validate report files, then write one HTML page for them atomically. */
export function renderReportCommand(
  files: readonly string[],
  htmlOut: string,
  options: HtmlOptions = {},
): ReportCommandSummary {
  if (files.length === 0)
    throw new RegroupError('usage', 'no report files given; pass one or more FILE.json written with --report');
  const target = path.resolve(htmlOut);
  const clash = files.find((f) => path.resolve(f) === target);
  if (clash)
    throw new RegroupError(
      'usage',
      `refusing to overwrite the input ${clash} with the HTML page; choose another output path`,
    );
  const reports = files.map(readReport);
  const html = Buffer.from(renderHtml(reports, options), 'utf8');
  writeAtomic(htmlOut, [html]);
  return {
    output: htmlOut,
    bytes: html.byteLength,
    reports: reports.map((r, i) => ({ file: files[i]!, kind: r.kind, model: r.model.file })),
    charts: planCharts(reports).length,
  };
}

/** Read one report file; errors name the file. */
export function readReport(file: string): Report {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EISDIR'
          ? 'is a folder, not a report file'
          : `cannot be read (${code})`;
    throw new RegroupError('io', `report ${file} ${why}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new RegroupError(
      'usage',
      `${file} is not valid JSON (${(err as Error).message}); pass a file written with --report`,
    );
  }
  return validateReport(json, file);
}

/** Validate a report and write it as pretty JSON, atomically; for `--report FILE.json`. */
export function writeReport(file: string, report: Report): void {
  const checked = validateReport(report, file);
  writeAtomic(file, [Buffer.from(`${reportJson(checked)}\n`, 'utf8')]);
}

/**
 * Pretty JSON with arrays of plain numbers (a connectivity's filter lists) on one line. Only
 * arrays that JSON.stringify spread over lines are joined, and a string literal never holds a
 * raw line break, so no string changes.
 */
export function reportJson(report: Report): string {
  return JSON.stringify(report, null, 2).replace(
    /\[\n\s*(-?[\d.eE+-]+(?:,\n\s*-?[\d.eE+-]+)*)\n\s*\]/g,
    (_all, list: string) => `[${list.split(/,\n\s*/).join(', ')}]`,
  );
}
