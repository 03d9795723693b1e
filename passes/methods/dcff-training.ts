/**
 * DCFF's training side (passes/methods/dcff.ts builds the structure): the hooks that train the
 * full filter banks through the in-graph fusion W̃ = P_top · W, refresh P_top before every
 * epoch after the first at T(e), bake the trained fusion into plain weights, and carry a
 * least-squares refit of the baked model back into the banks (W += Pᵀ(PPᵀ)⁻¹(W̃′ − PW)).
 */
import type { TrainingHooks } from '../../compiler/autodiff/types.js';
import { RegroupError } from '../../compiler/errors.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { cholesky, choleskySolve } from '../../compiler/util/linalg.js';
import {
  finiteScores,
  fuseRows,
  fusionCode,
  fusionTemperature,
  selectRows,
  topChannels,
  type FilterRows,
} from '../filter-fusion.js';

/** One fused producer tensor in the training model: full bank `full` → compact `m` rows through `pTop`. */
export interface FusedTensor {
  /** Initializer holding the full C-row tensor (trainable). */
  readonly full: string;
  /** Initializer holding P_top [m, C] (fed). */
  readonly pTop: string;
  /** Shape of the compact tensor the producer reads ([m, …]). */
  readonly compactDims: readonly number[];
}

/** A fused channel group: its producers' full banks (weights first, in producer order) and its P_top. */
export interface FusedGroup {
  readonly pTop: string;
  readonly channels: number;
  readonly keep: number;
  /** Full weight banks whose rows (flattened, concatenated) are the filters P is computed on. */
  readonly weights: readonly string[];
  readonly tensors: readonly FusedTensor[];
}

/** The rows P is computed on: for each group channel, every producer's filter concatenated. */
export function groupFilters(weights: readonly Tensor[], positions: readonly (readonly number[])[]): FilterRows {
  const channels = positions[0]!.length;
  const sizes = weights.map((w) => w.size / w.dims[0]!);
  const dim = sizes.reduce((a, b) => a + b, 0);
  const data = new Float64Array(channels * dim);
  weights.forEach((w, p) => {
    const values = w.toFloat64();
    const offset = sizes.slice(0, p).reduce((a, b) => a + b, 0);
    for (let channel = 0; channel < channels; channel++) {
      const from = positions[p]![channel]! * sizes[p]!;
      data.set(values.subarray(from, from + sizes[p]!), channel * dim + offset);
    }
  });
  return { rows: channels, dim, data };
}

/** The training hooks of a fused model (see the file header). */
export function fusionHooks(model: Model, groups: readonly FusedGroup[]): TrainingHooks {
  return {
    model,
    frozen: groups.map((g) => g.pTop),
    trainable: groups.flatMap((g) => g.tensors.map((t) => t.full)),
    // Epoch 0's codes are the ones the structure was built with (T(0) on the starting filters);
    // keeping them keeps a refit adopted before training (hooks.adopt) exact for that epoch.
    beforeEpoch: (epoch, epochs, current) =>
      epoch === 0 ? undefined : refreshCodes(groups, fusionTemperature(epoch, epochs), current),
    finish: (trained) => bakeFusion(trained, groups),
    adopt: (refitted) => adoptRefit(model, groups, refitted),
  };
}

/**
 * The training model carrying a refit of its baked form (the local phase's least squares):
 * every other initializer is copied by name, and each full bank W moves by the least change
 * (minimum Frobenius norm) that makes its fusion equal the refitted compact tensor W̃':
 *
 *   W ← W + P_topᵀ (P_top P_topᵀ)⁻¹ (W̃' − P_top W)
 *
 * so the training graph's forward equals the refitted model's and the filters keep their
 * part of W that the fusion does not see.
 */
export function adoptRefit(training: Model, groups: readonly FusedGroup[], refitted: Model): Model {
  const compactNames = bakedNames(training, groups);
  const model = training.clone().model;
  const [graph, source] = [model.graph, refitted.graph];
  const fusion = new Set(groups.flatMap((g) => [g.pTop, ...g.tensors.map((t) => t.full)]));
  for (const [name, value] of graph.initializers) {
    const refit = source.initializers.get(name)?.constValue;
    if (fusion.has(name) || !refit || refit.dims.join(',') !== value.constValue?.dims.join(',')) continue;
    graph.setInitializer(value, Tensor.fromArray(refit.dtype, refit.dims, refit.data.slice(), { name }));
  }
  for (const g of groups) {
    const pTop = graph.initializers.get(g.pTop)!.constValue!.toFloat64();
    for (const t of g.tensors) {
      const target = source.initializers.get(compactNames.get(t.full)!)?.constValue;
      if (!target)
        throw new RegroupError(
          'invalid-ir',
          `dcff: the refitted model has no '${compactNames.get(t.full)}'; it is not this structure's baked model`,
        );
      const full = graph.initializers.get(t.full)!;
      const moved = leastChange(pTop, g.keep, full.constValue!.toFloat64(), g.channels, target.toFloat64());
      graph.setInitializer(
        full,
        Tensor.fromArray(DataType.FLOAT, full.constValue!.dims, Float32Array.from(moved), { name: t.full }),
      );
    }
  }
  return model;
}

/** W + Pᵀ(PPᵀ)⁻¹(target − P·W) for P [m, C], W [C, K], target [m, K]. */
function leastChange(
  p: Float64Array,
  m: number,
  w: Float64Array,
  channels: number,
  target: Float64Array,
): Float64Array {
  const rowSize = w.length / channels;
  const residual = fuseRows(p, m, w, channels).map((v, i) => target[i]! - v);
  const gram = new Float64Array(m * m);
  for (let a = 0; a < m; a++) {
    for (let b = 0; b < m; b++) {
      let dot = 0;
      for (let c = 0; c < channels; c++) dot += p[a * channels + c]! * p[b * channels + c]!;
      gram[a * m + b] = dot;
    }
  }
  const x = choleskySolve(cholesky(gram, m, 'P_top·P_topᵀ'), m, residual, rowSize);
  const out = Float64Array.from(w);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < channels; c++) {
      const coefficient = p[r * channels + c]!;
      if (coefficient === 0) continue;
      for (let d = 0; d < rowSize; d++)
        out[c * rowSize + d] = out[c * rowSize + d]! + coefficient * x[r * rowSize + d]!;
    }
  }
  return out;
}

/** Full bank name → the name of its compact tensor in the baked model (as bakeFusion names it). */
function bakedNames(training: Model, groups: readonly FusedGroup[]): Map<string, string> {
  const baked = bakeFusion(training, groups).graph;
  const names = new Map<string, string>();
  for (const t of groups.flatMap((g) => g.tensors)) {
    const base = t.full.endsWith('.full') ? t.full.slice(0, -'.full'.length) : t.full;
    const keys = [...baked.initializers.keys()];
    const match = keys.find((n) => n.startsWith(`${base}.fused`)) ?? keys.find((n) => n === base);
    if (!match) throw new RegroupError('invalid-ir', `dcff: no baked tensor for '${t.full}'`);
    names.set(t.full, match);
  }
  return names;
}

/** New P_top of every group from the current banks at temperature T; rows keep their channel where they can. */
export function refreshCodes(
  groups: readonly FusedGroup[],
  temperature: number,
  current: (name: string) => Tensor,
): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const g of groups) {
    const identity = Array.from({ length: g.channels }, (_, c) => c);
    const code = fusionCode(
      groupFilters(
        g.weights.map(current),
        g.weights.map(() => identity),
      ),
      temperature,
    );
    const previous = rowChannels(current(g.pTop), g.channels);
    const rows = finiteScores(code.scores) ? assignRows(previous, topChannels(code.scores, g.keep)) : previous;
    const pTop = selectRows(code, rows);
    if (pTop.every(Number.isFinite))
      out.set(g.pTop, Tensor.fromArray(DataType.FLOAT, [g.keep, g.channels], Float32Array.from(pTop)));
  }
  return out;
}

/** Row r's channel: argmax_k P_top[r, k] (the diagonal of P is its row maximum). */
function rowChannels(pTop: Tensor, channels: number): number[] {
  const values = pTop.toFloat64();
  return Array.from({ length: values.length / channels }, (_, r) => {
    let best = 0;
    for (let c = 1; c < channels; c++) if (values[r * channels + c]! > values[r * channels + best]!) best = c;
    return best;
  });
}

/** Rows whose channel stays in `top` keep it; the new channels fill the other rows in ascending order. */
function assignRows(previous: readonly number[], top: readonly number[]): number[] {
  const wanted = new Set(top);
  const kept = new Set(previous.filter((c) => wanted.has(c)));
  const incoming = top.filter((c) => !kept.has(c)).sort((a, b) => a - b);
  return previous.map((c) => (kept.has(c) && wanted.delete(c) ? c : incoming.shift()!));
}

/** The inference model: every fusion chain replaced by W̃ = P_top · W as a plain initializer. */
export function bakeFusion(trained: Model, groups: readonly FusedGroup[]): Model {
  const model = trained.clone().model;
  const graph = model.graph;
  for (const g of groups) {
    for (const t of g.tensors) {
      const full = graph.initializers.get(t.full);
      const pTop = graph.initializers.get(t.pTop)?.constValue;
      if (!full?.constValue || !pTop) {
        throw new RegroupError(
          'invalid-ir',
          `dcff: the trained model has no '${t.full}' or '${t.pTop}'; it is not the model the hooks built`,
        );
      }
      const baked = fuseRows(pTop.toFloat64(), g.keep, full.constValue.toFloat64(), g.channels);
      replaceChain(model, full, Tensor.fromArray(DataType.FLOAT, t.compactDims, Float32Array.from(baked)));
    }
    const p = graph.initializers.get(g.pTop);
    if (p && p.useCount === 0) graph.removeInitializer(p);
  }
  return model;
}

/** Replace full → Reshape → MatMul → Reshape by one initializer holding `baked`, named after the full bank. */
function replaceChain(model: Model, full: Value, baked: Tensor): void {
  const graph = model.graph;
  const rows = full.uses()[0]?.node;
  const fuse = rows?.output(0).uses()[0]?.node;
  const compact = fuse?.output(0).uses()[0]?.node;
  if (!rows || !fuse || !compact || full.useCount !== 1 || compact.opType !== 'Reshape') {
    throw new RegroupError(
      'invalid-ir',
      `dcff: '${full.name}' does not feed a Reshape → MatMul → Reshape fusion chain`,
    );
  }
  const name = full.name.endsWith('.full') ? full.name.slice(0, -'.full'.length) : full.name;
  const value = graph.addInitializer(graph.names.has(name) ? `${name}.fused` : name, baked, {
    fresh: graph.names.has(name),
  });
  compact.output(0).replaceAllUsesWith(value);
  for (const node of [compact, fuse, rows]) {
    const shapes = node.inputs.slice(1).filter((v): v is Value => !!v && v.isInitializer() && v !== full);
    graph.remove(node);
    for (const v of shapes) if (v.useCount === 0 && v.constValue?.dtype === DataType.INT64) graph.removeInitializer(v);
  }
  graph.removeInitializer(full);
}
