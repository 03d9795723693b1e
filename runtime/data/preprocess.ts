/**
 * Preprocessing: the InputSpec a model needs, and batches of RawImages → a tensor.
 *
 * Per pixel, for model channel c (taken from image channel 2 − c when the order is BGR):
 *   out = (x · scale − mean[c]) / std[c]
 * with x the 8-bit value after channel conversion, resize and crop (resize.ts), computed in
 * double precision and rounded once to float32, or to float16 via floatToHalf (which rounds
 * through float32 first). Presets (preprocess-spec.ts):
 *   imagenet        RGB, resize shorter side 256, center crop 224, /255, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)
 *   cifar10         RGB, 32×32, /255, mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616)
 *   mnist           gray 28×28, (x/255 − 0.5)/0.5
 *   mnist-raw       gray 28×28, x/255
 *   half            any channels and size, (x/255 − 0.5)/0.5
 *   caffe-imagenet  BGR, resize 256, crop 224, 0..255, mean (103.939, 116.779, 123.68) in BGR order, std 1
 * A model's static H×W wins over a preset's size; a resizing preset then scales its resize
 * in proportion (imagenet on a 299×299 input: shorter side 342, as torchvision's Inception).
 *
 * Where the numbers come from, highest precedence first: the flags (--preset and the field
 * flags), a --preprocess JSON file, the model's metadata (regroup.preprocess above ONNX's
 * Image.* keys), and last a preset picked by the input's C×H×W. Fields override field by
 * field; a source that names a preset replaces everything below it with that preset. When no
 * source names one but some states scale, mean or std, the normalisation is the stated one
 * (unstated parts: scale 0-1, mean 0, std 1), not half of a guessed preset's; the guess then
 * still gives size and resize. A stated crop without a resize center-crops larger images.
 */
import { RegroupError } from '../../compiler/errors.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Dim, Value } from '../../compiler/ir/node.js';
import { floatToHalf } from '../../compiler/ir/tensor.js';
import { ort } from '../session.js';
import { centerCrop, convertChannels, resizeBilinear, shorterSideSize } from './resize.js';
import {
  FLAGS,
  metadataPreprocessing,
  PREPROCESS_FIELDS,
  PRESETS,
  presetNamed,
  readPreprocessFile,
  type Preprocessing,
  type PreprocessField,
  type PreprocessOptions,
  type Preset,
  type PresetName,
  type StatedPreprocessing,
} from './preprocess-spec.js';
import type { InputSpec, LabeledImage, RawImage } from './types.js';

export { isPresetName, PRESETS, type Preset, type PresetName } from './preprocess-spec.js';

/** Presets picked by C×H×W when none is given. */
const BY_SHAPE: Readonly<Record<string, PresetName>> = {
  '1x28x28': 'mnist',
  '3x32x32': 'cifar10',
  '3x224x224': 'imagenet',
};

export interface InputSpecOptions extends PreprocessOptions {
  /** Applied last, field by field; `name` picks the model input (default: the first one fed). */
  overrides?: Partial<InputSpec>;
}

/** An InputSpec with where each part came from. */
export interface ResolvedInputSpec extends InputSpec {
  /** The preset the spec starts from; undefined when stated normalisation replaced the guess. */
  readonly preset: PresetName | undefined;
  /** 'given' (--preset), 'from <source>', 'picked by input shape 1×28×28', or why there is none. */
  readonly presetReason: string;
  /** Each stated field with its source: 'flags', '--preprocess FILE', "model metadata 'KEY'". */
  readonly sources: Readonly<Partial<Record<PreprocessField, string>>>;
  /** What a source stated that is not applied (e.g. a linear gamma in the metadata). */
  readonly ignored: readonly string[];
  /** Flags or a --preprocess file stated part of it (recordPreprocessing writes it to models then). */
  readonly stated: boolean;
}

/** Everything the sources stated, after precedence: a named preset replaces what lies below it. */
interface Stated {
  preset?: { name: PresetName; origin: string };
  fields: Omit<Preprocessing, 'preset'>;
  sources: Partial<Record<PreprocessField, string>>;
  ignored: string[];
}

/** The sources, lowest precedence first: model metadata, the --preprocess file, the flags. */
function statedSources(model: Model, input: Value, options: InputSpecOptions): StatedPreprocessing[] {
  const sources = metadataPreprocessing(model, input);
  if (options.file !== undefined) sources.push(readPreprocessFile(options.file));
  const flags = Object.fromEntries(
    Object.entries({ ...options.fields, preset: options.preset }).filter(([, v]) => v !== undefined),
  );
  if (Object.keys(flags).length > 0) sources.push({ origin: FLAGS, preprocessing: flags });
  return sources;
}

function combine(sources: readonly StatedPreprocessing[]): Stated {
  const out: Stated = { fields: {}, sources: {}, ignored: [] };
  for (const { origin, preprocessing: p, ignored } of sources) {
    if (p.preset !== undefined) {
      out.preset = { name: presetNamed(p.preset, origin), origin };
      out.fields = {};
      out.sources = {};
    }
    for (const { field } of PREPROCESS_FIELDS) {
      if (p[field] === undefined) continue;
      (out.fields as Record<string, unknown>)[field] = p[field];
      out.sources[field] = origin;
    }
    out.ignored.push(...(ignored ?? []));
  }
  return out;
}

const isUserOrigin = (origin: string) => origin === FLAGS || origin.startsWith('--preprocess');

/** The spec for the model's first fed input (see the header for precedence, presets and sizes). */
export function inputSpecFor(model: Model, options: InputSpecOptions = {}): ResolvedInputSpec {
  const overrides = options.overrides ?? {};
  const input = feedInput(model, overrides.name);
  const dims = staticDims(input);
  const stated = combine(statedSources(model, input, options));
  const f = stated.fields;
  const layout = overrides.layout ?? f.layout ?? guessLayout(input, dims);
  const channels = overrides.channels ?? channelsOf(input, dims, layout, stated);
  const [modelH, modelW] = layout === 'NCHW' ? [dims[2], dims[3]] : [dims[1], dims[2]];
  const base = chooseBase(stated, input, channels, modelH, modelW);
  const { height, width } = sizeOf(input, stated, base, [modelH, modelW], overrides);
  const resizeShorter =
    f.resize !== undefined
      ? (f.resize ?? undefined)
      : base.geometry && scaledResize(base.geometry, Math.min(height, width));
  const spec: ResolvedInputSpec = {
    name: input.name,
    layout,
    channels,
    height,
    width,
    dtype: inputDtype(input),
    resizeShorter,
    ...(f.crop !== undefined && resizeShorter === undefined ? { centerCrop: true } : {}),
    scale: f.scale ?? base.normalisation.scale,
    mean: perChannel(f.mean ?? base.normalisation.mean, 'mean', stated, input, channels),
    std: perChannel(f.std ?? base.normalisation.std, 'std', stated, input, channels),
    channelOrder: channelOrderOf(stated, base, input, channels),
    preset: base.preset,
    presetReason: base.reason,
    sources: stated.sources,
    ignored: stated.ignored,
    stated: [...Object.values(stated.sources), stated.preset?.origin ?? ''].some(isUserOrigin),
    ...overrides,
  };
  validateSpec(spec);
  return spec;
}

/**
 * A spec from a preset alone, without a model (benchmarks, tests, tools): `shape` supplies
 * what the preset leaves open (size for `half`, channels, layout, dtype, input name).
 */
export function presetSpec(
  preset: PresetName,
  shape: Partial<Pick<InputSpec, 'name' | 'layout' | 'channels' | 'height' | 'width' | 'dtype'>> = {},
): InputSpec {
  const p = PRESETS[preset];
  const channels = shape.channels ?? p.channels ?? 3;
  if (p.channels !== undefined && p.channels !== channels)
    throw new RegroupError(
      'usage',
      `preset '${preset}' is for ${p.channels}-channel inputs, not ${channels}; presets that fit: ${fitting(channels).join(', ')}`,
    );
  const height = shape.height ?? p.size;
  const width = shape.width ?? p.size;
  if (height === undefined || width === undefined)
    throw new RegroupError('usage', `preset '${preset}' has no size; pass height and width`);
  const spec: InputSpec = {
    name: shape.name ?? 'input',
    layout: shape.layout ?? 'NCHW',
    channels,
    height,
    width,
    dtype: shape.dtype ?? 'float32',
    resizeShorter: scaledResize(p, Math.min(height, width)),
    scale: p.scale,
    mean: replicate(p.mean, channels),
    std: replicate(p.std, channels),
    channelOrder: p.channelOrder,
  };
  validateSpec(spec);
  return spec;
}

function feedInput(model: Model, name: string | undefined): Value {
  const fed = model.graph.inputs.filter((v) => !v.isInitializer());
  if (name !== undefined) {
    const found = fed.find((v) => v.name === name);
    if (!found)
      throw new RegroupError(
        'usage',
        `the model has no input '${name}'; its inputs are ${fed.map((v) => `'${v.name}'`).join(', ') || 'none'}`,
      );
    return found;
  }
  const first = fed[0];
  if (!first) throw new RegroupError('bad-model', 'the model has no graph input to feed images to');
  return first;
}

/** Rank-4 dims, undefined where symbolic or unknown. */
function staticDims(input: Value): (number | undefined)[] {
  const shape = input.type?.shape;
  if (!shape)
    throw new RegroupError(
      'unsupported',
      `input '${input.name}' has no declared shape; image preprocessing needs a rank-4 [N,C,H,W] or [N,H,W,C] input`,
    );
  if (shape.length !== 4)
    throw new RegroupError(
      'unsupported',
      `input '${input.name}' ${shapeText(input)} is rank ${shape.length}; image preprocessing needs a rank-4 [N,C,H,W] or [N,H,W,C] input`,
    );
  return shape.map((d: Dim) => (typeof d === 'number' && d > 0 ? d : undefined));
}

function guessLayout(input: Value, dims: readonly (number | undefined)[]): 'NCHW' | 'NHWC' {
  // ONNX dimension denotation, when the exporter wrote it, says where the channels are.
  const channelAxis = input.type?.dimDenotations?.indexOf('DATA_CHANNEL');
  if (channelAxis === 1) return 'NCHW';
  if (channelAxis === 3) return 'NHWC';
  if (dims[1] === 1 || dims[1] === 3) return 'NCHW';
  if (dims[3] === 1 || dims[3] === 3) return 'NHWC';
  throw new RegroupError(
    'unsupported',
    `cannot tell the layout of input '${input.name}' ${shapeText(input)}: neither axis 1 nor the last axis is 1 or 3; pass --layout nchw or nhwc (overrides.layout and overrides.channels)`,
  );
}

function shapeText(input: Value): string {
  return `[${(input.type?.shape ?? []).map((d) => (d === null ? '?' : String(d))).join(',')}]`;
}

function inputDtype(input: Value): 'float32' | 'float16' {
  const dtype = input.type?.dtype;
  if (dtype === DataType.FLOAT) return 'float32';
  if (dtype === DataType.FLOAT16) return 'float16';
  throw new RegroupError(
    'unsupported',
    `input '${input.name}' has element type ${dtype === undefined ? 'unknown' : DataType[dtype]}; image preprocessing writes float32 or float16 only`,
  );
}

/** What the spec starts from: the preset for size, resize and channel order, and the normalisation. */
interface Base {
  preset: PresetName | undefined;
  geometry: Preset | undefined;
  normalisation: Pick<Preset, 'scale' | 'mean' | 'std'>;
  reason: string;
}

/** Unstated parts of a stated normalisation: x/255, mean 0, std 1. */
const NEUTRAL = { scale: 1 / 255, mean: [0], std: [1] };

function chooseBase(
  stated: Stated,
  input: Value,
  channels: 1 | 3,
  height: number | undefined,
  width: number | undefined,
): Base {
  if (stated.preset) {
    const { name, origin } = stated.preset;
    const preset = PRESETS[name];
    if (preset.channels !== undefined && preset.channels !== channels) throw presetMismatch(name, input, channels);
    return {
      preset: name,
      geometry: preset,
      normalisation: preset,
      reason: origin === FLAGS ? 'given' : `from ${origin}`,
    };
  }
  const shape = `${channels}×${height ?? '?'}×${width ?? '?'}`;
  const guess = BY_SHAPE[shape.replaceAll('×', 'x')];
  const f = stated.fields;
  if (f.scale !== undefined || f.mean !== undefined || f.std !== undefined) {
    // A guess must not half-apply: stated normalisation replaces the guessed one whole.
    const reason = guess
      ? `stated normalisation, size and resize of the ${guess} preset picked by input shape ${shape}`
      : 'stated normalisation, no preset';
    return { preset: undefined, geometry: guess && PRESETS[guess], normalisation: NEUTRAL, reason };
  }
  if (!guess) {
    throw new RegroupError(
      'usage',
      `no preset is known for input '${input.name}' ${shapeText(input)} (${shape}); pass one (--preset ${fitting(channels).join(', ')}) or state the preprocessing (--scale, --mean, --std, or --preprocess FILE)`,
    );
  }
  const preset = PRESETS[guess];
  return { preset: guess, geometry: preset, normalisation: preset, reason: `picked by input shape ${shape}` };
}

function channelsOf(
  input: Value,
  dims: readonly (number | undefined)[],
  layout: 'NCHW' | 'NHWC',
  stated: Stated,
): 1 | 3 {
  const channelDim = layout === 'NCHW' ? dims[1] : dims[3];
  if (channelDim === 1 || channelDim === 3) return channelDim;
  const fix = stated.sources.layout ? `check the layout from ${stated.sources.layout}` : 'pass --layout nchw or nhwc';
  throw new RegroupError(
    'unsupported',
    `input '${input.name}' ${shapeText(input)}: the ${layout} channel axis is ${channelDim ?? 'symbolic'}, not 1 or 3; ${fix} (or overrides.channels)`,
  );
}

/** Height and width: overrides, then a stated crop (which must match a static model size), the model, the preset. */
function sizeOf(
  input: Value,
  stated: Stated,
  base: Base,
  [modelH, modelW]: (number | undefined)[],
  overrides: Partial<InputSpec>,
): { height: number; width: number } {
  const crop = stated.fields.crop;
  if (crop && ((modelH !== undefined && crop.height !== modelH) || (modelW !== undefined && crop.width !== modelW)))
    throw new RegroupError(
      'usage',
      `crop ${crop.height}×${crop.width} from ${stated.sources.crop} does not fit input '${input.name}' ${shapeText(input)}, which takes ${modelH ?? '?'}×${modelW ?? '?'} (height×width); give --crop ${modelH ?? crop.height}x${modelW ?? crop.width} or leave it out`,
    );
  const height = overrides.height ?? crop?.height ?? modelH ?? base.geometry?.size;
  const width = overrides.width ?? crop?.width ?? modelW ?? base.geometry?.size;
  if (height === undefined || width === undefined) {
    const why = base.preset ? `preset '${base.preset}' has no size` : 'no preset gives one';
    throw new RegroupError(
      'usage',
      `input '${input.name}' ${shapeText(input)} has a symbolic height or width and ${why}; pass --crop HxW (overrides.height and overrides.width)`,
    );
  }
  return { height, width };
}

function channelOrderOf(stated: Stated, base: Base, input: Value, channels: number): 'RGB' | 'BGR' {
  const order = stated.fields.channelOrder;
  if (order === 'BGR' && channels !== 3)
    throw new RegroupError(
      'usage',
      `channels bgr from ${stated.sources.channelOrder}: input '${input.name}' ${shapeText(input)} has ${channels} channel; a channel order applies to 3-channel inputs`,
    );
  return order ?? base.geometry?.channelOrder ?? 'RGB';
}

function fitting(channels: number): PresetName[] {
  return (Object.keys(PRESETS) as PresetName[]).filter(
    (p) => PRESETS[p].channels === undefined || PRESETS[p].channels === channels,
  );
}

function presetMismatch(preset: PresetName, input: Value, channels: number): RegroupError {
  const want = PRESETS[preset].channels === 1 ? '1-channel (gray)' : '3-channel (colour)';
  return new RegroupError(
    'usage',
    `preset '${preset}' is for ${want} inputs but input '${input.name}' ${shapeText(input)} has ${channels} channel${channels === 1 ? '' : 's'}; presets that fit: ${fitting(channels).join(', ')}`,
  );
}

function scaledResize(preset: Preset, side: number): number | undefined {
  if (preset.resizeShorter === undefined) return undefined;
  return preset.size === undefined || preset.size === side
    ? preset.resizeShorter
    : Math.round((preset.resizeShorter * side) / preset.size);
}

/** One value per channel from a preset's one-for-all or per-channel list. */
function replicate(values: readonly number[], channels: number): number[] {
  return values.length === 1 ? Array(channels).fill(values[0]) : [...values];
}

/** A stated mean or std per channel, or an error naming its source. */
function perChannel(
  values: readonly number[],
  what: 'mean' | 'std',
  stated: Stated,
  input: Value,
  channels: number,
): number[] {
  if (values.length === 1 || values.length === channels) return replicate(values, channels);
  throw new RegroupError(
    'usage',
    `${what} from ${stated.sources[what] ?? 'the preset'} has ${values.length} values but input '${input.name}' ${shapeText(input)} has ${channels} channel${channels === 1 ? '' : 's'}; give one value, or one per channel`,
  );
}

function validateSpec(spec: InputSpec): void {
  const problems: string[] = [];
  if (!Number.isInteger(spec.height) || spec.height <= 0 || !Number.isInteger(spec.width) || spec.width <= 0)
    problems.push(`size ${spec.width}×${spec.height} is not positive whole numbers`);
  if (spec.mean.length !== spec.channels || spec.std.length !== spec.channels)
    problems.push(`mean/std need ${spec.channels} values each (got ${spec.mean.length}/${spec.std.length})`);
  if (spec.std.some((s) => s === 0)) problems.push('std has a zero');
  if (spec.resizeShorter !== undefined && (!Number.isInteger(spec.resizeShorter) || spec.resizeShorter <= 0))
    problems.push(`resizeShorter ${spec.resizeShorter} is not a positive whole number`);
  if (problems.length > 0) throw new RegroupError('usage', `input spec for '${spec.name}': ${problems.join('; ')}`);
}

/** Resize/crop/convert one image to the spec's geometry and channels (8-bit). */
export function fitImage(image: RawImage, spec: InputSpec, source: string): RawImage {
  const { width: W, height: H } = spec;
  let out = image.channels > spec.channels ? convertChannels(image, spec.channels) : image;
  if (spec.resizeShorter !== undefined) {
    let shorter = spec.resizeShorter;
    let size = shorterSideSize(out.width, out.height, shorter);
    while (size.width < W || size.height < H) size = shorterSideSize(out.width, out.height, ++shorter);
    if (size.width !== out.width || size.height !== out.height) out = resizeBilinear(out, size.width, size.height);
    out = centerCrop(out, W, H);
  } else if (out.width !== W || out.height !== H) {
    if (!spec.centerCrop || out.width < W || out.height < H)
      throw new RegroupError(
        'bad-data',
        `${source}: image is ${out.width}×${out.height} but input '${spec.name}' takes ${W}×${H} and this preprocessing ${spec.centerCrop ? 'crops without resizing' : 'does not resize'}; pass --resize N (or a resizing preset: imagenet, caffe-imagenet)${spec.centerCrop ? '' : ', --crop to center-crop larger images,'} or resize the images`,
      );
    out = centerCrop(out, W, H);
  }
  return convertChannels(out, spec.channels);
}

/** One lookup table per model channel: 8-bit value → normalised float. */
function lookupTables(spec: InputSpec): Float64Array[] {
  return Array.from({ length: spec.channels }, (_, c) =>
    Float64Array.from({ length: 256 }, (_, x) => (x * spec.scale - spec.mean[c]!) / spec.std[c]!),
  );
}

function isLabeled(item: RawImage | LabeledImage): item is LabeledImage {
  return (item as LabeledImage).image !== undefined;
}

/**
 * A batch of images → the model input tensor [N,C,H,W] or [N,H,W,C]. Pass LabeledImages (or
 * `sources`) so that an image that does not fit names its file.
 */
export function toTensor(
  images: readonly (RawImage | LabeledImage)[],
  spec: InputSpec,
  sources?: readonly string[],
): ort.Tensor {
  if (images.length === 0) throw new RegroupError('usage', `toTensor for input '${spec.name}': the batch is empty`);
  const { channels: C, height: H, width: W } = spec;
  const plane = H * W;
  const values = new Float32Array(images.length * C * plane);
  const tables = lookupTables(spec);
  images.forEach((item, n) => {
    const source = isLabeled(item) ? item.source : (sources?.[n] ?? `image #${n} of the batch`);
    const image = fitImage(isLabeled(item) ? item.image : item, spec, source);
    writeImage(image.data, values, n * C * plane, spec, tables);
  });
  const dims = spec.layout === 'NCHW' ? [images.length, C, H, W] : [images.length, H, W, C];
  if (spec.dtype === 'float32') return new ort.Tensor('float32', values, dims);
  const halves = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) halves[i] = floatToHalf(values[i]!);
  return new ort.Tensor('float16', halves, dims);
}

function writeImage(
  pixels: Uint8Array,
  out: Float32Array,
  offset: number,
  spec: InputSpec,
  tables: readonly Float64Array[],
): void {
  const C = spec.channels;
  const plane = spec.height * spec.width;
  const nchw = spec.layout === 'NCHW';
  for (let c = 0; c < C; c++) {
    const from = spec.channelOrder === 'BGR' && C === 3 ? 2 - c : c;
    const table = tables[c]!;
    for (let p = 0; p < plane; p++) out[offset + (nchw ? c * plane + p : p * C + c)] = table[pixels[p * C + from]!]!;
  }
}
