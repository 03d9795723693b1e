/**
 * The zoo page: one series per model × method on both charts (top-1 against MACs kept and
 * against measured latency), a row and a link per job, text escaped, MACs kept plotted when no
 * job measured accuracy; and in headless Chromium (when installed) both charts draw with no
 * console error and no request leaving the page.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import puppeteer from 'puppeteer-core';
import { afterAll, describe, expect, it } from 'vitest';
import type { JobResult } from '../../cli/batch/job-child.js';
import type { JobSpec } from '../../cli/batch/spec.js';
import { renderZoo } from '../../cli/batch/zoo-report.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-zoo-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function result(id: string, model: string, method: string, keepMacs: number, top1?: number): JobResult {
  const job: JobSpec = {
    id,
    model: `/zoo/${model}`,
    modelSha256: '0'.repeat(64),
    method,
    target: { keepMacs },
    data: top1 === undefined ? null : 'cifar/',
    finetune: { scheme: 'none', epochs: 1 },
    options: { seed: 0, latency: true },
    results: '/zoo/results',
    version: '0.1.0',
  };
  return {
    id,
    description: `${model} ${method}`,
    job,
    seconds: 12.5,
    host: 'h',
    macsRatio: keepMacs + 0.01,
    top1Before: top1 === undefined ? undefined : 0.9,
    top1After: top1,
    latencyBatch: 1,
    latencyBeforeMs: 2,
    latencyAfterMs: 2 * keepMacs,
    modelSha256: '1'.repeat(64),
  };
}

/** The chart specs embedded in the page. */
function charts(html: string): { id: string; datasets: { label: string; data: { x: number; y: number }[] }[] }[] {
  const json = /<script type="application\/json" id="regroup-charts">(.*?)<\/script>/s.exec(html)![1]!;
  return JSON.parse(json);
}

const jobs = [
  result('a1', 'resnet20.onnx', 'l1', 0.5, 0.8),
  result('a2', 'resnet20.onnx', 'l1', 0.7, 0.85),
  result('b1', 'resnet20.onnx', 'wsp', 0.5, 0.83),
  result('c1', 'm<b>.onnx', 'l1', 0.5, 0.7),
];

describe('zoo report', () => {
  it('draws one series per model and method against MACs and latency, and links every job', () => {
    const html = renderZoo(jobs, 'results');
    const specs = charts(html);
    expect(specs.map((c) => c.id)).toEqual(['chart-zoo-macs', 'chart-zoo-latency']);
    for (const chart of specs) {
      expect(chart.datasets.map((d) => d.label)).toEqual([
        'resnet20.onnx · l1',
        'resnet20.onnx · wsp',
        'm<b>.onnx · l1',
      ]);
      expect(chart.datasets[0]!.data.map((p) => p.y)).toEqual([80, 85]);
    }
    expect(specs[0]!.datasets[0]!.data.map((p) => p.x)).toEqual([0.51, 0.71]);
    expect(specs[1]!.datasets[0]!.data.map((p) => p.x)).toEqual([1, 1.4]);
    for (const job of jobs) expect(html).toContain(`<a href="results/${job.id}/report.html">${job.id}</a>`);
    expect(html).toContain('m&#60;b&#62;.onnx');
    expect(html).not.toContain('<b>');
  });

  it('plots the MACs kept when no job measured accuracy', () => {
    const html = renderZoo([result('d1', 'x.onnx', 'l1', 0.5), result('d2', 'x.onnx', 'l1', 0.7)], '');
    const [macs] = charts(html);
    expect(macs!.datasets[0]!.data.map((p) => Math.round(p.y))).toEqual([51, 71]);
    expect(html).toContain('no job measured accuracy');
    expect(html).toContain('<a href="d1/report.html">');
  });

  const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  it.skipIf(!fs.existsSync(chromium))('renders both charts in headless Chromium without errors', async () => {
    const file = path.join(tmp, 'zoo.html');
    fs.writeFileSync(file, renderZoo(jobs, 'results'));
    const browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
    });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on('console', (msg) => void (msg.type() === 'error' && problems.push(msg.text())));
      page.on('pageerror', (err) => void problems.push((err as Error).message));
      await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
      const drawn = await page.evaluate(() =>
        [...document.querySelectorAll('canvas')].map((c) => {
          const chart = (window as unknown as { Chart: { getChart(c: HTMLCanvasElement): unknown } }).Chart.getChart(c);
          return { id: c.id, drawn: chart !== undefined, width: c.width };
        }),
      );
      expect(problems).toEqual([]);
      expect(drawn.map((d) => d.id)).toEqual(['chart-zoo-macs', 'chart-zoo-latency']);
      for (const d of drawn) expect(d.drawn && d.width > 0).toBe(true);
    } finally {
      await browser.close();
    }
  });
});
