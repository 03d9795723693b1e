/**
 * The JSON report every command writes with `--report FILE.json`, and its validator.
 *
 * A report describes one model after one command: its cost (`model`, `totals`), optionally
 * the model it came from (`baseline`), measured quality (`accuracy` on labelled data,
 * `agreement` with a reference model), `latency`, and a per-layer cost table. Fractions
 * (`top1`, `top5`, `top1Agreement`) are in 0..1; counts are non-negative integers; every
 * number is finite. Training commands add `training` (per-epoch history and the loss curve).
 * `regroup report` reads these files back, so they are user input:
 * `validateReport` checks every field and names the file and the first bad field.
 *
 * Version 2 (compress) adds the dense side of the comparison (`baseline.accuracy`,
 * `baseline.latency`), the structure's MACs beside the executed ones
 * (`totals.structureMacsRatio`), and per grouped layer its lowering and its connectivity
 * (which inputs each filter reads; `ReportConnectivity`). Version-1 files still read: a
 * version-1 compress report kept those figures under `extra`, and reading moves them to
 * their typed fields (the report then reads back as version 2). Commands that read images add
 * `preprocessing`: the resolved preprocessing as a `--preprocess` JSON spec.
 */
import { RegroupError } from '../../compiler/errors.js';
import { parsePreprocessing, type PreprocessingJson } from '../../runtime/data/preprocess-spec.js';

export const REPORT_FORMAT = 'regroup-report';
export const REPORT_VERSION = 2;
/** Versions `validateReport` reads; writers always write REPORT_VERSION. */
export const READABLE_VERSIONS = [1, 2] as const;
export type ReportVersion = (typeof READABLE_VERSIONS)[number];

export type ReportKind = 'eval' | 'prune' | 'compress' | 'train' | 'finetune';
export const REPORT_KINDS: readonly ReportKind[] = ['eval', 'prune', 'compress', 'train', 'finetune'];

export interface ReportModel {
  file: string;
  macs: number;
  params: number;
  /** Size of the model file(s) on disk. */
  bytes: number;
}

export interface ReportBaseline {
  file: string;
  macs: number;
  params: number;
  /** The baseline's accuracy on the same samples as the report's `accuracy` (compress). */
  accuracy?: ReportAccuracy;
  /** The baseline's latency, measured alongside the model's `latency` (compress). */
  latency?: ReportLatency[];
}

export interface ReportAccuracy {
  /** Fraction of samples whose top-1 prediction is the label, 0..1. */
  top1: number;
  top5: number;
  samples: number;
  dataset: string;
}

export interface ReportAgreement {
  /** Fraction of samples where the model and the reference agree on the top-1 class, 0..1. */
  top1Agreement: number;
  cosine: number;
  maxAbsDiff: number;
  samples: number;
  /** The reference model's file. */
  reference: string;
}

export interface ReportLatency {
  /** Execution provider, e.g. `cpu`, `cuda`. */
  ep: string;
  batch: number;
  medianMs: number;
  p90Ms: number;
}

/** ONNX forms a grouped layer lowers to (passes/lower-emit.ts `Form`). */
export type ReportLoweringForm = 'grouped' | 'duplicated' | 'padded' | 'per-group' | 'masked-dense';
export const REPORT_LOWERING_FORMS: readonly ReportLoweringForm[] = [
  'grouped',
  'duplicated',
  'padded',
  'per-group',
  'masked-dense',
];

/** How a grouped layer was written: masked-dense keeps the dense conv (zeros, no saving). */
export interface ReportLowering {
  form: ReportLoweringForm;
  /** The `group` of the grouped and padded forms' Conv. */
  groups?: number;
  reason: string;
}

/** Filters that share one input subset (compiler/analysis/connectivity.ts `Cluster`). */
export interface ReportCluster {
  /** The cluster's filters (output channels), ascending. */
  filters: number[];
  /**
   * The inputs the cluster reads, as a little-endian hex bitmask: character k holds inputs
   * 4k..4k+3, input 4k+b in bit b (value 2^b); ceil(inputs / 4) characters, 0-9 a-f.
   */
  inputs: string;
}

/**
 * Which input channels each filter of a layer reads: every filter in exactly one cluster.
 * Its size is the filter count plus clusters × inputs / 4 characters, never filters × inputs.
 */
export interface ReportConnectivity {
  filters: number;
  inputs: number;
  clusters: ReportCluster[];
}

export interface ReportLayer {
  name: string;
  op: string;
  channelsBefore?: number;
  channelsAfter?: number;
  macsBefore?: number;
  macsAfter: number;
  paramsBefore?: number;
  paramsAfter: number;
  /** How a grouped layer was lowered (compress). */
  lowering?: ReportLowering;
  /** The learned connectivity of a grouped layer (compress). */
  connectivity?: ReportConnectivity;
}

export interface ReportTotals {
  macsBefore?: number;
  /** MACs the written model executes (as lowered: a masked-dense layer costs its dense MACs). */
  macsAfter: number;
  paramsBefore?: number;
  paramsAfter: number;
  /**
   * MACs of the method's structure (connectivity or pruned shapes) over macsBefore, before
   * lowering chose forms: what the structure would cost if every grouped layer ran grouped.
   */
  structureMacsRatio?: number;
}

/** One epoch of a training run; accuracies are fractions 0..1. */
export interface ReportEpoch {
  epoch: number;
  trainLoss: number;
  trainAccuracy: number;
  testAccuracy?: number;
  lr: number;
  seconds: number;
}

/** The mean training loss over a window of updates ending at `step`. */
export interface ReportLossPoint {
  step: number;
  loss: number;
}

/** How the model was trained or fine-tuned (`regroup train`, `regroup finetune`). */
export interface ReportTraining {
  mode: 'train' | 'finetune';
  /** Epochs completed. */
  epochs: number;
  /** Optimizer updates done. */
  steps: number;
  batchSize: number;
  trainSamples: number;
  optimizer: string;
  schedule: string;
  loss: string;
  /** Training throughput (updates, data loading and augmentation; evaluation excluded). */
  imagesPerSecond: number;
  history: ReportEpoch[];
  lossCurve: ReportLossPoint[];
}

export interface Report {
  format: typeof REPORT_FORMAT;
  version: ReportVersion;
  kind: ReportKind;
  /** ISO 8601 time the report was written. */
  createdAt: string;
  model: ReportModel;
  baseline?: ReportBaseline;
  accuracy?: ReportAccuracy;
  agreement?: ReportAgreement;
  latency?: ReportLatency[];
  layers?: ReportLayer[];
  totals: ReportTotals;
  notes: string[];
  training?: ReportTraining;
  /** The preprocessing the data went through, in full, as a `--preprocess` JSON spec. */
  preprocessing?: PreprocessingJson;
  extra?: Record<string, unknown>;
}

type Fields = Record<string, unknown>;
/** What a number must be besides finite. */
type NumberRule = 'nonNegative' | 'count' | 'fraction' | 'cosine' | 'finite';

const RULE_TEXT: Record<NumberRule, string> = {
  nonNegative: 'a finite number >= 0',
  count: 'a non-negative integer',
  fraction: 'a fraction between 0 and 1',
  cosine: 'a number between -1 and 1',
  finite: 'a finite number',
};

/**
 * Check that `json` (a parsed report file) is a version-1 regroup report and return it typed.
 * Throws RegroupError('usage') naming `file` and the first bad field.
 */
export function validateReport(json: unknown, file: string): Report {
  const r = new FieldReader(file);
  const top = r.object(json, '');
  if (top.format !== REPORT_FORMAT)
    r.fail('format', `must be '${REPORT_FORMAT}' (is this a regroup report?)`, top.format);
  if (!READABLE_VERSIONS.includes(top.version as ReportVersion)) {
    const newer = typeof top.version === 'number' && top.version > REPORT_VERSION;
    r.fail(
      'version',
      newer
        ? `is ${top.version}, written by a newer regroup; this one reads versions ${READABLE_VERSIONS.join(' and ')}`
        : `must be one of ${READABLE_VERSIONS.join(', ')}`,
      top.version,
    );
  }
  r.object(json, '', TOP_KEYS);
  const report: Report = {
    format: REPORT_FORMAT,
    version: top.version as ReportVersion,
    kind: r.oneOf(top.kind, 'kind', REPORT_KINDS),
    createdAt: r.timestamp(top.createdAt, 'createdAt'),
    model: readModel(r, top.model),
    totals: { macsAfter: 0, paramsAfter: 0 },
    notes: [],
  };
  if (top.baseline !== undefined) report.baseline = readBaseline(r, top.baseline);
  if (top.accuracy !== undefined) report.accuracy = readAccuracy(r, top.accuracy);
  if (top.agreement !== undefined) report.agreement = readAgreement(r, top.agreement);
  if (top.latency !== undefined)
    report.latency = r.array(top.latency, 'latency').map((v, i) => readLatency(r, v, `latency[${i}]`));
  if (top.layers !== undefined)
    report.layers = r.array(top.layers, 'layers').map((v, i) => readLayer(r, v, `layers[${i}]`));
  report.totals = readTotals(r, top.totals);
  report.notes = r.array(top.notes, 'notes').map((v, i) => r.string(v, `notes[${i}]`, { allowEmpty: true }));
  if (top.training !== undefined) report.training = readTraining(r, top.training);
  if (top.preprocessing !== undefined) report.preprocessing = readPreprocessing(r, top.preprocessing);
  if (top.extra !== undefined) report.extra = r.object(top.extra, 'extra');
  return report.version === 1 && report.kind === 'compress' ? upgradeCompressV1(r, report) : report;
}

/**
 * A version-1 compress report with the figures it kept under `extra` (denseLatency,
 * denseAccuracy, structuredMacsRatio, lowering) moved to their version-2 fields. `extra` was
 * never validated, so a figure that does not read as its typed field stays where it was.
 */
function upgradeCompressV1(r: FieldReader, report: Report): Report {
  const extra = { ...report.extra };
  const lifted = <T>(key: string, read: (value: unknown) => T): T | undefined => {
    if (extra[key] === undefined) return undefined;
    try {
      const value = read(extra[key]);
      delete extra[key];
      return value;
    } catch (err) {
      if (err instanceof RegroupError) return undefined;
      throw err;
    }
  };
  // The dense side moves into `baseline`; without one it stays under extra.
  const dense = report.baseline !== undefined;
  const latency = dense
    ? lifted('denseLatency', (v) =>
        r.array(v, 'extra.denseLatency').map((l, i) => readLatency(r, l, `extra.denseLatency[${i}]`)),
      )
    : undefined;
  const accuracy = dense
    ? lifted('denseAccuracy', (v) =>
        readAccuracy(r, { dataset: report.accuracy?.dataset ?? 'test split', ...r.object(v, 'extra.denseAccuracy') }),
      )
    : undefined;
  const structureMacsRatio = lifted('structuredMacsRatio', (v) =>
    r.number(v, 'extra.structuredMacsRatio', 'nonNegative'),
  );
  const lowering = lifted('lowering', (v) => readV1Lowering(r, v, report.layers ?? []));
  if ([latency, accuracy, structureMacsRatio, lowering].every((x) => x === undefined)) return report;
  const upgraded: Report = { ...report, version: REPORT_VERSION, extra };
  if (latency) upgraded.baseline = { ...upgraded.baseline!, latency };
  if (accuracy) upgraded.baseline = { ...upgraded.baseline!, accuracy };
  if (structureMacsRatio !== undefined) upgraded.totals = { ...report.totals, structureMacsRatio };
  if (lowering) upgraded.layers = lowering;
  return upgraded;
}

/** Version 1's `extra.lowering` ({ node, form, reason, groups }, one per layer, in order) merged into the layers. */
function readV1Lowering(r: FieldReader, value: unknown, layers: readonly ReportLayer[]): ReportLayer[] {
  const entries = r.array(value, 'extra.lowering');
  if (entries.length !== layers.length) r.fail('extra.lowering', 'must have one entry per layer', entries.length);
  return layers.map((layer, i) => {
    const o = r.object(entries[i], `extra.lowering[${i}]`);
    if (o.node !== layer.name) r.fail(`extra.lowering[${i}].node`, `must be '${layer.name}'`, o.node);
    const lowering = readLowering(r, { form: o.form, reason: o.reason, groups: o.groups ?? undefined }, `layers[${i}]`);
    // Version 1 wrote the form into the op ("Conv → grouped").
    return { ...layer, op: layer.op.replace(` → ${lowering.form}`, ''), lowering };
  });
}

const TOP_KEYS = [
  'format',
  'version',
  'kind',
  'createdAt',
  'model',
  'baseline',
  'accuracy',
  'agreement',
  'latency',
  'layers',
  'totals',
  'notes',
  'training',
  'preprocessing',
  'extra',
];

/** A complete preprocessing spec (preprocess-spec.ts checks the values; every field but preset is there). */
function readPreprocessing(r: FieldReader, value: unknown): PreprocessingJson {
  const o = r.object(value, 'preprocessing');
  try {
    parsePreprocessing(o, `${r.file}: field 'preprocessing'`);
  } catch (err) {
    if (err instanceof RegroupError) throw new RegroupError('usage', `${err.message}; fix the file or write it again`);
    throw err;
  }
  for (const key of ['scale', 'mean', 'std', 'resize', 'crop', 'channels', 'layout'])
    if (o[key] === undefined) r.fail(`preprocessing.${key}`, 'must be present', undefined);
  return o as unknown as PreprocessingJson;
}

const TRAINING_KEYS = [
  'mode',
  'epochs',
  'steps',
  'batchSize',
  'trainSamples',
  'optimizer',
  'schedule',
  'loss',
  'imagesPerSecond',
  'history',
  'lossCurve',
];

function readTraining(r: FieldReader, value: unknown): ReportTraining {
  const o = r.object(value, 'training', TRAINING_KEYS);
  return {
    mode: r.oneOf(o.mode, 'training.mode', ['train', 'finetune'] as const),
    epochs: r.number(o.epochs, 'training.epochs', 'count'),
    steps: r.number(o.steps, 'training.steps', 'count'),
    batchSize: r.number(o.batchSize, 'training.batchSize', 'count'),
    trainSamples: r.number(o.trainSamples, 'training.trainSamples', 'count'),
    optimizer: r.string(o.optimizer, 'training.optimizer'),
    schedule: r.string(o.schedule, 'training.schedule'),
    loss: r.string(o.loss, 'training.loss'),
    imagesPerSecond: r.number(o.imagesPerSecond, 'training.imagesPerSecond', 'nonNegative'),
    history: r.array(o.history, 'training.history').map((v, i) => readEpoch(r, v, `training.history[${i}]`)),
    lossCurve: r
      .array(o.lossCurve, 'training.lossCurve')
      .map((v, i) => readLossPoint(r, v, `training.lossCurve[${i}]`)),
  };
}

function readEpoch(r: FieldReader, value: unknown, at: string): ReportEpoch {
  const o = r.object(value, at, ['epoch', 'trainLoss', 'trainAccuracy', 'testAccuracy', 'lr', 'seconds']);
  const epoch: ReportEpoch = {
    epoch: r.number(o.epoch, `${at}.epoch`, 'count'),
    // A distillation loss (KL divergence) may round a hair below zero.
    trainLoss: r.number(o.trainLoss, `${at}.trainLoss`, 'finite'),
    trainAccuracy: r.number(o.trainAccuracy, `${at}.trainAccuracy`, 'fraction'),
    lr: r.number(o.lr, `${at}.lr`, 'nonNegative'),
    seconds: r.number(o.seconds, `${at}.seconds`, 'nonNegative'),
  };
  if (o.testAccuracy !== undefined) epoch.testAccuracy = r.number(o.testAccuracy, `${at}.testAccuracy`, 'fraction');
  return epoch;
}

function readLossPoint(r: FieldReader, value: unknown, at: string): ReportLossPoint {
  const o = r.object(value, at, ['step', 'loss']);
  return { step: r.number(o.step, `${at}.step`, 'count'), loss: r.number(o.loss, `${at}.loss`, 'finite') };
}

function readModel(r: FieldReader, value: unknown): ReportModel {
  const o = r.object(value, 'model', ['file', 'macs', 'params', 'bytes']);
  return {
    file: r.string(o.file, 'model.file'),
    macs: r.number(o.macs, 'model.macs', 'nonNegative'),
    params: r.number(o.params, 'model.params', 'count'),
    bytes: r.number(o.bytes, 'model.bytes', 'count'),
  };
}

function readBaseline(r: FieldReader, value: unknown): ReportBaseline {
  const o = r.object(value, 'baseline', ['file', 'macs', 'params', 'accuracy', 'latency']);
  const baseline: ReportBaseline = {
    file: r.string(o.file, 'baseline.file'),
    macs: r.number(o.macs, 'baseline.macs', 'nonNegative'),
    params: r.number(o.params, 'baseline.params', 'count'),
  };
  if (o.accuracy !== undefined) baseline.accuracy = readAccuracy(r, o.accuracy, 'baseline.accuracy');
  if (o.latency !== undefined)
    baseline.latency = r
      .array(o.latency, 'baseline.latency')
      .map((v, i) => readLatency(r, v, `baseline.latency[${i}]`));
  return baseline;
}

function readAccuracy(r: FieldReader, value: unknown, at = 'accuracy'): ReportAccuracy {
  const o = r.object(value, at, ['top1', 'top5', 'samples', 'dataset']);
  return {
    top1: r.number(o.top1, `${at}.top1`, 'fraction'),
    top5: r.number(o.top5, `${at}.top5`, 'fraction'),
    samples: r.number(o.samples, `${at}.samples`, 'count'),
    dataset: r.string(o.dataset, `${at}.dataset`),
  };
}

function readAgreement(r: FieldReader, value: unknown): ReportAgreement {
  const o = r.object(value, 'agreement', ['top1Agreement', 'cosine', 'maxAbsDiff', 'samples', 'reference']);
  return {
    top1Agreement: r.number(o.top1Agreement, 'agreement.top1Agreement', 'fraction'),
    cosine: r.number(o.cosine, 'agreement.cosine', 'cosine'),
    maxAbsDiff: r.number(o.maxAbsDiff, 'agreement.maxAbsDiff', 'nonNegative'),
    samples: r.number(o.samples, 'agreement.samples', 'count'),
    reference: r.string(o.reference, 'agreement.reference'),
  };
}

function readLatency(r: FieldReader, value: unknown, at: string): ReportLatency {
  const o = r.object(value, at, ['ep', 'batch', 'medianMs', 'p90Ms']);
  return {
    ep: r.string(o.ep, `${at}.ep`),
    batch: r.number(o.batch, `${at}.batch`, 'count'),
    medianMs: r.number(o.medianMs, `${at}.medianMs`, 'nonNegative'),
    p90Ms: r.number(o.p90Ms, `${at}.p90Ms`, 'nonNegative'),
  };
}

function readLayer(r: FieldReader, value: unknown, at: string): ReportLayer {
  const o = r.object(value, at, [
    'name',
    'op',
    'channelsBefore',
    'channelsAfter',
    'macsBefore',
    'macsAfter',
    'paramsBefore',
    'paramsAfter',
    'lowering',
    'connectivity',
  ]);
  const layer: ReportLayer = {
    name: r.string(o.name, `${at}.name`),
    op: r.string(o.op, `${at}.op`),
    macsAfter: 0,
    paramsAfter: 0,
  };
  if (o.channelsBefore !== undefined)
    layer.channelsBefore = r.number(o.channelsBefore, `${at}.channelsBefore`, 'count');
  if (o.channelsAfter !== undefined) layer.channelsAfter = r.number(o.channelsAfter, `${at}.channelsAfter`, 'count');
  if (o.macsBefore !== undefined) layer.macsBefore = r.number(o.macsBefore, `${at}.macsBefore`, 'nonNegative');
  layer.macsAfter = r.number(o.macsAfter, `${at}.macsAfter`, 'nonNegative');
  if (o.paramsBefore !== undefined) layer.paramsBefore = r.number(o.paramsBefore, `${at}.paramsBefore`, 'count');
  layer.paramsAfter = r.number(o.paramsAfter, `${at}.paramsAfter`, 'count');
  if (o.lowering !== undefined) layer.lowering = readLowering(r, o.lowering, at);
  if (o.connectivity !== undefined) layer.connectivity = readConnectivity(r, o.connectivity, `${at}.connectivity`);
  return layer;
}

function readLowering(r: FieldReader, value: unknown, layerAt: string): ReportLowering {
  const at = `${layerAt}.lowering`;
  const o = r.object(value, at, ['form', 'groups', 'reason']);
  const lowering: ReportLowering = {
    form: r.oneOf(o.form, `${at}.form`, REPORT_LOWERING_FORMS),
    reason: r.string(o.reason, `${at}.reason`, { allowEmpty: true }),
  };
  if (o.groups !== undefined) lowering.groups = r.number(o.groups, `${at}.groups`, 'count');
  return lowering;
}

/** A layer's connectivity: every filter in exactly one cluster, input masks of the right length. */
function readConnectivity(r: FieldReader, value: unknown, at: string): ReportConnectivity {
  const o = r.object(value, at, ['filters', 'inputs', 'clusters']);
  const filters = r.number(o.filters, `${at}.filters`, 'count');
  const inputs = r.number(o.inputs, `${at}.inputs`, 'count');
  const owner = new Int32Array(filters).fill(-1);
  const clusters = r.array(o.clusters, `${at}.clusters`).map((v, c): ReportCluster => {
    const co = r.object(v, `${at}.clusters[${c}]`, ['filters', 'inputs']);
    const list = r.array(co.filters, `${at}.clusters[${c}].filters`).map((f, k) => {
      const field = `${at}.clusters[${c}].filters[${k}]`;
      const filter = r.number(f, field, 'count');
      if (filter >= filters) r.fail(field, `must be below the layer's ${filters} filters`, filter);
      if (owner[filter] !== -1) r.fail(field, `is already in cluster ${owner[filter]}`, filter);
      owner[filter] = c;
      return filter;
    });
    return { filters: list, inputs: readInputMask(r, co.inputs, inputs, `${at}.clusters[${c}].inputs`) };
  });
  const orphan = owner.indexOf(-1);
  if (orphan >= 0)
    r.fail(`${at}.clusters`, `must place every filter in a cluster (filter ${orphan} is in none)`, orphan);
  return { filters, inputs, clusters };
}

function readInputMask(r: FieldReader, value: unknown, inputs: number, at: string): string {
  const mask = r.string(value, at, { allowEmpty: inputs === 0 });
  const length = Math.ceil(inputs / 4);
  if (mask.length !== length || !/^[0-9a-f]*$/.test(mask))
    r.fail(at, `must be ${length} hex digits (0-9, a-f), one per 4 inputs`, value);
  const spare = 4 * length - inputs;
  if (spare > 0 && parseInt(mask[length - 1]!, 16) >> (4 - spare) !== 0)
    r.fail(at, `must not set bits beyond the layer's ${inputs} inputs`, value);
  return mask;
}

function readTotals(r: FieldReader, value: unknown): ReportTotals {
  const o = r.object(value, 'totals', ['macsBefore', 'macsAfter', 'paramsBefore', 'paramsAfter', 'structureMacsRatio']);
  const totals: ReportTotals = { macsAfter: 0, paramsAfter: 0 };
  if (o.macsBefore !== undefined) totals.macsBefore = r.number(o.macsBefore, 'totals.macsBefore', 'nonNegative');
  totals.macsAfter = r.number(o.macsAfter, 'totals.macsAfter', 'nonNegative');
  if (o.paramsBefore !== undefined) totals.paramsBefore = r.number(o.paramsBefore, 'totals.paramsBefore', 'count');
  totals.paramsAfter = r.number(o.paramsAfter, 'totals.paramsAfter', 'count');
  if (o.structureMacsRatio !== undefined)
    totals.structureMacsRatio = r.number(o.structureMacsRatio, 'totals.structureMacsRatio', 'nonNegative');
  return totals;
}

/** Typed reads of one file's fields; every failure names the file and the field's path. */
class FieldReader {
  constructor(readonly file: string) {}

  fail(field: string, expected: string, got: unknown): never {
    const where = field === '' ? 'the top level' : `field '${field}'`;
    throw new RegroupError(
      'usage',
      `${this.file}: ${where} ${expected}, got ${describe(got)}; fix the file or write it again with --report`,
    );
  }

  /** A plain object; with `keys`, any other key is an error (extensions go under `extra`). */
  object(value: unknown, field: string, keys?: readonly string[]): Fields {
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      this.fail(field, 'must be an object', value);
    const fields = value as Fields;
    const unknown = keys ? Object.keys(fields).find((k) => !keys.includes(k)) : undefined;
    if (unknown !== undefined) {
      const at = field === '' ? unknown : `${field}.${unknown}`;
      throw new RegroupError(
        'usage',
        `${this.file}: unknown field '${at}'; a version-${REPORT_VERSION} report allows ${keys!.join(', ')} here (put anything else under 'extra')`,
      );
    }
    return fields;
  }

  array(value: unknown, field: string): unknown[] {
    if (!Array.isArray(value)) this.fail(field, 'must be an array', value);
    return value;
  }

  string(value: unknown, field: string, options: { allowEmpty?: boolean } = {}): string {
    if (typeof value !== 'string') this.fail(field, 'must be a string', value);
    if (!options.allowEmpty && value.length === 0) this.fail(field, 'must not be empty', value);
    return value;
  }

  number(value: unknown, field: string, rule: NumberRule): number {
    if (typeof value !== 'number' || !Number.isFinite(value) || !obeys(value, rule))
      this.fail(field, `must be ${RULE_TEXT[rule]}`, value);
    return value;
  }

  oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[]): T {
    if (!allowed.includes(value as T))
      this.fail(field, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}`, value);
    return value as T;
  }

  timestamp(value: unknown, field: string): string {
    const text = this.string(value, field);
    if (!/^\d{4}-\d{2}-\d{2}T/.test(text) || Number.isNaN(Date.parse(text)))
      this.fail(field, 'must be an ISO 8601 date-time such as 2025-01-31T12:00:00Z', value);
    return text;
  }
}

function obeys(n: number, rule: NumberRule): boolean {
  switch (rule) {
    case 'nonNegative':
      return n >= 0;
    case 'count':
      return n >= 0 && Number.isInteger(n);
    case 'fraction':
      return n >= 0 && n <= 1;
    case 'cosine':
      // Rounding can put a cosine a hair outside [-1, 1].
      return n >= -1 - 1e-6 && n <= 1 + 1e-6;
    case 'finite':
      return true;
  }
}

/** A short, single-line rendering of a bad value for an error message. */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing (the field is missing)';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
