/** `regroup report` without --html: a report as text, before and after side by side. */
import { describe, expect, it } from 'vitest';
import { validateReport } from '../../cli/report/schema.js';
import { renderText } from '../../cli/report/text.js';
import { compressSample, compressSampleV1, pruneReport } from './sample-reports.js';

/** The text's table row for `metric`, split into its cells. */
function rowOf(text: string, metric: string): string[] {
  const line = text.split('\n').find((l) => l.startsWith(metric));
  expect(line, `no row '${metric}' in:\n${text}`).toBeDefined();
  return line!.slice(metric.length).trim().split(/ {2,}/);
}

describe('renderText', () => {
  const text = renderText(compressSample());

  it('shows a compress report before and after side by side', () => {
    expect(text.split('\n')[0]).toBe(
      'compress report: out/tiny-sg.onnx from models/tiny.onnx (written 2025-04-01T09:00:00Z)',
    );
    expect(rowOf(text, 'top-1 accuracy')).toEqual(['91.25%', '90.75%', '−0.50 pt']);
    expect(rowOf(text, 'top-5 accuracy')).toEqual(['99.50%', '99.25%', '−0.25 pt']);
    expect(rowOf(text, 'latency, batch 1 (cpu)')).toEqual([
      '2.500 ms (p90 2.750)',
      '2.000 ms (p90 2.250)',
      'speed-up 1.25×',
    ]);
    expect(rowOf(text, 'latency, batch 8 (cpu)')).toEqual([
      '12.000 ms (p90 13.000)',
      '10.000 ms (p90 11.500)',
      'speed-up 1.20×',
    ]);
    expect(rowOf(text, 'MACs of the structure')).toEqual(['1.02M', '512k', '50.0%']);
    expect(rowOf(text, 'MACs executed')).toEqual(['1.02M', '1.01M', '99.0% (1.01× fewer)']);
    expect(rowOf(text, 'parameters')).toEqual(['590k', '590k', '100.0%']);
  });

  it('says which grouped layers stay masked dense, and lists each layer with its lowering', () => {
    expect(text).toContain('The structure needs 50.0% of the dense MACs; the written model executes 99.0%.');
    expect(text).toContain('1 of 2 grouped layers stay masked dense: parameter sparsity only, no latency saving.');
    expect(rowOf(text, '/a/Conv')).toEqual(['Conv', 'per-group', '58.3%', '24.0k → 14.0k', '216 → 126']);
    expect(rowOf(text, '/b/Conv')).toEqual(['Conv', 'masked-dense', '50.0%', '1.00M → 1.00M', '590k → 590k']);
  });

  it('renders a version-1 compress report and a prune report', () => {
    const old = renderText(validateReport(compressSampleV1(), 'old.json'));
    expect(rowOf(old, 'latency, batch 1 (cpu)')).toEqual([
      '2.500 ms (p90 2.750)',
      '2.000 ms (p90 2.250)',
      'speed-up 1.25×',
    ]);
    expect(rowOf(old, '/a/Conv')).toEqual(['Conv', 'per-group', '24.0k → 14.0k', '216 → 126']);
    const prune = renderText(pruneReport());
    expect(rowOf(prune, 'MACs')).toEqual(['200M', '160M', '79.9% (1.25× fewer)']);
    expect(rowOf(prune, 'latency, batch 1 (cpu)')).toEqual(['1.234 ms (p90 1.500)']);
    expect(prune).toContain('agreement with fixtures/models/resnet-tiny.onnx: top-1 93.75%');
    expect(prune).not.toContain('masked dense');
  });
});
