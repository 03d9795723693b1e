/**
 * Profiling: fill a model's latency table. Each candidate structure of each distinct layer
 * shape (shapes.ts) becomes a single-layer ONNX model — input x [batch, cin, …in] → Conv
 * (or Gemm/MatMul) with a constant weight and bias → output — timed in onnxruntime with all
 * graph optimisations on (runtime/benchmark.ts: warm-up runs, then the median of timed runs).
 * The whole dense model is timed too and stored as `model <sha256[:16]>`, so that
 *
 *   fixed = whole − Σ over the model's layers of the layer's dense latency
 *
 * is what the layers do not explain (stem input, pooling, residual adds, memory-bound ops
 * that MACs do not show, per-op overheads). Only what the cached table lacks is measured.
 */
import crypto from 'node:crypto';
import { RegroupError } from '../../compiler/errors.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import type { Model } from '../../compiler/ir/model.js';
import { floatToHalf, Tensor } from '../../compiler/ir/tensor.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { benchmark } from '../benchmark.js';
import { feedInputs } from '../inputs.js';
import { checkProvider, type ExecutionProvider } from '../providers.js';
import { layerMs } from './interpolate.js';
import {
  candidateKey,
  candidates,
  layerShapes,
  modelKey,
  simdBlockOf,
  type LayerShape,
  type Structure,
} from './shapes.js';
import { openTable, saveTable, tableKey, type LatencyEntry, type LatencyTable } from './table.js';

export { layerMs } from './interpolate.js';
export {
  candidateKey,
  candidates,
  gridWidth,
  groupCounts,
  groupStep,
  layerShapes,
  modelKey,
  simdBlockOf,
  widthGrid,
} from './shapes.js';
export type { LayerShape, LayerRef, Structure } from './shapes.js';

/** Timing of one candidate: untimed warm-up runs, then timed runs (the median is stored). */
export const LAYER_WARMUP = 2;
export const LAYER_RUNS = 11;
const MODEL_WARMUP = 3;
const MODEL_RUNS = 15;
/** Save the table after this many measurements, so an interrupted run keeps most of its work. */
const SAVE_EVERY = 25;

export interface ProfileOptions {
  ep: ExecutionProvider;
  batch: number;
  /** Intra-op threads (0 = onnxruntime's default). */
  threads?: number;
  /** Measure every candidate again, even those the table has. */
  refresh?: boolean;
  /** Folder of the table files (default: table.ts defaultCacheDir()). */
  cacheDir?: string;
  /** After each measurement: candidates done and to do in this run, and what was measured. */
  onProgress?: (done: number, total: number, candidate: string) => void;
}

/** The whole model against its layers, in milliseconds at the table's batch. */
export interface ModelCost {
  /** The table entry of the whole model (`model <sha256[:16]>`). */
  key: string;
  /** Measured latency of the whole dense model. */
  wholeMs: number;
  /** Σ over every layer of the model (not only distinct shapes) of its dense latency. */
  layersMs: number;
  /** wholeMs − layersMs: what the layers do not explain; may be negative on a noisy machine. */
  fixedMs: number;
}

export interface ProfileResult {
  table: LatencyTable;
  shapes: LayerShape[];
  /** Candidates (and the whole model) measured in this run. */
  measured: number;
  /** Candidates (and the whole model) taken from the cached table. */
  reused: number;
  seconds: number;
  cost: ModelCost;
  /** Why a cached table was ignored, if it was. */
  notes: string[];
}

/** Every candidate of every shape, once (shapes can share candidates: 32→16 narrowed to 16→16 is 16→16). */
function uniqueCandidates(
  shapes: readonly LayerShape[],
  block: number,
): Map<string, { shape: LayerShape; structure: Structure }> {
  const unique = new Map<string, { shape: LayerShape; structure: Structure }>();
  for (const shape of shapes)
    for (const structure of candidates(shape, block)) {
      const key = candidateKey(shape, structure);
      if (!unique.has(key)) unique.set(key, { shape, structure });
    }
  return unique;
}

/**
 * Measure what the table for (ep, machine, batch, threads) lacks for `model` — each distinct
 * candidate once, the whole model once — save the table, and return it. `measured + reused`
 * is the number of distinct entries the model needs (candidates + 1 for the whole model).
 */
export async function profileModel(model: Model, options: ProfileOptions): Promise<ProfileResult> {
  const start = process.hrtime.bigint();
  checkProvider(options.ep);
  checkBatch(model, options.batch);
  const shapes = layerShapes(model);
  const { table, note } = openTable(tableKey(options), options.cacheDir);
  const bytes = encodeModel(model).bytes;
  const wholeKey = modelKeyOfBytes(bytes);
  const wanted = uniqueCandidates(shapes, simdBlockOf(table.key));
  const missing = (key: string) => options.refresh === true || !table.has(key);
  const todo = [...wanted].filter(([key]) => missing(key));
  const measureWhole = missing(wholeKey);
  const total = todo.length + (measureWhole ? 1 : 0);
  let measured = 0;
  for (const [key, { shape, structure }] of todo) {
    table.set(key, await timeLayer(shape, structure, options));
    measured++; // not inside the optional call below: `?.` would skip the increment with no callback
    options.onProgress?.(measured, total, key);
    if (measured % SAVE_EVERY === 0) saveTable(table);
  }
  if (measureWhole) {
    table.set(wholeKey, await timeWhole(bytes, model, options));
    measured++;
    options.onProgress?.(measured, total, wholeKey);
  }
  if (measured) saveTable(table);
  return {
    table,
    shapes,
    measured,
    reused: wanted.size + 1 - measured,
    seconds: Number(process.hrtime.bigint() - start) / 1e9,
    cost: modelCost(table, wholeKey, shapes),
    notes: note ? [note] : [],
  };
}

/**
 * The whole model's measured latency against its layers' dense latencies (the fixed cost a
 * latency planner cannot remove by shrinking layers). Throws when the table lacks an entry.
 */
export function modelCost(table: LatencyTable, wholeKey: string, shapes: readonly LayerShape[]): ModelCost {
  const wholeMs = table.ms(wholeKey);
  if (wholeMs === undefined)
    throw new RegroupError('unsupported', `the latency table has no '${wholeKey}'; run \`regroup profile\` first`);
  const layersMs = shapes.reduce((sum, shape) => sum + shape.layers.length * layerMs(table, shape, shape), 0);
  return { key: wholeKey, wholeMs, layersMs, fixedMs: wholeMs - layersMs };
}

/** The table entry name of a whole model (`model <sha256[:16]>` of its encoded bytes). */
export function modelKeyOf(model: Model): string {
  return modelKeyOfBytes(encodeModel(model).bytes);
}

function modelKeyOfBytes(bytes: Uint8Array): string {
  return modelKey(crypto.createHash('sha256').update(bytes).digest('hex'));
}

/** A model whose input has a fixed leading dimension runs only at that batch. */
function checkBatch(model: Model, batch: number): void {
  for (const input of feedInputs(model)) {
    const lead = input.type?.shape?.[0];
    if (typeof lead === 'number' && lead > 0 && lead !== batch)
      throw new RegroupError(
        'usage',
        `input '${input.name}' has a fixed batch of ${lead}: profile this model with --batch ${lead}, or export it with a symbolic batch`,
      );
  }
}

async function timeLayer(shape: LayerShape, s: Structure, options: ProfileOptions): Promise<LatencyEntry> {
  const model = singleLayerModel(shape, s, options.batch);
  const stats = await benchmark(model, model, {
    ep: options.ep,
    threads: options.threads,
    batch: options.batch,
    warmup: LAYER_WARMUP,
    runs: LAYER_RUNS,
  });
  return { medianMs: stats.medianMs, p90Ms: stats.p90Ms, minMs: stats.minMs, runs: stats.runs };
}

async function timeWhole(bytes: Uint8Array, model: Model, options: ProfileOptions): Promise<LatencyEntry> {
  const stats = await benchmark(bytes, model, {
    ep: options.ep,
    threads: options.threads,
    batch: options.batch,
    warmup: MODEL_WARMUP,
    runs: MODEL_RUNS,
  });
  return { medianMs: stats.medianMs, p90Ms: stats.p90Ms, minMs: stats.minMs, runs: stats.runs };
}

/**
 * The single-layer model of one structure of a shape at `batch`: the shape's float type,
 * opset 17, input `x`, weights filled with a fixed small pattern (dense float kernels do not
 * depend on the values).
 */
export function singleLayerModel(shape: LayerShape, s: Structure, batch: number): Model {
  const b = new GraphBuilder({ opset: 17, graphName: `latency_${shape.kind}` });
  const dtype = shape.dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
  const pattern = (dims: readonly number[]) => patternTensor(dims, dtype);
  if (shape.kind === 'conv') {
    const x = b.input('x', [batch, s.cin, ...shape.inputSize], dtype);
    const w = b.initializer('w', pattern([s.cout, s.cin / s.group, ...shape.kernel]));
    const bias = b.initializer('b', pattern([s.cout]));
    const attrs = {
      kernel_shape: shape.kernel,
      strides: shape.strides,
      pads: shape.pads,
      dilations: shape.dilations,
      group: s.group,
    };
    b.output(b.op('Conv', [x, w, bias], attrs, 'layer'));
  } else if (shape.kind === 'gemm') {
    const x = b.input('x', [batch, s.cin], dtype);
    const w = b.initializer('w', pattern([s.cout, s.cin]));
    b.output(b.op('Gemm', [x, w, b.initializer('b', pattern([s.cout]))], { transB: 1 }, 'layer'));
  } else {
    const x = b.input('x', shape.rows > 1 ? [batch, shape.rows, s.cin] : [batch, s.cin], dtype);
    b.output(b.op('MatMul', [x, b.initializer('w', pattern([s.cin, s.cout]))], {}, 'layer'));
  }
  return b.model;
}

/** A float32 or float16 tensor of small values in [−0.05, 0.05), deterministic and cheap to make. */
function patternTensor(dims: readonly number[], dtype: DataType): Tensor {
  const count = dims.reduce((a, d) => a * d, 1);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = ((Math.imul(i, 2654435761 | 0) >>> 0) % 1000) / 10000 - 0.05;
  if (dtype === DataType.FLOAT) return Tensor.float32(dims, data);
  return Tensor.fromArray(DataType.FLOAT16, dims, Uint16Array.from(data, floatToHalf));
}
