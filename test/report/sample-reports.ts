/** Hand-written reports for the report tests: a prune report with layers, and a three-model sweep. */
import type { Report, ReportLayer } from '../../cli/report/schema.js';

export const EVIL_NAME = '<script>alert(1)</script>';

/** Output channels before → after and MACs per layer of a small ResNet-like model. */
const LAYERS: [name: string, op: string, before: number, after: number, macsBefore: number][] = [
  ['/stem/conv', 'Conv', 16, 16, 7_077_888],
  ['/layer1/layer1.0/conv1/Conv', 'Conv', 16, 8, 37_748_736],
  ['/layer1/layer1.0/conv2/Conv', 'Conv', 16, 16, 37_748_736],
  ['/layer2/layer2.0/conv1/Conv', 'Conv', 32, 16, 18_874_368],
  ['/layer2/layer2.0/conv2/Conv', 'Conv', 32, 32, 37_748_736],
  ['/layer2/layer2.0/downsample/Conv', 'Conv', 32, 32, 2_097_152],
  [EVIL_NAME, 'Conv', 64, 24, 18_874_368],
  ['/layer3/layer3.0/conv2/Conv & "shortcut"', 'Conv', 64, 64, 37_748_736],
  ['/layer3/layer3.0/downsample/Conv', 'Conv', 64, 64, 2_097_152],
  ['/fc/Gemm', 'Gemm', 10, 10, 640],
];

function layers(): ReportLayer[] {
  return LAYERS.map(([name, op, before, after, macsBefore]) => {
    // Pruning output channels scales this layer's MACs and weights by after/before.
    const keep = after / before;
    const paramsBefore = Math.round(macsBefore / 1024);
    return {
      name,
      op,
      channelsBefore: before,
      channelsAfter: after,
      macsBefore,
      macsAfter: Math.round(macsBefore * keep),
      paramsBefore,
      paramsAfter: Math.round(paramsBefore * keep),
    };
  });
}

/** A complete prune report with every optional section. */
export function pruneReport(): Report {
  const rows = layers();
  const total = (pick: (l: ReportLayer) => number) => rows.reduce((s, l) => s + pick(l), 0);
  return {
    format: 'regroup-report',
    version: 2,
    kind: 'prune',
    createdAt: '2025-03-01T10:20:30.000Z',
    model: {
      file: 'out/resnet-tiny "pruned" & <small>.onnx',
      macs: total((l) => l.macsAfter),
      params: total((l) => l.paramsAfter),
      bytes: 412_331,
    },
    baseline: {
      file: 'fixtures/models/resnet-tiny.onnx',
      macs: total((l) => l.macsBefore!),
      params: total((l) => l.paramsBefore!),
    },
    agreement: {
      top1Agreement: 0.9375,
      cosine: 0.998712,
      maxAbsDiff: 0.0421,
      samples: 64,
      reference: 'fixtures/models/resnet-tiny.onnx',
    },
    latency: [
      { ep: 'cpu', batch: 1, medianMs: 1.234, p90Ms: 1.5 },
      { ep: 'cpu', batch: 8, medianMs: 6.5, p90Ms: 7.25 },
    ],
    layers: rows,
    totals: {
      macsBefore: total((l) => l.macsBefore!),
      macsAfter: total((l) => l.macsAfter),
      paramsBefore: total((l) => l.paramsBefore!),
      paramsAfter: total((l) => l.paramsAfter),
    },
    notes: ['kept 50% of MACs with --keep-macs 0.5', 'note with <b>markup</b> & "quotes"'],
    extra: { criterion: 'l1', roundTo: 4 },
  };
}

/** An evaluation report for one point of a sweep: `top1` on CIFAR-10 at `macs`. */
export function evalReport(file: string, macs: number, top1: number): Report {
  // Parameters shrink with MACs, as they do when every layer keeps the same share of channels.
  const params = Math.round((269_722 * macs) / 40_551_936);
  return {
    format: 'regroup-report',
    version: 2,
    kind: 'eval',
    createdAt: '2025-03-02T08:00:00Z',
    model: { file, macs, params, bytes: Math.round(macs / 40) },
    baseline: { file: 'models/resnet20.onnx', macs: 40_551_936, params: 269_722 },
    accuracy: { top1, top5: Math.min(1, top1 + 0.07), samples: 10_000, dataset: 'cifar10-test' },
    latency: [{ ep: 'cpu', batch: 1, medianMs: macs / 2e7, p90Ms: macs / 1.8e7 }],
    totals: { macsAfter: macs, paramsAfter: params },
    notes: [],
  };
}

/** Three models of a pruning sweep, largest first. */
export function sweepReports(): Report[] {
  return [
    evalReport('models/resnet20.onnx', 40_551_936, 0.9116),
    evalReport('out/resnet20-keep50.onnx', 20_275_968, 0.8943),
    evalReport('out/resnet20-keep25.onnx', 10_137_984, 0.8512),
  ];
}

/**
 * A compress report with both sides measured and two grouped layers: `a`, 4 filters × 6
 * inputs in two overlapping clusters (filters 0, 2 read inputs 0–2; filters 1, 3 read 2–5:
 * 2·3 + 2·4 = 14 connected pairs), lowered per group; `b`, 256 × 256 in two block-diagonal
 * groups (2 · 128² connected pairs, drawn as 128 × 128 cells of 2 × 2: 2 · 64² = 8192
 * filled), left masked dense.
 */
export function compressSample(): Report {
  const layerA: ReportLayer = {
    name: '/a/Conv',
    op: 'Conv',
    macsBefore: 24_000,
    macsAfter: 14_000,
    paramsBefore: 216,
    paramsAfter: 126,
    lowering: { form: 'per-group', reason: 'overlapping clusters' },
    connectivity: {
      filters: 4,
      inputs: 6,
      // Inputs 0, 1, 2 → bits 0-2 of the first digit (7); inputs 2..5 → 4 + 8, then 1 + 2.
      clusters: [
        { filters: [0, 2], inputs: '70' },
        { filters: [1, 3], inputs: 'c3' },
      ],
    },
  };
  const half = (from: number) => `${'0'.repeat(from / 4)}${'f'.repeat(32)}${'0'.repeat((128 - from) / 4)}`;
  const layerB: ReportLayer = {
    name: '/b/Conv',
    op: 'Conv',
    macsBefore: 1_000_000,
    macsAfter: 1_000_000,
    paramsBefore: 589_824,
    paramsAfter: 589_824,
    lowering: { form: 'masked-dense', reason: 'no grouped form ran faster' },
    connectivity: {
      filters: 256,
      inputs: 256,
      clusters: [
        { filters: Array.from({ length: 128 }, (_, f) => f), inputs: half(0) },
        { filters: Array.from({ length: 128 }, (_, f) => 128 + f), inputs: half(128) },
      ],
    },
  };
  return {
    format: 'regroup-report',
    version: 2,
    kind: 'compress',
    createdAt: '2025-04-01T09:00:00Z',
    model: { file: 'out/tiny-sg.onnx', macs: 1_014_000, params: 589_950, bytes: 2_400_000 },
    baseline: {
      file: 'models/tiny.onnx',
      macs: 1_024_000,
      params: 590_040,
      accuracy: { top1: 0.9125, top5: 0.995, samples: 400, dataset: 'test split' },
      latency: [
        { ep: 'cpu', batch: 1, medianMs: 2.5, p90Ms: 2.75 },
        { ep: 'cpu', batch: 8, medianMs: 12, p90Ms: 13 },
      ],
    },
    accuracy: { top1: 0.9075, top5: 0.9925, samples: 400, dataset: 'test split' },
    latency: [
      { ep: 'cpu', batch: 1, medianMs: 2, p90Ms: 2.25 },
      { ep: 'cpu', batch: 8, medianMs: 10, p90Ms: 11.5 },
    ],
    layers: [layerA, layerB],
    totals: {
      macsBefore: 1_024_000,
      macsAfter: 1_014_000,
      paramsBefore: 590_040,
      paramsAfter: 589_950,
      structureMacsRatio: 0.5,
    },
    notes: [],
    extra: { method: 'sg-cnn', keepMacs: 0.5 },
  };
}

/**
 * The same run as a version-1 file (regroup before report version 2): the dense side, the
 * structure's MACs and the lowering kept under `extra`, the form in the op, no connectivity.
 */
export function compressSampleV1(): Record<string, unknown> {
  const v2 = compressSample();
  const { accuracy, latency, ...baseline } = v2.baseline!;
  const { structureMacsRatio, ...totals } = v2.totals;
  return {
    ...v2,
    version: 1,
    baseline,
    totals,
    layers: v2.layers!.map(({ lowering, connectivity: _, ...layer }) => ({
      ...layer,
      op: `${layer.op} → ${lowering!.form}`,
    })),
    extra: {
      ...v2.extra,
      denseLatency: latency,
      denseAccuracy: { top1: accuracy!.top1, top5: accuracy!.top5, samples: accuracy!.samples },
      lowering: v2.layers!.map((l) => ({
        node: l.name,
        form: l.lowering!.form,
        reason: l.lowering!.reason,
        groups: l.lowering!.groups ?? null,
      })),
      structuredMacsRatio: structureMacsRatio,
    },
  };
}
