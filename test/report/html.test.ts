/**
 * The HTML report: a self-contained page (no URLs), report text escaped, the data present;
 * then the real thing in headless Chromium: no console or page errors, no requests beyond
 * the file itself, and every chart sized and drawn with the expected data.
 *
 * The browser half needs /usr/bin/chromium (or $CHROMIUM_PATH). Without it the half is
 * skipped with a printed reason, except under CI=true where it fails: run
 * scripts/install-browser.sh as root. Set REGROUP_SCREENSHOTS=DIR to keep the screenshots.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  COLOR_AFTER,
  COLOR_BEFORE,
  planCharts,
  type BarChartSpec,
  type ScatterChartSpec,
} from '../../cli/report/charts.js';
import { renderReportCommand, writeReport } from '../../cli/report/command.js';
import {
  clusterInputs,
  connectivityCells,
  connectivitySvg,
  encodeConnectivity,
} from '../../cli/report/connectivity.js';
import { escapeHtml, renderHtml } from '../../cli/report/html.js';
import { validateReport } from '../../cli/report/schema.js';
import {
  compressSample,
  compressSampleV1,
  EVIL_NAME,
  evalReport,
  pruneReport,
  sweepReports,
} from './sample-reports.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-report-html-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/**
 * Each connectivity picture on a page: its size in cells, its paths, and the cells they fill,
 * read as the browser draws them (a stroke `h{w}` of width `sw` covers w × sw cells).
 */
function pictures(html: string): { cols: number; rows: number; paths: string[]; filled: number }[] {
  const svgs = [...html.matchAll(/<svg class="connectivity" viewBox="0 0 (\d+) (\d+)"[^>]*>(.*?)<\/svg>/g)];
  return svgs.map(([, cols, rows, body]) => {
    const paths = [...body!.matchAll(/<path class="conn-filled" stroke-width="(\d+)" d="([^"]*)"\/>/g)];
    let filled = 0;
    for (const [, width, d] of paths) {
      const commands = [...d!.matchAll(/([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?/g)];
      // The path is only moves and horizontal strokes.
      expect(commands.map((c) => c[0]).join('')).toBe(d);
      for (const [, op, length] of commands) if (op === 'h') filled += Number(length) * Number(width);
    }
    return { cols: Number(cols), rows: Number(rows), paths: paths.map((p) => `${p[1]}:${p[2]}`), filled };
  });
}

describe('renderHtml', () => {
  const single = renderHtml([pruneReport()]);
  const sweep = renderHtml(sweepReports(), { title: 'ResNet-20 sweep <CIFAR-10>' });
  const compress = renderHtml([compressSample()]);

  it('references nothing outside the page', () => {
    for (const html of [single, sweep, compress]) {
      const markup = html.replace(/(<script[^>]*>)[\s\S]*?<\/script>/g, '$1</script>');
      expect(markup.match(/<script[^>]*>/g)).toEqual([
        '<script type="application/json" id="regroup-charts">',
        '<script>',
        '<script>',
      ]);
      expect(markup.match(/<link\b|\b(src|href|srcset|action)\s*=|url\(|@import|@font-face|https?:|\/\//gi)).toBeNull();
      // In the scripts, URLs appear only in the licence comments of Chart.js and its colour library.
      const scripts = html.slice(html.indexOf('<script')).replace(/\/\*![\s\S]*?\*\//g, '');
      expect(scripts.match(/https?:\/\/[^\s"'`)]*/g)).toBeNull();
      expect(html).toContain('Chart.js v4');
    }
  });

  it('escapes text taken from reports', () => {
    expect(single).not.toContain(EVIL_NAME);
    expect(single).toContain(escapeHtml(EVIL_NAME));
    expect(escapeHtml(EVIL_NAME)).toBe('&#60;script&#62;alert(1)&#60;/script&#62;');
    expect(single).not.toContain('<b>markup</b>');
    expect(single).toContain(escapeHtml('out/resnet-tiny "pruned" & <small>.onnx'));
    expect(single).not.toContain('<small>');
    // Chart data sits in a JSON script element that no report string can close.
    const json = /<script type="application\/json" id="regroup-charts">([^<]*)<\/script>/.exec(single)?.[1];
    expect(json).toBeDefined();
    expect(json).toContain('\\u003cscript\\u003ealert(1)\\u003c/script\\u003e');
    expect(JSON.parse(json!)).toEqual(planCharts([pruneReport()]));
    expect(sweep).toContain('<title>ResNet-20 sweep &#60;CIFAR-10&#62;</title>');
  });

  it('shows the totals, quality, latency, layers and notes of one report', () => {
    expect(single).toContain(
      '<title>regroup prune report: resnet-tiny &#34;pruned&#34; &#38; &#60;small&#62;.onnx</title>',
    );
    for (const text of [
      '200M',
      '160M',
      '79.9% (1.25× fewer)',
      'Top-1 agreement',
      '93.75%',
      '0.998712',
      '1.234',
      '7.250',
      '/layer2/layer2.0/downsample/Conv',
      '64 → 24',
      'kept 50% of MACs',
      '10 layers',
    ]) {
      expect(single).toContain(text);
    }
    expect(single.match(/<canvas /g)).toHaveLength(2);
  });

  it('shows a compress report before and after side by side, structure vs executed MACs', () => {
    for (const text of [
      '<th class="num">before</th><th class="num">after</th><th class="num">change</th>',
      '<tr><td>top-1 accuracy</td><td class="num">91.25%</td><td class="num">90.75%</td><td class="num">−0.50 pt</td></tr>',
      '<td class="num">2.500 ms (p90 2.750)</td><td class="num">2.000 ms (p90 2.250)</td><td class="num">speed-up 1.25×</td>',
      '<td class="num">12.000 ms (p90 13.000)</td><td class="num">10.000 ms (p90 11.500)</td><td class="num">speed-up 1.20×</td>',
      '<tr><td>MACs of the structure</td><td class="num">1.02M</td><td class="num">512k</td><td class="num">50.0%</td></tr>',
      '<tr><td>MACs executed</td><td class="num">1.02M</td><td class="num">1.01M</td><td class="num">99.0% (1.01× fewer)</td></tr>',
      'The structure needs 50.0% of the dense MACs; the written model executes 99.0%.',
      '1 of 2 grouped layers stay masked dense: parameter sparsity only, no latency saving.',
      '<th>lowered as</th>',
      '<td>per-group</td>',
      '<td>masked-dense</td>',
    ])
      expect(compress).toContain(text);
  });

  it('draws one connectivity picture per grouped layer, filters in cluster order, big layers in blocks', () => {
    const [a, b] = pictures(compress);
    expect(pictures(compress)).toHaveLength(2);
    // Filters 0, 2 (rows 0–1) read inputs 0–2; filters 1, 3 (rows 2–3) read inputs 2–5.
    expect(a).toEqual({ cols: 6, rows: 4, paths: ['2:M0 1h3M2 3h4'], filled: 14 });
    // 256 × 256 in 2 × 2 blocks: two diagonal squares of 64 × 64 cells.
    expect(b).toEqual({ cols: 128, rows: 128, paths: ['64:M0 32h64M64 96h64'], filled: 8192 });
    expect(compress).toContain('4 filters × 6 inputs, 2 clusters, 58.3% connected; per-group');
    expect(compress).toContain(
      '256 filters × 256 inputs, 2 clusters, 50.0% connected, drawn in blocks of 2 filters × 2 inputs; masked-dense',
    );
    expect(pictures(single)).toEqual([]);
    expect(single).not.toContain('<h2>Connectivity</h2>');
  });

  it('still renders a version-1 compress report, with its before side read from extra', () => {
    const old = renderHtml([validateReport(compressSampleV1(), 'old.json')]);
    expect(old).toContain('<td class="num">2.500 ms (p90 2.750)</td><td class="num">2.000 ms (p90 2.250)</td>');
    expect(old).toContain('1 of 2 grouped layers stay masked dense');
    expect(pictures(old)).toEqual([]);
    const { extra: _, ...bare } = compressSampleV1();
    expect(renderHtml([validateReport(bare, 'bare.json')])).toContain('<td>top-1 accuracy</td><td class="num"></td>');
  });

  it('compares several reports in one table and one chart', () => {
    for (const text of [
      'Comparison',
      '#2 resnet20-keep50.onnx',
      '91.16%',
      '89.43%',
      '85.12%',
      '40.6M',
      '>50.0%<',
      'cifar10-test',
    ])
      expect(sweep).toContain(text);
    expect(sweep.match(/<canvas /g)).toHaveLength(1);
  });

  it('gives the same bytes for the same reports', () => {
    expect(renderHtml([pruneReport()])).toBe(single);
  });
});

describe('connectivity pictures', () => {
  const ints = (...values: number[]) => Int32Array.from(values);

  it('encodes input subsets as hex masks that decode to the same indices', () => {
    const conn = {
      outChannels: 3,
      inChannels: 10,
      clusters: [
        { filters: ints(0, 2), inputs: ints(0, 3, 4, 9) },
        { filters: ints(1), inputs: ints(1, 2, 5, 6, 7, 8) },
      ],
    };
    const encoded = encodeConnectivity(conn);
    expect(encoded).toEqual({
      filters: 3,
      inputs: 10,
      clusters: [
        { filters: [0, 2], inputs: '912' },
        { filters: [1], inputs: '6e1' },
      ],
    });
    expect(encoded.clusters.map(clusterInputs)).toEqual([
      [0, 3, 4, 9],
      [1, 2, 5, 6, 7, 8],
    ]);
  });

  it('strokes each run of filled cells, with relative moves across the gaps', () => {
    const conn = encodeConnectivity({
      outChannels: 3,
      inChannels: 8,
      clusters: [{ filters: ints(0, 1, 2), inputs: ints(0, 1, 4, 6, 7) }],
    });
    const [picture] = pictures(connectivitySvg(connectivityCells(conn), 'x', escapeHtml));
    expect(picture).toEqual({ cols: 8, rows: 3, paths: ['3:M0 1.5h2m2 0h1m1 0h2'], filled: 15 });
  });

  it('ORs blocks of a layer wider than the picture, rounding the last block up', () => {
    // 130 filters in 2-filter rows (65 rows); filter 129 alone in the last cluster reads input 0 only.
    const conn = encodeConnectivity({
      outChannels: 130,
      inChannels: 4,
      clusters: [
        { filters: Int32Array.from({ length: 129 }, (_, f) => f), inputs: ints(3) },
        { filters: ints(129), inputs: ints(0) },
      ],
    });
    const cells = connectivityCells(conn, 65);
    expect([cells.rows, cells.cols, cells.filtersPerRow, cells.inputsPerCol]).toEqual([65, 4, 2, 1]);
    // Row 64 holds filters 128 (first cluster) and 129 (second): inputs 3 and 0.
    expect([...cells.filled.subarray(64 * 4)]).toEqual([1, 0, 0, 1]);
    expect(cells.filled.reduce((a, b) => a + b, 0)).toBe(64 + 2);
  });
});

describe('planCharts', () => {
  it('draws channels and MACs per layer, before and after, for one report', () => {
    const [channels, macs] = planCharts([pruneReport()]) as BarChartSpec[];
    expect(channels!.labels).toHaveLength(10);
    expect(channels!.datasets.map((d) => [d.label, d.color, d.data.length])).toEqual([
      ['before', COLOR_BEFORE, 10],
      ['after', COLOR_AFTER, 10],
    ]);
    expect(channels!.datasets[1]!.data[6]).toBe(24);
    expect(channels!.summary).toMatch(
      /10 layers; 3 of them lost channels\. Output channels in all: 346 → 282 .*Deepest cut: .*\(64 → 24\)/,
    );
    expect(macs!.summary).toMatch(
      /^10 layers; MACs in all: 200M → 160M \(79\.9% kept\)\. Most MACs saved in \/layer1\/layer1\.0\/conv1\/Conv \(37\.7M → 18\.9M\)\./,
    );
  });

  it('draws no chart for one report without layers', () => {
    expect(planCharts([evalReport('m.onnx', 1e6, 0.5)])).toEqual([]);
  });

  it('plots top-1 accuracy against MACs, falling back to agreement per report', () => {
    const [sweep] = planCharts(sweepReports()) as ScatterChartSpec[];
    expect(sweep!.datasets).toHaveLength(1);
    expect(sweep!.datasets[0]!.data.map((p) => [p.label, p.x, +p.y.toFixed(2)])).toEqual([
      ['resnet20-keep25.onnx', 10_137_984, 85.12],
      ['resnet20-keep50.onnx', 20_275_968, 89.43],
      ['resnet20.onnx', 40_551_936, 91.16],
    ]);
    const mixed = planCharts([
      ...sweepReports().slice(0, 2),
      pruneReport(),
      { ...pruneReport(), agreement: undefined },
    ]) as ScatterChartSpec[];
    expect(mixed[0]!.datasets.map((d) => [d.label, d.data.length])).toEqual([
      ['top-1 accuracy', 2],
      ['top-1 agreement with reference', 1],
    ]);
    expect(mixed[0]!.summary).toMatch(/Not plotted \(no accuracy or agreement\): #4 resnet-tiny/);
  });
});

describe('renderReportCommand', () => {
  it('writes the page atomically and summarises it', () => {
    const files = sweepReports().map((_r, i) => path.join(tmp, `sweep-${i}.json`));
    sweepReports().forEach((r, i) => writeReport(files[i]!, r));
    const out = path.join(tmp, 'sweep.html');
    const summary = renderReportCommand(files, out);
    expect(summary).toMatchObject({
      output: out,
      charts: 1,
      reports: [{ kind: 'eval', model: 'models/resnet20.onnx' }, {}, {}],
    });
    expect(fs.statSync(out).size).toBe(summary.bytes);
    expect(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('names the bad file and writes nothing', () => {
    const good = path.join(tmp, 'good.json');
    const bad = path.join(tmp, 'bad.json');
    writeReport(good, pruneReport());
    fs.writeFileSync(bad, JSON.stringify({ ...pruneReport(), model: { file: 'x.onnx', macs: 1, params: 1 } }));
    const out = path.join(tmp, 'never.html');
    expect(() => renderReportCommand([good, bad], out)).toThrow(
      `${bad}: field 'model.bytes' must be a non-negative integer`,
    );
    expect(fs.existsSync(out)).toBe(false);
    expect(() => renderReportCommand([good], good)).toThrow(/refusing to overwrite the input/);
    expect(() => renderReportCommand([], out)).toThrow(/no report files given/);
  });
});

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
const onCi = process.env.CI === 'true';
if (!haveChromium && !onCi)
  console.warn(
    `[regroup tests] skipping the headless-browser report test: ${CHROMIUM} not found; run scripts/install-browser.sh as root`,
  );

/** What the page reports about one canvas and its chart. */
interface CanvasState {
  id: string;
  width: number;
  height: number;
  boxHeight: number;
  type: string | undefined;
  datasetLengths: number[];
  /** Pixels in the 'after' colour, and pixels painted at all. */
  afterPixels: number;
  paintedPixels: number;
}

describe.skipIf(!haveChromium && !onCi)('the page in headless Chromium', () => {
  let browser: Browser | undefined;
  const shots = process.env.REGROUP_SCREENSHOTS ?? path.join(tmp, 'screenshots');

  // Under CI without Chromium each test fails (a failing hook would only mark them skipped).
  beforeAll(async () => {
    if (!haveChromium) return;
    fs.mkdirSync(shots, { recursive: true });
    const profile = fs.mkdtempSync(path.join(tmp, 'chromium-profile-'));
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
        `--user-data-dir=${profile}`,
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** Open a rendered page from disk, recording console errors, page errors and any request for another URL. */
  async function open(name: string, html: string): Promise<{ page: Page; problems: string[] }> {
    if (!browser)
      throw new Error(
        `${CHROMIUM} not found; CI needs Chromium for the report test: run scripts/install-browser.sh (as root) first`,
      );
    const file = path.join(tmp, name);
    fs.writeFileSync(file, html);
    const url = pathToFileURL(file).href;
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('console', (msg) => void (msg.type() === 'error' && problems.push(`console: ${msg.text()}`)));
    page.on('pageerror', (err) => void problems.push(`page error: ${(err as Error).message}`));
    await page.setRequestInterception(true);
    page.on('request', (request) => {
      if (request.url() === url) return void request.continue();
      problems.push(`request: ${request.url()}`);
      void request.abort();
    });
    await page.setViewport({ width: 1200, height: 900 });
    await page.goto(url, { waitUntil: 'load' });
    return { page, problems };
  }

  function canvases(page: Page, afterColor: string): Promise<CanvasState[]> {
    return page.evaluate((hex) => {
      const rgb = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
      return [...document.querySelectorAll('canvas')].map((canvas) => {
        const chart = (window as any).Chart.getChart(canvas);
        const pixels = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
        let afterPixels = 0;
        let paintedPixels = 0;
        for (let p = 0; p < pixels.length; p += 4) {
          if (pixels[p + 3]! > 0) paintedPixels++;
          if (pixels[p] === rgb[0] && pixels[p + 1] === rgb[1] && pixels[p + 2] === rgb[2] && pixels[p + 3] === 255)
            afterPixels++;
        }
        return {
          id: canvas.id,
          width: canvas.width,
          height: canvas.height,
          boxHeight: canvas.parentElement!.getBoundingClientRect().height,
          type: chart?.config.type,
          datasetLengths: chart ? chart.data.datasets.map((d: { data: unknown[] }) => d.data.length) : [],
          afterPixels,
          paintedPixels,
        };
      });
    }, afterColor);
  }

  /**
   * On paper (print media, A4's printable width) each chart keeps its aspect ratio, stays
   * inside its box and above its summary; and Chromium prints the page to PDF.
   */
  async function expectPrintable(page: Page, screenshot: string): Promise<void> {
    await page.emulateMediaType('print');
    await page.setViewport({ width: 700, height: 900 });
    const boxes = await page.$$eval('canvas', (list) =>
      list.map((canvas) => {
        const rect = canvas.getBoundingClientRect();
        const box = canvas.parentElement!.getBoundingClientRect();
        const summary = canvas.parentElement!.nextElementSibling!.getBoundingClientRect();
        return {
          width: rect.width,
          aspect: rect.width / rect.height,
          bitmapAspect: canvas.width / canvas.height,
          inside: rect.left >= box.left - 0.5 && rect.right <= box.right + 0.5 && rect.bottom <= box.bottom + 0.5,
          gap: summary.top - rect.bottom,
        };
      }),
    );
    for (const b of boxes) {
      expect(b.width).toBeGreaterThan(300);
      expect(b.width).toBeLessThanOrEqual(700);
      expect(Math.abs(b.aspect / b.bitmapAspect - 1)).toBeLessThan(0.02);
      expect(b.inside).toBe(true);
      expect(b.gap).toBeGreaterThanOrEqual(0);
    }
    await page.screenshot({ path: path.join(shots, screenshot), fullPage: true });
    const pdf = await page.pdf({ format: 'A4' });
    expect(Buffer.from(pdf.subarray(0, 5)).toString('latin1')).toBe('%PDF-');
  }

  it('draws channels and MACs per layer for one prune report', async () => {
    const { page, problems } = await open('single.html', renderHtml([pruneReport()]));
    const states = await canvases(page, COLOR_AFTER);
    expect(problems).toEqual([]);
    expect(states.map((s) => [s.id, s.type, s.datasetLengths])).toEqual([
      ['chart-channels', 'bar', [10, 10]],
      ['chart-macs', 'bar', [10, 10]],
    ]);
    for (const s of states) {
      expect(s.boxHeight).toBe(360);
      expect(s.width).toBeGreaterThan(600);
      expect(s.height).toBeGreaterThanOrEqual(360);
      expect(s.afterPixels).toBeGreaterThan(500);
      expect(s.paintedPixels).toBeGreaterThan(s.afterPixels);
    }
    expect(await page.$eval('h1', (h) => h.textContent)).toBe(
      'regroup prune report: resnet-tiny "pruned" & <small>.onnx',
    );
    expect(
      await page.$$eval(
        'script',
        (scripts) => scripts.filter((s) => s.textContent?.includes('alert(1)') && s.type !== 'application/json').length,
      ),
    ).toBe(0);
    await page.screenshot({ path: path.join(shots, 'single.png'), fullPage: true });
    await expectPrintable(page, 'single-print.png');
    expect(problems).toEqual([]);
    await page.close();
  });

  it('shows the connectivity pictures of a compress report', async () => {
    const { page, problems } = await open('compress.html', renderHtml([compressSample()]));
    const boxes = await page.$$eval('svg.connectivity', (svgs) =>
      svgs.map((svg) => {
        const rect = svg.getBoundingClientRect();
        return [Math.round(rect.width), Math.round(rect.height), svg.querySelector('path')!.getTotalLength() > 0];
      }),
    );
    expect(boxes).toEqual([
      [160, 107, true],
      [160, 160, true],
    ]);
    await page.screenshot({ path: path.join(shots, 'compress.png'), fullPage: true });
    expect(problems).toEqual([]);
    await page.close();
  });

  it('draws top-1 against MACs for three reports', async () => {
    const { page, problems } = await open('sweep.html', renderHtml(sweepReports()));
    const states = await canvases(page, COLOR_AFTER);
    expect(problems).toEqual([]);
    expect(states.map((s) => [s.id, s.type, s.datasetLengths])).toEqual([['chart-tradeoff', 'scatter', [3]]]);
    expect(states[0]!.afterPixels).toBeGreaterThan(100);
    expect(states[0]!.height).toBeGreaterThanOrEqual(360);
    const points = await page.evaluate(() => {
      const chart = (window as any).Chart.getChart('chart-tradeoff');
      return chart.getDatasetMeta(0).data.map((p: { x: number; y: number }) => [p.x, p.y]) as [number, number][];
    });
    // Sorted by MACs and rising in accuracy: left to right, bottom to top (canvas y grows down).
    expect(points.map(([x]) => x)).toEqual([...points.map(([x]) => x)].sort((a, b) => a - b));
    expect(points.map(([, y]) => y)).toEqual([...points.map(([, y]) => y)].sort((a, b) => b - a));
    await page.screenshot({ path: path.join(shots, 'sweep.png'), fullPage: true });
    await expectPrintable(page, 'sweep-print.png');
    expect(problems).toEqual([]);
    await page.close();
  });
});
