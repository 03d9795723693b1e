/**
 * Preprocessing: presets, the InputSpec a model needs, and batches of RawImages → a tensor.
 *
 * Per pixel, for model channel c (taken from image channel 2 − c when the order is BGR):
 *   out = (x · scale − mean[c]) / std[c]
 * with x the 8-bit value after channel conversion, resize and crop (resize.ts), computed in
 * double precision and rounded once to float32, or to float16 via floatToHalf (which rounds
 * through float32 first). Presets:
 *   imagenet        RGB, resize shorter side 256, center crop 224, /255, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)
 *   cifar10         RGB, 32×32, /255, mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616)
 *   mnist           gray 28×28, (x/255 − 0.5)/0.5
 *   mnist-raw       gray 28×28, x/255
 *   half            any channels and size, (x/255 − 0.5)/0.5
 *   caffe-imagenet  BGR, resize 256, crop 224, 0..255, mean (103.939, 116.779, 123.68) in BGR order, std 1
 * A model's static H×W wins over a preset's size; a resizing preset then scales its resize
 * in proportion (imagenet on a 299×299 input: shorter side 342, as torchvision's Inception).
 */
import { RegroupError } from '../../compiler/errors.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Dim, Value } from '../../compiler/ir/node.js';
import { floatToHalf } from '../../compiler/ir/tensor.js';
import { ort } from '../session.js';
import { centerCrop, convertChannels, resizeBilinear, shorterSideSize } from './resize.js';
import type { InputSpec, LabeledImage, RawImage } from './types.js';

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

/** Presets picked by C×H×W when none is given. */
const BY_SHAPE: Readonly<Record<string, PresetName>> = {
  '1x28x28': 'mnist',
  '3x32x32': 'cifar10',
  '3x224x224': 'imagenet',
};

export function isPresetName(name: string): name is PresetName {
  return Object.hasOwn(PRESETS, name);
}

export interface InputSpecOptions {
  preset?: string;
  /** Applied last, field by field; `name` picks the model input (default: the first one fed). */
  overrides?: Partial<InputSpec>;
}

/** An InputSpec with the preset it came from and why that preset. */
export interface ResolvedInputSpec extends InputSpec {
  readonly preset: PresetName;
  /** 'given', or how it was picked: 'picked by input shape 1×28×28'. */
  readonly presetReason: string;
}

/** The spec for the model's first fed input (see the header for presets and sizes). */
export function inputSpecFor(model: Model, options: InputSpecOptions = {}): ResolvedInputSpec {
  const overrides = options.overrides ?? {};
  const input = feedInput(model, overrides.name);
  const dims = staticDims(input);
  const layout = overrides.layout ?? guessLayout(input, dims);
  const channelDim = layout === 'NCHW' ? dims[1] : dims[3];
  const channels = overrides.channels ?? (channelDim === 1 || channelDim === 3 ? channelDim : undefined);
  if (channels === undefined)
    throw new RegroupError(
      'unsupported',
      `input '${input.name}' ${shapeText(input)}: the ${layout} channel axis is not 1 or 3; pass overrides.channels`,
    );
  const [modelH, modelW] = layout === 'NCHW' ? [dims[2], dims[3]] : [dims[1], dims[2]];
  const { name: presetName, reason } = choosePreset(options.preset, input, channels, modelH, modelW);
  const preset = PRESETS[presetName];
  if (preset.channels !== undefined && preset.channels !== channels) throw presetMismatch(presetName, input, channels);
  const height = overrides.height ?? modelH ?? preset.size;
  const width = overrides.width ?? modelW ?? preset.size;
  if (height === undefined || width === undefined) {
    throw new RegroupError(
      'usage',
      `input '${input.name}' ${shapeText(input)} has a symbolic height or width and preset '${presetName}' has no size; pass overrides.height and overrides.width`,
    );
  }
  const spec: ResolvedInputSpec = {
    name: input.name,
    layout,
    channels,
    height,
    width,
    dtype: inputDtype(input),
    resizeShorter: scaledResize(preset, Math.min(height, width)),
    scale: preset.scale,
    mean: perChannel(preset.mean, channels),
    std: perChannel(preset.std, channels),
    channelOrder: preset.channelOrder,
    preset: presetName,
    presetReason: reason,
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
    mean: perChannel(p.mean, channels),
    std: perChannel(p.std, channels),
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
  if (dims[1] === 1 || dims[1] === 3) return 'NCHW';
  if (dims[3] === 1 || dims[3] === 3) return 'NHWC';
  throw new RegroupError(
    'unsupported',
    `cannot tell the layout of input '${input.name}' ${shapeText(input)}: neither axis 1 nor the last axis is 1 or 3; pass overrides.layout and overrides.channels`,
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

function choosePreset(
  given: string | undefined,
  input: Value,
  channels: number,
  height: number | undefined,
  width: number | undefined,
): { name: PresetName; reason: string } {
  if (given !== undefined) {
    if (!isPresetName(given))
      throw new RegroupError('usage', `unknown preset '${given}'; use one of ${Object.keys(PRESETS).join(', ')}`);
    return { name: given, reason: 'given' };
  }
  const key = `${channels}x${height ?? '?'}x${width ?? '?'}`;
  const picked = BY_SHAPE[key];
  if (!picked) {
    throw new RegroupError(
      'usage',
      `no preset is known for input '${input.name}' ${shapeText(input)} (${key.replaceAll('x', '×')}); pass one: ${fitting(channels).join(', ')}`,
    );
  }
  return { name: picked, reason: `picked by input shape ${key.replaceAll('x', '×')}` };
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

function perChannel(values: readonly number[], channels: number): number[] {
  return values.length === 1 ? Array(channels).fill(values[0]) : [...values];
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
  if (spec.resizeShorter === undefined) {
    if (out.width !== W || out.height !== H) {
      throw new RegroupError(
        'bad-data',
        `${source}: image is ${out.width}×${out.height} but input '${spec.name}' takes ${W}×${H} and this preprocessing does not resize; use a resizing preset (imagenet, caffe-imagenet), set resizeShorter, or resize the images`,
      );
    }
  } else {
    let shorter = spec.resizeShorter;
    let size = shorterSideSize(out.width, out.height, shorter);
    while (size.width < W || size.height < H) size = shorterSideSize(out.width, out.height, ++shorter);
    if (size.width !== out.width || size.height !== out.height) out = resizeBilinear(out, size.width, size.height);
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
