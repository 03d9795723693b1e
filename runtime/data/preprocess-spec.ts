/**
 * Preprocessing as people and exporters state it, before it meets a model: the presets, the
 * fields that flags, a `--preprocess` JSON file or a model's metadata_props give, their
 * parsers, and the resolved preprocessing written back out (report, metadata, one line of
 * text) in the same words. Resolution against a model is preprocess.ts's `inputSpecFor`.
 * Nothing here loads onnxruntime, so the command line and the report reader can use it.
 *
 * The JSON spec (every field optional, an unknown field is an error):
 *   { "preset": "cifar10", "scale": "0-1" | "0-255" | <multiplier>, "mean": [0.4914, 0.4822, 0.4465] | 0.5,
 *     "std": [...] | 0.5, "resize": 256 | "none", "crop": 224 | [224, 192] | "224x192",
 *     "channels": "rgb" | "bgr", "layout": "nchw" | "nhwc" }
 * mean and std are in the model's channel order and in the units after scale; one value
 * applies to every channel. resize is the shorter side before the center crop; crop is
 * height × width. The flags take the same values (`--mean 0.4914,0.4822,0.4465`).
 *
 * Model metadata (model-level metadata_props), lowest precedence first:
 *   Image.BitmapPixelFormat / Image.NominalPixelRange / Image.ColorSpaceGamma — ONNX's image
 *     metadata (onnx/docs/MetadataProps.md; WinMLTools and onnxmltools write it), keys and
 *     values case-insensitive, read when the fed input is denoted IMAGE or not denoted:
 *       Rgb8, Rgba8 → channels rgb; Bgr8, Bgra8 → bgr; Gray8 → nothing (the shape has the count)
 *       NominalRange_0_255 → x, Normalized_0_1 → x/255, Normalized_1_1 → (x/255 − 0.5)/0.5,
 *       NominalRange_16_235 → 16 + 219·x/255 (scale 219/255, mean −16, std 1)
 *       Linear gamma is noted, not applied: images are fed as decoded (sRGB).
 *   regroup.preprocess — this JSON spec. regroup writes it on the models it trains or
 *     compresses when the run's preprocessing was stated (flags or --preprocess).
 * No exporter we know of (torch.onnx, tf2onnx, paddle2onnx) writes mean/std anywhere in the
 * model; those are what the flags are for.
 */
import fs from 'node:fs';
import { RegroupError } from '../../compiler/errors.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';
import type { ResolvedInputSpec } from './preprocess.js';

export type PresetName = 'imagenet' | 'cifar10' | 'mnist' | 'mnist-raw' | 'half' | 'caffe-imagenet';

export interface Preset {
  /** Channels the preset is for (undefined: any). */
  readonly channels?: 1 | 3;
  /** Square crop size (undefined: any size, taken from the model). */
  readonly size?: number;
  readonly resizeShorter?: number;
  readonly scale: number;
  /** Per channel in the preset's channel order; one value applies to every channel. */
  readonly mean: readonly number[];
  readonly std: readonly number[];
  readonly channelOrder: 'RGB' | 'BGR';
}

export const PRESETS: Readonly<Record<PresetName, Preset>> = {
  imagenet: {
    channels: 3,
    size: 224,
    resizeShorter: 256,
    scale: 1 / 255,
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
    channelOrder: 'RGB',
  },
  cifar10: {
    channels: 3,
    size: 32,
    scale: 1 / 255,
    mean: [0.4914, 0.4822, 0.4465],
    std: [0.247, 0.2435, 0.2616],
    channelOrder: 'RGB',
  },
  mnist: { channels: 1, size: 28, scale: 1 / 255, mean: [0.5], std: [0.5], channelOrder: 'RGB' },
  'mnist-raw': { channels: 1, size: 28, scale: 1 / 255, mean: [0], std: [1], channelOrder: 'RGB' },
  half: { scale: 1 / 255, mean: [0.5], std: [0.5], channelOrder: 'RGB' },
  'caffe-imagenet': {
    channels: 3,
    size: 224,
    resizeShorter: 256,
    scale: 1,
    mean: [103.939, 116.779, 123.68],
    std: [1],
    channelOrder: 'BGR',
  },
};

export function isPresetName(name: string): name is PresetName {
  return Object.hasOwn(PRESETS, name);
}

/** A preset name, or a usage error naming where the name came from and listing the presets. */
export function presetNamed(name: string, origin: string): PresetName {
  if (isPresetName(name)) return name;
  throw new RegroupError(
    'usage',
    `unknown preset '${name}'${origin === FLAGS ? '' : ` in ${origin}`}; use one of ${Object.keys(PRESETS).join(', ')}`,
  );
}

/** Preprocessing as one source states it; every field optional. */
export interface Preprocessing {
  /** A preset this source starts from: it replaces whatever lower sources stated. */
  readonly preset?: string;
  /** Multiplier of the 8-bit values: 1/255 for '0-1', 1 for '0-255'. */
  readonly scale?: number;
  readonly mean?: readonly number[];
  readonly std?: readonly number[];
  /** Shorter side to resize to before the center crop; null: no resize. */
  readonly resize?: number | null;
  readonly crop?: { readonly height: number; readonly width: number };
  readonly channelOrder?: 'RGB' | 'BGR';
  readonly layout?: 'NCHW' | 'NHWC';
}

export type PreprocessField = Exclude<keyof Preprocessing, 'preset'>;

/** The fields in the order they are printed, with their JSON and flag names. */
export const PREPROCESS_FIELDS: readonly { field: PreprocessField; name: string }[] = [
  { field: 'scale', name: 'scale' },
  { field: 'mean', name: 'mean' },
  { field: 'std', name: 'std' },
  { field: 'resize', name: 'resize' },
  { field: 'crop', name: 'crop' },
  { field: 'channelOrder', name: 'channels' },
  { field: 'layout', name: 'layout' },
];

/** What one source (flags, a file, a metadata key) stated, and where it came from. */
export interface StatedPreprocessing {
  /** 'flags', '--preprocess FILE' or "model metadata 'KEY'". */
  readonly origin: string;
  readonly preprocessing: Preprocessing;
  /** What the source said that regroup does not apply (printed with the resolved spec). */
  readonly ignored?: readonly string[];
}

/** Library form of the preprocessing flags: `--preset`, the field flags, `--preprocess FILE`. */
export interface PreprocessOptions {
  preset?: string;
  /** Field flags; above the file, the model's metadata and any preset. */
  fields?: Omit<Preprocessing, 'preset'>;
  /** A JSON spec file (--preprocess); above the model's metadata, below the flags. */
  file?: string;
}

export const FLAGS = 'flags';
export const METADATA_KEY = 'regroup.preprocess';

// ---------------------------------------------------------------------------------------------
// Values as text (flags, and strings in a JSON spec). Each throws a usage error about the value.

function invalid(message: string): never {
  throw new RegroupError('usage', message);
}

/** '0-1' → 1/255, '0-255' → 1, or a positive multiplier. */
export function parseScale(text: string): number {
  const t = text.trim();
  if (t === '0-1') return 1 / 255;
  if (t === '0-255') return 1;
  const n = Number(t);
  if (t !== '' && Number.isFinite(n) && n > 0) return n;
  return invalid(`'${text}' is not a scale: use 0-1 (x/255), 0-255 (raw 8-bit values) or a positive multiplier`);
}

/** '0.5' or '0.485,0.456,0.406'. */
export function parseNumbers(text: string, what: 'mean' | 'std'): number[] {
  const parts = text.split(',').map((p) => p.trim());
  const values = parts.map(Number);
  if (parts.some((p) => p === '') || values.some((v) => !Number.isFinite(v)))
    invalid(`'${text}' is not a ${what}: give one number, or one per channel separated by commas (0.485,0.456,0.406)`);
  return checkNumbers(values, what, `'${text}'`);
}

function checkNumbers(values: number[], what: 'mean' | 'std', shown: string): number[] {
  if (values.length !== 1 && values.length !== 3)
    invalid(`${shown}: ${what} needs 1 value or 3 (one per channel), not ${values.length}`);
  if (what === 'std' && values.some((v) => !(v > 0))) invalid(`${shown}: every std must be positive`);
  return values;
}

/** A positive whole number of pixels, or 'none'. */
export function parseResize(text: string): number | null {
  if (text.trim().toLowerCase() === 'none') return null;
  const n = Number(text);
  if (Number.isInteger(n) && n > 0) return n;
  return invalid(`'${text}' is not a resize: give the shorter side in pixels (256) or none`);
}

/** 'N' (square) or 'HxW' (height × width). */
export function parseCrop(text: string): { height: number; width: number } {
  const parts = text
    .trim()
    .split(/[x×]/i)
    .map((p) => Number(p));
  if ((parts.length === 1 || parts.length === 2) && parts.every((n) => Number.isInteger(n) && n > 0)) {
    const [height, width = height] = parts as [number, number?];
    return { height, width };
  }
  return invalid(`'${text}' is not a crop: give the side (224) or height×width (224x192) in pixels`);
}

export function parseChannelOrder(text: string): 'RGB' | 'BGR' {
  const t = text.trim().toUpperCase();
  if (t === 'RGB' || t === 'BGR') return t;
  return invalid(`'${text}' is not a channel order: use rgb or bgr`);
}

export function parseLayout(text: string): 'NCHW' | 'NHWC' {
  const t = text.trim().toUpperCase();
  if (t === 'NCHW' || t === 'NHWC') return t;
  return invalid(`'${text}' is not a layout: use nchw (PyTorch) or nhwc (TensorFlow/Keras)`);
}

// ---------------------------------------------------------------------------------------------
// The JSON spec

const JSON_FIELDS = ['preset', ...PREPROCESS_FIELDS.map((f) => f.name)];

/**
 * Check a parsed JSON spec and return it typed; `where` names it in errors
 * ("spec.json", "model metadata 'regroup.preprocess'").
 */
export function parsePreprocessing(json: unknown, where: string): Preprocessing {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    invalid(`${where}: a preprocessing spec is a JSON object such as {"mean": [0.5], "std": [0.5]}`);
  const o = json as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !JSON_FIELDS.includes(k));
  if (unknown.length > 0)
    invalid(`${where}: unknown field '${unknown[0]}'; a preprocessing spec has ${JSON_FIELDS.join(', ')}`);
  const out: Record<string, unknown> = {};
  for (const name of JSON_FIELDS) {
    if (o[name] === undefined) continue;
    try {
      out[name === 'channels' ? 'channelOrder' : name] = readField(name, o[name], where);
    } catch (err) {
      if (err instanceof RegroupError) invalid(`${where}: field '${name}': ${err.message}`);
      throw err;
    }
  }
  return out as Preprocessing;
}

function readField(name: string, value: unknown, where: string): unknown {
  const text = (): string => (typeof value === 'string' ? value : invalid(`${JSON.stringify(value)} is not a string`));
  switch (name) {
    case 'preset':
      return presetNamed(text(), where);
    case 'scale':
      return typeof value === 'number' ? parseScale(String(value)) : parseScale(text());
    case 'mean':
    case 'std':
      return readNumbers(value, name);
    case 'resize':
      return value === null ? null : typeof value === 'number' ? parseResize(String(value)) : parseResize(text());
    case 'crop':
      return readCrop(value);
    case 'channels':
      return parseChannelOrder(text());
    default:
      return parseLayout(text());
  }
}

function readNumbers(value: unknown, what: 'mean' | 'std'): number[] {
  if (typeof value === 'string') return parseNumbers(value, what);
  const values = typeof value === 'number' ? [value] : value;
  if (!Array.isArray(values) || values.some((v) => typeof v !== 'number' || !Number.isFinite(v)))
    invalid(`${JSON.stringify(value)} is not a number or a list of numbers`);
  return checkNumbers(values as number[], what, JSON.stringify(value));
}

function readCrop(value: unknown): { height: number; width: number } {
  if (typeof value === 'string') return parseCrop(value);
  if (typeof value === 'number') return parseCrop(String(value));
  if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'number'))
    return parseCrop(`${value[0]}x${value[1]}`);
  return invalid(`${JSON.stringify(value)} is not a crop: give 224, [224, 192] (height, width) or "224x192"`);
}

/** A `--preprocess` file: read, parsed as JSON and checked, errors naming the file. */
export function readPreprocessFile(file: string): StatedPreprocessing {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new RegroupError('usage', `--preprocess ${file}: cannot read it (${(err as NodeJS.ErrnoException).code})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new RegroupError('usage', `--preprocess ${file}: not valid JSON (${(err as Error).message})`);
  }
  return { origin: `--preprocess ${file}`, preprocessing: parsePreprocessing(json, file) };
}

// ---------------------------------------------------------------------------------------------
// Model metadata

const PIXEL_FORMATS: Readonly<Record<string, Preprocessing>> = {
  gray8: {},
  rgb8: { channelOrder: 'RGB' },
  rgba8: { channelOrder: 'RGB' },
  bgr8: { channelOrder: 'BGR' },
  bgra8: { channelOrder: 'BGR' },
};

const PIXEL_RANGES: Readonly<Record<string, Preprocessing>> = {
  nominalrange_0_255: { scale: 1, mean: [0], std: [1] },
  normalized_0_1: { scale: 1 / 255, mean: [0], std: [1] },
  normalized_1_1: { scale: 1 / 255, mean: [0.5], std: [0.5] },
  nominalrange_16_235: { scale: 219 / 255, mean: [-16], std: [1] },
};

/** What the model's metadata_props state for `input`, lowest precedence first (see the header). */
export function metadataPreprocessing(model: Model, input: Value): StatedPreprocessing[] {
  const props = new Map(model.metadataProps.map(([k, v]) => [k.toLowerCase(), { key: k, value: v }]));
  const stated: StatedPreprocessing[] = [];
  const denotation = input.type?.denotation;
  if (denotation === undefined || denotation.toUpperCase() === 'IMAGE') {
    const image = imageMetadata(props);
    if (image) stated.push(image);
  }
  const own = props.get(METADATA_KEY);
  if (own) {
    const where = `model metadata '${METADATA_KEY}'`;
    let json: unknown;
    try {
      json = JSON.parse(own.value);
    } catch (err) {
      throw new RegroupError(
        'bad-model',
        `${where} is not valid JSON (${(err as Error).message}); fix or remove the key, or state the preprocessing with flags`,
      );
    }
    stated.push({ origin: where, preprocessing: parsePreprocessing(json, where) });
  }
  return stated;
}

function imageMetadata(props: ReadonlyMap<string, { key: string; value: string }>): StatedPreprocessing | undefined {
  const format = props.get('image.bitmappixelformat');
  const range = props.get('image.nominalpixelrange');
  const gamma = props.get('image.colorspacegamma');
  if (!format && !range && !gamma) return undefined;
  const ignored: string[] = [];
  const lookup = (entry: { key: string; value: string } | undefined, table: Record<string, Preprocessing>) => {
    if (!entry) return {};
    const found = table[entry.value.toLowerCase()];
    if (!found) ignored.push(`${entry.key}=${entry.value} (not a value ONNX defines)`);
    return found ?? {};
  };
  if (gamma && gamma.value.toLowerCase() === 'linear')
    ignored.push(`${gamma.key}=${gamma.value} (images are fed as decoded, sRGB)`);
  return {
    origin: "model metadata 'Image.*'",
    preprocessing: { ...lookup(format, PIXEL_FORMATS), ...lookup(range, PIXEL_RANGES) },
    ignored,
  };
}

/**
 * Record a run's resolved preprocessing in `model`'s metadata (`regroup.preprocess`) when it
 * was stated for the run (flags or --preprocess), so the written model carries it.
 */
export function recordPreprocessing(model: Model, spec: ResolvedInputSpec): void {
  if (!spec.stated) return;
  const value = JSON.stringify(preprocessingJson(spec));
  model.metadataProps = [
    ...model.metadataProps.filter(([k]) => k.toLowerCase() !== METADATA_KEY),
    [METADATA_KEY, value],
  ];
}

// ---------------------------------------------------------------------------------------------
// The resolved preprocessing, written out

/** The JSON spec of a resolved preprocessing: every field, so reading it back gives the same tensor. */
export interface PreprocessingJson {
  preset?: string;
  scale: string | number;
  mean: number[];
  std: number[];
  resize: number | 'none';
  crop: [number, number];
  channels: 'rgb' | 'bgr';
  layout: 'nchw' | 'nhwc';
}

export function preprocessingJson(spec: ResolvedInputSpec): PreprocessingJson {
  return {
    ...(spec.preset !== undefined ? { preset: spec.preset } : {}),
    scale: scaleText(spec.scale),
    mean: collapse(spec.mean),
    std: collapse(spec.std),
    resize: spec.resizeShorter ?? 'none',
    crop: [spec.height, spec.width],
    channels: spec.channelOrder === 'BGR' ? 'bgr' : 'rgb',
    layout: spec.layout === 'NHWC' ? 'nhwc' : 'nchw',
  };
}

/**
 * The resolved preprocessing as flags, then where it came from:
 * `--scale 0-1 --mean 0.286 --std 0.353 --resize none --crop 28x28 --channels rgb --layout nchw
 * (mnist preset picked by input shape 1×28×28; mean, std from flags)`.
 */
export function describePreprocessing(spec: ResolvedInputSpec): string {
  const j = preprocessingJson(spec);
  const flags = [
    `--scale ${j.scale}`,
    `--mean ${j.mean.join(',')}`,
    `--std ${j.std.join(',')}`,
    `--resize ${j.resize}`,
    `--crop ${j.crop.join('x')}`,
    `--channels ${j.channels}`,
    `--layout ${j.layout}`,
  ].join(' ');
  const byOrigin = new Map<string, string[]>();
  for (const { field, name } of PREPROCESS_FIELDS) {
    const origin = spec.sources[field];
    if (origin !== undefined) byOrigin.set(origin, [...(byOrigin.get(origin) ?? []), name]);
  }
  // Highest precedence first: flags, the file, then the metadata.
  const rank = (origin: string) => (origin === FLAGS ? 0 : origin.startsWith('--preprocess') ? 1 : 2);
  const why = [
    spec.presetReason,
    ...[...byOrigin]
      .sort(([a], [b]) => rank(a) - rank(b))
      .map(([origin, names]) => `${names.join(', ')} from ${origin}`),
    ...spec.ignored.map((i) => `ignored ${i}`),
  ];
  return `${flags} (${why.join('; ')})`;
}

/** '0-1', '0-255', or the multiplier. */
export function scaleText(scale: number): string | number {
  if (scale === 1 / 255) return '0-1';
  if (scale === 1) return '0-255';
  return scale;
}

function collapse(values: readonly number[]): number[] {
  return values.every((v) => v === values[0]) ? [values[0]!] : [...values];
}
