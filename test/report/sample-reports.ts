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
    version: 1,
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
    version: 1,
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
