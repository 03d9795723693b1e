/**
 * Random small CNNs for property-based tests: a fast-check arbitrary that yields a plain,
 * JSON-printable description of a graph (`CnnSpec`), and `buildCnn`, which turns any
 * description into a valid float32 opset-17 Model.
 *
 * A description is a list of layers, each reading earlier values by distance (`from: 0` is
 * the value made last), so a shrunk case reads as a short chain. The builder is tolerant:
 * every description builds, whatever the shrinker did to it. Where a layer's request cannot
 * hold (an Add of values with different channel counts, a grouped conv whose group does not
 * divide the channels, a Split of one channel), it resolves the request the way a network
 * designer would (a 1×1 projection shortcut, the nearest group that divides, an Identity),
 * and never by failing. Spatial mismatches are resolved by picking the nearest earlier value
 * of the same size.
 *
 * What it covers: convs (1×1 and 3×3, strided, dilated, explicit pads or auto_pad, dense,
 * depthwise with multiplier 1 or 2, grouped), BatchNormalization, Relu and Clip, residual
 * Adds (identity and projection shortcuts), Concat (a value with itself too), Split (opset-13
 * sizes input), squeeze-excitation, channel shuffle (Reshape → Transpose → Reshape, constant
 * or Shape-computed targets), max and average pools (pads, ceil_mode), Resize, Pad, NHWC
 * blocks behind Transposes and an NHWC graph input, Identity nodes, weights as initializers,
 * Constant nodes, Reshaped or Identity-aliased initializers (what PREPARE exists for), weights
 * tied between convs, channel Slices, per-channel Mul and PRelu, GAP/Flatten → Gemm heads, a
 * second graph output, and node names that are unique, empty or repeated. The batch dim is
 * the symbol 'N' or a number; value names are always unique, as ONNX requires.
 */
import fc from 'fast-check';
import { type AttrInput, floatAttr, GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';

export const OPSET = 17;
const BN_EPSILON = 1e-5;
/** Concat stops adding parts past this many channels, to keep graphs small. */
const MAX_CONCAT_CHANNELS = 24;

/** How a conv stores its weight; 'shared' reuses the last weight of the same dims (tied weights), if any. */
export type WeightForm = 'initializer' | 'constant' | 'reshaped' | 'identity' | 'shared';

export interface ConvLayer {
  readonly op: 'conv';
  readonly from: number;
  readonly out: number;
  readonly kernel: 1 | 3;
  readonly stride: 1 | 2;
  /** Dilation of a 3×3 kernel, unless auto_pad is SAME_* (onnxruntime refuses the pair). */
  readonly dilation: 1 | 2;
  /** Symmetric `pads` keeping the size at stride 1, or auto_pad (VALID falls back to pads when the input is too small). */
  readonly pad: 'explicit' | 'same-upper' | 'same-lower' | 'valid';
  /** 'depthwise': group = input channels, out = in (out ≤ in) or 2·in; 'grouped': group 2 or 4, whichever divides. */
  readonly group: 'dense' | 'grouped' | 'depthwise';
  readonly bias: boolean;
  readonly bn: boolean;
  readonly act: 'none' | 'relu' | 'clip';
  readonly weight: WeightForm;
}

export type LayerSpec =
  | ConvLayer
  /** Residual: from + other (other projected by a 1×1 conv + BN when its channels differ). */
  | { readonly op: 'add'; readonly from: number; readonly other: number }
  | { readonly op: 'concat'; readonly from: number; readonly others: readonly number[] }
  /** Split the channels at 1 + at mod (C − 1); both parts become values (the second one last). */
  | { readonly op: 'split'; readonly from: number; readonly at: number }
  /** GAP → 1×1 conv (reduce) → Relu → 1×1 conv → Sigmoid → Mul. */
  | { readonly op: 'se'; readonly from: number; readonly reduce: number }
  /**
   * Reshape [N, g, C/g, H, W] → Transpose(0, 2, 1, 3, 4) → Reshape back (g: the first of
   * groups, 2, 3, C that divides C). With `dynamic`, the targets are computed from Shape.
   */
  | { readonly op: 'shuffle'; readonly from: number; readonly groups: number; readonly dynamic: boolean }
  /** Stride 2; kernel 2 or 3 (1 when the input is smaller), pads 1 when asked, ceil_mode (see CnnBuilder.pool). */
  | {
      readonly op: 'pool';
      readonly from: number;
      readonly kind: 'max' | 'average';
      readonly kernel: 2 | 3;
      readonly pad: boolean;
      readonly ceil: boolean;
    }
  /** Nearest-neighbour Resize ×2 (Identity past 8×8). */
  | { readonly op: 'resize'; readonly from: number }
  /** Pad H and W by 1 on each side (reflect needs 2×2 at least: constant then). */
  | { readonly op: 'pad'; readonly from: number; readonly mode: 'constant' | 'reflect' | 'edge' }
  /** Slice channels [start mod C, + 1 + length mod (C − start)) (opset-13 bounds inputs). */
  | { readonly op: 'slice'; readonly from: number; readonly start: number; readonly length: number }
  /** Multiply by a per-channel [C, 1, 1] constant, or PRelu with a [C, 1, 1] slope. */
  | { readonly op: 'scale'; readonly from: number; readonly kind: 'mul' | 'prelu' }
  /** Transpose to NHWC → Add a [C] bias on the last axis → Relu → Transpose back. */
  | { readonly op: 'nhwc'; readonly from: number }
  | { readonly op: 'identity'; readonly from: number };

export interface CnnSpec {
  /** Seeds the weights, and every random choice a property makes about this graph. */
  readonly seed: number;
  readonly batch: 1 | 2;
  /** The input's batch dim is the number `batch` instead of the symbol 'N'. */
  readonly staticBatch: boolean;
  readonly channels: number;
  /** Input height = width. */
  readonly size: number;
  /** The input is [N, H, W, C] and a Transpose makes it NCHW. */
  readonly nhwc: boolean;
  readonly names: 'unique' | 'empty' | 'repeated';
  readonly layers: readonly LayerSpec[];
  readonly head: 'conv' | 'gap-gemm' | 'flatten-gemm' | 'flatten-mlp';
  readonly classes: number;
  /** Also make the value at this distance a graph output (its channels become pinned). */
  readonly extraOutput?: number;
}

// ---------------------------------------------------------------------------------------------
// The arbitrary. Alternatives are listed simplest first: fast-check shrinks towards them.

const distance = fc.nat({ max: 4 });

/** Alternatives by weight, the first one (the simplest) where fast-check shrinks to. */
const weighted = <T>(...options: [T, number][]): fc.Arbitrary<T> =>
  fc.oneof(...options.map(([value, weight]) => ({ arbitrary: fc.constant(value), weight })));

const convLayer: fc.Arbitrary<LayerSpec> = fc.record({
  op: fc.constant('conv' as const),
  from: distance,
  out: fc.integer({ min: 1, max: 12 }),
  kernel: fc.constantFrom(1 as const, 3 as const),
  stride: weighted<1 | 2>([1, 3], [2, 1]),
  dilation: weighted<1 | 2>([1, 4], [2, 1]),
  pad: weighted<ConvLayer['pad']>(['explicit', 6], ['same-upper', 1], ['same-lower', 1], ['valid', 1]),
  group: weighted<ConvLayer['group']>(['dense', 3], ['grouped', 1], ['depthwise', 1]),
  bias: fc.boolean(),
  bn: fc.boolean(),
  act: fc.constantFrom('none' as const, 'relu' as const, 'clip' as const),
  weight: weighted<WeightForm>(['initializer', 8], ['constant', 1], ['reshaped', 1], ['identity', 1], ['shared', 1]),
});

const otherLayers: fc.Arbitrary<LayerSpec>[] = [
  fc.record({ op: fc.constant('add' as const), from: distance, other: fc.nat({ max: 6 }) }),
  fc.record({
    op: fc.constant('concat' as const),
    from: distance,
    others: fc.array(fc.nat({ max: 6 }), { minLength: 1, maxLength: 2 }),
  }),
  fc.record({ op: fc.constant('split' as const), from: distance, at: fc.nat({ max: 15 }) }),
  fc.record({ op: fc.constant('se' as const), from: distance, reduce: fc.nat({ max: 7 }) }),
  fc.record({
    op: fc.constant('shuffle' as const),
    from: distance,
    groups: fc.constantFrom(2, 3, 4),
    dynamic: fc.boolean(),
  }),
  fc.record({
    op: fc.constant('pool' as const),
    from: distance,
    kind: fc.constantFrom('max' as const, 'average' as const),
    kernel: fc.constantFrom(2 as const, 3 as const),
    pad: fc.boolean(),
    ceil: fc.boolean(),
  }),
  fc.record({ op: fc.constant('resize' as const), from: distance }),
  fc.record({
    op: fc.constant('pad' as const),
    from: distance,
    mode: fc.constantFrom('constant' as const, 'reflect' as const, 'edge' as const),
  }),
  fc.record({
    op: fc.constant('slice' as const),
    from: distance,
    start: fc.nat({ max: 11 }),
    length: fc.nat({ max: 11 }),
  }),
  fc.record({
    op: fc.constant('scale' as const),
    from: distance,
    kind: fc.constantFrom('mul' as const, 'prelu' as const),
  }),
  fc.record({ op: fc.constant('nhwc' as const), from: distance }),
  fc.record({ op: fc.constant('identity' as const), from: distance }),
];

const layer: fc.Arbitrary<LayerSpec> = fc.oneof(
  { withCrossShrink: true },
  { arbitrary: convLayer, weight: 8 },
  ...otherLayers.map((arbitrary) => ({ arbitrary, weight: 1 })),
);

/** Random CNN descriptions: 1–`maxLayers` layers, 1–8 input channels, 4×4 to 8×8, batch 1 or 2. */
export function cnnSpec(maxLayers = 6): fc.Arbitrary<CnnSpec> {
  return fc
    .record({
      seed: fc.nat({ max: 0x7fffffff }),
      batch: fc.constantFrom(1 as const, 2 as const),
      staticBatch: fc.boolean(),
      channels: fc.integer({ min: 1, max: 8 }),
      size: fc.integer({ min: 4, max: 8 }),
      nhwc: fc.boolean(),
      names: fc.constantFrom('unique' as const, 'empty' as const, 'repeated' as const),
      layers: fc.array(layer, { minLength: 1, maxLength: maxLayers }),
      head: fc.constantFrom('conv' as const, 'gap-gemm' as const, 'flatten-gemm' as const, 'flatten-mlp' as const),
      classes: fc.integer({ min: 1, max: 5 }),
      extraOutput: fc.option(fc.nat({ max: 4 }), { nil: undefined, freq: 6 }),
    })
    .map(({ extraOutput, ...spec }) => (extraOutput === undefined ? spec : { ...spec, extraOutput }));
}

// ---------------------------------------------------------------------------------------------
// The builder

/** An NCHW value with its channel count and spatial size. */
interface Feature {
  readonly value: Value;
  readonly channels: number;
  readonly size: number;
}

/** Build the model a description stands for (the same description always gives the same bytes). */
export function buildCnn(spec: CnnSpec): Model {
  const net = new CnnBuilder(spec);
  spec.layers.forEach((layer, index) => net.layer(layer, `l${index}`));
  return net.finish();
}

class CnnBuilder {
  readonly b: GraphBuilder;
  readonly features: Feature[] = [];
  /** The batch dim as declared: the symbol 'N', or a number. */
  readonly batch: number | string;
  /** The last weight made for each dims, for 'shared' weights. */
  readonly #weights = new Map<string, Value>();

  constructor(readonly spec: CnnSpec) {
    this.b = new GraphBuilder({ opset: OPSET, seed: spec.seed, graphName: 'generated' });
    const { channels, size } = spec;
    this.batch = spec.staticBatch ? spec.batch : 'N';
    if (spec.nhwc) {
      const x = this.b.input('input', [this.batch, size, size, channels]);
      this.features.push({ value: this.op('Transpose', [x], { perm: [0, 3, 1, 2] }, 'input.to_nchw'), channels, size });
    } else {
      this.features.push({ value: this.b.input('input', [this.batch, channels, size, size]), channels, size });
    }
  }

  /** The value `distance` steps back from the newest. */
  pick(distance: number): Feature {
    return this.features[this.features.length - 1 - (distance % this.features.length)]!;
  }

  layer(spec: LayerSpec, name: string): void {
    const x = this.pick(spec.from);
    switch (spec.op) {
      case 'conv':
        return this.push(this.convLayer(x, spec, name));
      case 'add':
        return this.push(this.residual(x, spec.other, name));
      case 'concat':
        return this.push(this.concat(x, spec.others, name));
      case 'split':
        return this.split(x, spec.at, name);
      case 'se':
        return this.push(this.squeezeExcite(x, spec.reduce, name));
      case 'shuffle':
        return this.push(spec.dynamic ? this.dynamicShuffle(x, spec.groups, name) : this.shuffle(x, spec.groups, name));
      case 'pool':
        return this.push(this.pool(x, spec, name));
      case 'resize':
        return this.push(this.resize(x, name));
      case 'pad':
        return this.push(this.pad(x, spec.mode, name));
      case 'slice':
        return this.push(this.slice(x, spec.start, spec.length, name));
      case 'scale':
        return this.push(this.scale(x, spec.kind, name));
      case 'nhwc':
        return this.push(this.nhwcBlock(x, name));
      case 'identity':
        return this.push({ ...x, value: this.op('Identity', [x.value], {}, name) });
    }
  }

  finish(): Model {
    const x = this.features[this.features.length - 1]!;
    const { classes } = this.spec;
    const logits = this.head(x, classes);
    const shape = this.spec.head === 'conv' ? [this.batch, classes, x.size, x.size] : [this.batch, classes];
    this.b.output(logits, { dtype: DataType.FLOAT, shape });
    if (this.spec.extraOutput !== undefined) {
      const extra = this.pick(this.spec.extraOutput);
      if (!extra.value.isGraphInput() && extra.value !== logits)
        this.b.output(extra.value, {
          dtype: DataType.FLOAT,
          shape: [this.batch, extra.channels, extra.size, extra.size],
        });
    }
    this.nameNodes();
    return this.b.model;
  }

  convLayer(x: Feature, spec: ConvLayer, name: string): Feature {
    const { group, out } = convGroup(x.channels, spec);
    let y = this.conv(x, name, { ...spec, out, group }, spec.weight);
    if (spec.bn) y = this.bn(y, `${name}.bn`);
    if (spec.act === 'relu') y = { ...y, value: this.op('Relu', [y.value], {}, `${name}.relu`) };
    if (spec.act === 'clip') {
      const bounds = [this.b.constant(`${name}.min`, [], 0), this.b.constant(`${name}.max`, [], 6)];
      y = { ...y, value: this.op('Clip', [y.value, ...bounds], {}, `${name}.clip`) };
    }
    return y;
  }

  conv(x: Feature, name: string, c: ConvGeometry, form: WeightForm = 'initializer'): Feature {
    const stride = x.size > 1 ? (c.stride ?? 1) : 1;
    // onnxruntime refuses dilations with SAME_UPPER / SAME_LOWER.
    const dilation = c.kernel > 1 && !c.pad?.startsWith('same') ? (c.dilation ?? 1) : 1;
    const span = dilation * (c.kernel - 1) + 1;
    const autoPad = c.pad === 'valid' && x.size < span ? 'explicit' : (c.pad ?? 'explicit');
    const w = this.weight(`${name}.weight`, [c.out, x.channels / c.group, c.kernel, c.kernel], form);
    const inputs = c.bias ? [x.value, w, this.vector(`${name}.bias`, this.b.random.normals(c.out, 0.1))] : [x.value, w];
    const pad = (span - 1) >> 1;
    const attrs: Record<string, AttrInput> = {
      kernel_shape: [c.kernel, c.kernel],
      strides: [stride, stride],
      group: c.group,
      ...(dilation > 1 ? { dilations: [dilation, dilation] } : {}),
      ...(autoPad === 'explicit' ? { pads: [pad, pad, pad, pad] } : { auto_pad: AUTO_PAD[autoPad] }),
    };
    const size =
      autoPad === 'explicit'
        ? Math.floor((x.size + 2 * pad - span) / stride) + 1
        : autoPad === 'valid'
          ? Math.floor((x.size - span) / stride) + 1
          : Math.ceil(x.size / stride);
    return { value: this.op('Conv', inputs, attrs, name), channels: c.out, size };
  }

  /** A He-normal weight, stored the way `form` says. */
  weight(name: string, dims: number[], form: WeightForm): Value {
    const key = dims.join('x');
    const shared = form === 'shared' ? this.#weights.get(key) : undefined;
    if (shared) return shared;
    const count = dims.reduce((a, b) => a * b, 1);
    const data = this.b.random.normals(count, Math.sqrt(2 / (count / dims[0]!)));
    switch (form) {
      case 'initializer':
      case 'shared': {
        const w = this.b.initializer(name, Tensor.float32(dims, data));
        this.#weights.set(key, w);
        return w;
      }
      case 'constant':
        return this.op('Constant', [], { value: Tensor.float32(dims, data, name) }, `${name}.constant`);
      case 'reshaped': {
        const flat = this.b.initializer(`${name}.flat`, Tensor.float32([count], data));
        return this.op('Reshape', [flat, this.b.ints(`${name}.dims`, dims)], {}, `${name}.reshape`);
      }
      case 'identity':
        return this.op('Identity', [this.b.initializer(name, Tensor.float32(dims, data))], {}, `${name}.alias`);
    }
  }

  /** BatchNormalization with seeded γ ∈ [0.5, 1.5), β, μ and σ² ∈ [0.5, 1.5) (fixtures/models.ts NetBuilder.bn). */
  bn(x: Feature, name: string): Feature {
    const c = x.channels;
    const params = [
      this.vector(`${name}.weight`, this.uniforms(c, 0.5, 1.5)),
      this.vector(`${name}.bias`, this.b.random.normals(c, 0.1)),
      this.vector(`${name}.mean`, this.b.random.normals(c, 0.1)),
      this.vector(`${name}.var`, this.uniforms(c, 0.5, 1.5)),
    ];
    const value = this.op('BatchNormalization', [x.value, ...params], { epsilon: floatAttr(BN_EPSILON) }, name);
    return { ...x, value };
  }

  residual(x: Feature, other: number, name: string): Feature {
    let shortcut = this.sameSize(x, other);
    if (shortcut.channels !== x.channels) {
      const projected = this.conv(shortcut, `${name}.project`, {
        out: x.channels,
        kernel: 1,
        stride: 1,
        group: 1,
        bias: false,
      });
      shortcut = this.bn(projected, `${name}.project.bn`);
    }
    return { ...x, value: this.op('Add', [x.value, shortcut.value], {}, name) };
  }

  concat(x: Feature, others: readonly number[], name: string): Feature {
    const parts = [x];
    for (const distance of others) {
      const part = this.sameSize(x, distance);
      if (parts.reduce((sum, p) => sum + p.channels, part.channels) <= MAX_CONCAT_CHANNELS) parts.push(part);
    }
    const value = this.op(
      'Concat',
      parts.map((p) => p.value),
      { axis: 1 },
      name,
    );
    return { value, channels: parts.reduce((sum, p) => sum + p.channels, 0), size: x.size };
  }

  split(x: Feature, at: number, name: string): void {
    if (x.channels < 2) return this.push({ ...x, value: this.op('Identity', [x.value], {}, name) });
    const first = 1 + (at % (x.channels - 1));
    const sizes = [first, x.channels - first];
    const parts = this.b.ops('Split', [x.value, this.b.ints(`${name}.sizes`, sizes)], 2, { axis: 1 }, name);
    parts.forEach((value, i) => this.push({ value, channels: sizes[i]!, size: x.size }));
  }

  squeezeExcite(x: Feature, reduce: number, name: string): Feature {
    const squeezed = { ...x, value: this.op('GlobalAveragePool', [x.value], {}, `${name}.pool`), size: 1 };
    const hidden = 1 + (reduce % Math.max(1, x.channels >> 1));
    const conv = (from: Feature, out: number, suffix: string) =>
      this.conv(from, `${name}.${suffix}`, { out, kernel: 1, stride: 1, group: 1, bias: true });
    const reduced = conv(squeezed, hidden, 'reduce');
    const relu = { ...reduced, value: this.op('Relu', [reduced.value], {}, `${name}.relu`) };
    const gate = this.op('Sigmoid', [conv(relu, x.channels, 'expand').value], {}, `${name}.sigmoid`);
    return { ...x, value: this.op('Mul', [x.value, gate], {}, `${name}.mul`) };
  }

  shuffle(x: Feature, groups: number, name: string): Feature {
    const g = [groups, 2, 3, x.channels].find((d) => d > 1 && x.channels % d === 0);
    if (g === undefined) return { ...x, value: this.op('Identity', [x.value], {}, name) };
    const split = this.b.ints(`${name}.split_shape`, [0, g, x.channels / g, x.size, x.size]);
    const grouped = this.op('Reshape', [x.value, split], {}, `${name}.split`);
    const swapped = this.op('Transpose', [grouped], { perm: [0, 2, 1, 3, 4] }, `${name}.transpose`);
    const merge = this.b.ints(`${name}.merge_shape`, [0, x.channels, x.size, x.size]);
    return { ...x, value: this.op('Reshape', [swapped, merge], {}, `${name}.merge`) };
  }

  /**
   * Output size ⌊ or ⌈(in + 2p − k) / 2⌉ + 1. Where ceil_mode's last window would start in the
   * padding, onnxruntime's kernel drops it but its load-time shape inference does not, and it
   * then refuses or mis-plans the model: ceil_mode is left off there.
   */
  pool(
    x: Feature,
    spec: { kind: 'max' | 'average'; kernel: 2 | 3; pad: boolean; ceil: boolean },
    name: string,
  ): Feature {
    const pad = spec.pad && x.size >= 2 ? 1 : 0;
    const k = x.size + 2 * pad >= spec.kernel ? spec.kernel : 1;
    const stride = k > 1 ? 2 : 1;
    const ceilSize = Math.ceil((x.size + 2 * pad - k) / stride) + 1;
    const ceil = spec.ceil && (ceilSize - 1) * stride < x.size + pad;
    const size = ceil ? ceilSize : Math.floor((x.size + 2 * pad - k) / stride) + 1;
    const attrs = {
      kernel_shape: [k, k],
      strides: [stride, stride],
      pads: [pad, pad, pad, pad],
      ...(ceil ? { ceil_mode: 1 } : {}),
    };
    return { ...x, value: this.op(spec.kind === 'max' ? 'MaxPool' : 'AveragePool', [x.value], attrs, name), size };
  }

  resize(x: Feature, name: string): Feature {
    if (x.size > 8) return { ...x, value: this.op('Identity', [x.value], {}, name) };
    const scales = this.b.constant(`${name}.scales`, [4], [1, 1, 2, 2]);
    return {
      ...x,
      value: this.op('Resize', [x.value, undefined, scales], { mode: 'nearest' }, name),
      size: 2 * x.size,
    };
  }

  pad(x: Feature, mode: 'constant' | 'reflect' | 'edge', name: string): Feature {
    const pads = this.b.ints(`${name}.pads`, [0, 0, 1, 1, 0, 0, 1, 1]);
    const value = this.op('Pad', [x.value, pads], { mode: mode === 'reflect' && x.size < 2 ? 'constant' : mode }, name);
    return { ...x, value, size: x.size + 2 };
  }

  /** The shuffle with its Reshape targets made at run time: Concat(Shape[0:1], [g, C/g], Shape[2:4]). */
  dynamicShuffle(x: Feature, groups: number, name: string): Feature {
    const g = [groups, 2, 3, x.channels].find((d) => d > 1 && x.channels % d === 0);
    if (g === undefined) return { ...x, value: this.op('Identity', [x.value], {}, name) };
    const shape = this.op('Shape', [x.value], {}, `${name}.shape`);
    const part = (from: number, to: number, suffix: string) =>
      this.op(
        'Slice',
        [shape, this.b.ints(`${name}.${suffix}.starts`, [from]), this.b.ints(`${name}.${suffix}.ends`, [to])],
        {},
        `${name}.${suffix}`,
      );
    const [batch, spatial] = [part(0, 1, 'batch'), part(2, 4, 'spatial')];
    const target = (dims: number[], suffix: string) =>
      this.op(
        'Concat',
        [batch, this.b.ints(`${name}.${suffix}.dims`, dims), spatial],
        { axis: 0 },
        `${name}.${suffix}`,
      );
    const grouped = this.op('Reshape', [x.value, target([g, x.channels / g], 'split_shape')], {}, `${name}.split`);
    const swapped = this.op('Transpose', [grouped], { perm: [0, 2, 1, 3, 4] }, `${name}.transpose`);
    return { ...x, value: this.op('Reshape', [swapped, target([x.channels], 'merge_shape')], {}, `${name}.merge`) };
  }

  slice(x: Feature, start: number, length: number, name: string): Feature {
    const begin = start % x.channels;
    const count = 1 + (length % (x.channels - begin));
    const bounds = [
      this.b.ints(`${name}.starts`, [begin]),
      this.b.ints(`${name}.ends`, [begin + count]),
      this.b.ints(`${name}.axes`, [1]),
    ];
    return { ...x, value: this.op('Slice', [x.value, ...bounds], {}, name), channels: count };
  }

  scale(x: Feature, kind: 'mul' | 'prelu', name: string): Feature {
    const factors = this.b.initializer(
      `${name}.factors`,
      Tensor.float32([x.channels, 1, 1], this.uniforms(x.channels, 0.25, 1.5)),
    );
    return { ...x, value: this.op(kind === 'mul' ? 'Mul' : 'PRelu', [x.value, factors], {}, name) };
  }

  nhwcBlock(x: Feature, name: string): Feature {
    const nhwc = this.op('Transpose', [x.value], { perm: [0, 2, 3, 1] }, `${name}.to_nhwc`);
    const biased = this.op(
      'Add',
      [nhwc, this.vector(`${name}.bias`, this.b.random.normals(x.channels, 0.1))],
      {},
      name,
    );
    const relu = this.op('Relu', [biased], {}, `${name}.relu`);
    return { ...x, value: this.op('Transpose', [relu], { perm: [0, 3, 1, 2] }, `${name}.to_nchw`) };
  }

  head(x: Feature, classes: number): Value {
    const flatten = (from: Feature) => this.op('Flatten', [from.value], { axis: 1 }, 'head.flatten');
    switch (this.spec.head) {
      case 'conv':
        return this.conv(x, 'head.conv', { out: classes, kernel: 1, stride: 1, group: 1, bias: true }).value;
      case 'gap-gemm': {
        const pooled = this.op('GlobalAveragePool', [x.value], {}, 'head.pool');
        return this.gemm(flatten({ ...x, value: pooled }), x.channels, classes, 'head.fc');
      }
      case 'flatten-gemm':
        return this.gemm(flatten(x), x.channels * x.size * x.size, classes, 'head.fc');
      case 'flatten-mlp': {
        const hidden = this.gemm(flatten(x), x.channels * x.size * x.size, 8, 'head.fc1');
        return this.gemm(this.op('Relu', [hidden], {}, 'head.relu'), 8, classes, 'head.fc2');
      }
    }
  }

  /** Gemm with a PyTorch-layout weight [out, in] (transB = 1) and a bias. */
  gemm(x: Value, features: number, out: number, name: string): Value {
    const w = this.b.weight(`${name}.weight`, [out, features], Math.sqrt(1 / features));
    const bias = this.vector(`${name}.bias`, this.b.random.normals(out, 0.05));
    return this.op('Gemm', [x, w, bias], { transB: 1 }, name);
  }

  /** The nearest earlier value (from `distance` back) of x's spatial size; x itself when there is none. */
  sameSize(x: Feature, distance: number): Feature {
    const n = this.features.length;
    for (let step = 0; step < n; step++) {
      const candidate = this.pick(distance + step);
      if (candidate.size === x.size) return candidate;
    }
    return x;
  }

  /** Node names as the description asks: kept, cleared, or collapsed onto one name per op type. */
  nameNodes(): void {
    if (this.spec.names === 'unique') return;
    for (const node of this.b.graph.nodes()) node.name = this.spec.names === 'empty' ? '' : node.opType.toLowerCase();
  }

  op(opType: string, inputs: readonly (Value | undefined)[], attrs: Record<string, AttrInput>, name: string): Value {
    return this.b.op(opType, inputs, attrs, name);
  }

  push(feature: Feature): void {
    this.features.push(feature);
  }

  vector(name: string, values: Float32Array): Value {
    return this.b.initializer(name, Tensor.float32([values.length], values));
  }

  uniforms(count: number, low: number, high: number): Float32Array {
    return Float32Array.from({ length: count }, () => this.b.random.uniform(low, high));
  }
}

interface ConvGeometry {
  out: number;
  kernel: number;
  group: number;
  bias: boolean;
  stride?: number;
  dilation?: number;
  pad?: ConvLayer['pad'];
}

const AUTO_PAD = { 'same-upper': 'SAME_UPPER', 'same-lower': 'SAME_LOWER', valid: 'VALID' } as const;

/** The group and output channels a conv layer gets on `inChannels` inputs. */
function convGroup(inChannels: number, spec: ConvLayer): { group: number; out: number } {
  if (spec.group === 'depthwise')
    return { group: inChannels, out: spec.out > inChannels ? 2 * inChannels : inChannels };
  if (spec.group === 'grouped') {
    const group = [4, 2].find((g) => inChannels % g === 0 && inChannels > g);
    if (group) return { group, out: group * Math.max(1, Math.round(spec.out / group)) };
  }
  return { group: 1, out: spec.out };
}

/** A description as a line to paste into test/property/regressions.test.ts. */
export function specSource(spec: CnnSpec): string {
  return JSON.stringify(spec);
}
