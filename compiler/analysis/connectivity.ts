/**
 * Connectivity of a convolution (or fully connected) layer: which input channels each
 * output filter reads. It is a list of clusters; a cluster is a set of filters that share
 * one input subset:
 *
 *   dense            one cluster { all filters, all inputs }
 *   uniform grouped  g clusters { filters [c·m, (c+1)·m), inputs [c·w, (c+1)·w) }
 *   self-grouped     arbitrary clusters: unequal filter counts, unequal and possibly
 *                    overlapping input subsets (SG-CNN, Guo et al. 2020)
 *
 * Every filter belongs to exactly one cluster. Index lists are ascending.
 *
 *   mask[i, j]        = 1 when filter i's cluster reads input j, else 0
 *   MACs(connectivity) = Σ_c |filters_c| · |inputs_c| · k² · P
 *       with k² the kernel area and P the output positions (N·H_out·W_out)
 *   importance v_i[j] = Σ_hw |W[i, j, h, w]| · mask[i, j]  (|W| row of an FC layer)
 */
import { RegroupError } from '../errors.js';
import type { Tensor } from '../ir/tensor.js';

/** Filters that share one input subset. */
export interface Cluster {
  /** Output channels (filters), ascending. */
  readonly filters: Int32Array;
  /** Input channels the filters read, ascending. */
  readonly inputs: Int32Array;
}

/** Which inputs every filter of one layer reads. */
export interface Connectivity {
  readonly outChannels: number;
  readonly inChannels: number;
  readonly clusters: readonly Cluster[];
}

const range = (from: number, to: number) => Int32Array.from({ length: to - from }, (_, i) => from + i);

/** Every filter reads every input. */
export function denseConnectivity(outChannels: number, inChannels: number): Connectivity {
  return { outChannels, inChannels, clusters: [{ filters: range(0, outChannels), inputs: range(0, inChannels) }] };
}

/** ONNX `Conv(group = g)`: block-diagonal connectivity. */
export function uniformConnectivity(outChannels: number, inChannels: number, groups: number): Connectivity {
  if (outChannels % groups !== 0 || inChannels % groups !== 0) {
    throw new RegroupError(
      'invalid-ir',
      `cannot split ${outChannels} filters and ${inChannels} inputs into ${groups} equal groups`,
    );
  }
  const [m, w] = [outChannels / groups, inChannels / groups];
  const clusters = Array.from({ length: groups }, (_, c) => ({
    filters: range(c * m, (c + 1) * m),
    inputs: range(c * w, (c + 1) * w),
  }));
  return { outChannels, inChannels, clusters };
}

/** Connectivity of a conv weight [Cout, Cin/group, …] with its `group` attribute (dense when 1). */
export function convConnectivity(weightDims: readonly number[], group: number): Connectivity {
  const [outChannels, inPerGroup] = [weightDims[0]!, weightDims[1]!];
  return group === 1
    ? denseConnectivity(outChannels, inPerGroup)
    : uniformConnectivity(outChannels, inPerGroup * group, group);
}

/** Throws unless every filter is in exactly one cluster and every index list is ascending, in range and non-empty. */
export function validateConnectivity(conn: Connectivity, where: string): void {
  const fail = (message: string): never => {
    throw new RegroupError(
      'invalid-ir',
      `connectivity of '${where}': ${message}; rebuild it with selfGroup or denseConnectivity`,
    );
  };
  const owner = new Int32Array(conn.outChannels).fill(-1);
  conn.clusters.forEach((cluster, c) => {
    if (cluster.filters.length === 0 || cluster.inputs.length === 0) fail(`cluster ${c} is empty`);
    checkAscending(cluster.inputs, conn.inChannels, `cluster ${c} inputs`, fail);
    checkAscending(cluster.filters, conn.outChannels, `cluster ${c} filters`, fail);
    for (const f of cluster.filters) {
      if (owner[f] !== -1) fail(`filter ${f} is in clusters ${owner[f]} and ${c}`);
      owner[f] = c;
    }
  });
  const orphan = owner.indexOf(-1);
  if (orphan >= 0) fail(`filter ${orphan} is in no cluster`);
}

function checkAscending(list: Int32Array, bound: number, what: string, fail: (m: string) => never): void {
  for (let i = 0; i < list.length; i++) {
    if (list[i]! < 0 || list[i]! >= bound) fail(`${what}: index ${list[i]} is outside [0, ${bound})`);
    if (i > 0 && list[i]! <= list[i - 1]!) fail(`${what} are not strictly ascending`);
  }
}

/** 0/1 mask [Cout × Cin], row-major: mask[i·Cin + j] = 1 when filter i reads input j. */
export function connectivityMask(conn: Connectivity): Uint8Array {
  const mask = new Uint8Array(conn.outChannels * conn.inChannels);
  for (const { filters, inputs } of conn.clusters)
    for (const f of filters) for (const j of inputs) mask[f * conn.inChannels + j] = 1;
  return mask;
}

/** Filter–input pairs the connectivity keeps: Σ_c |filters_c| · |inputs_c|. */
export function connectivityPairs(conn: Connectivity): number {
  return conn.clusters.reduce((sum, c) => sum + c.filters.length * c.inputs.length, 0);
}

/** MACs under the cost model: kept pairs · kernel area · output positions. */
export function connectivityMacs(conn: Connectivity, kernelArea: number, outputPositions: number): number {
  return connectivityPairs(conn) * kernelArea * outputPositions;
}

/** True when one cluster reads every input (nothing is grouped). */
export function isDense(conn: Connectivity): boolean {
  return connectivityPairs(conn) === conn.outChannels * conn.inChannels;
}

/**
 * A grouped conv weight [Cout, Cin/g, …] written out densely as [Cout, Cin, …] with zeros
 * outside each group's block (the same typed-array kind; fp16 zeros are bit pattern 0).
 */
export function expandGroupedWeight(weight: Tensor, group: number): Tensor {
  if (group === 1) return weight;
  const [outChannels, inPerGroup, ...kernel] = weight.dims as [number, number, ...number[]];
  const area = kernel.reduce((a, b) => a * b, 1);
  const perGroup = outChannels / group;
  const inChannels = inPerGroup * group;
  const src = weight.data as Float32Array;
  const out = new (src.constructor as Float32ArrayConstructor)(outChannels * inChannels * area);
  for (let f = 0; f < outChannels; f++) {
    const column = Math.floor(f / perGroup) * inPerGroup;
    out.set(src.subarray(f * inPerGroup * area, (f + 1) * inPerGroup * area), (f * inChannels + column) * area);
  }
  return weight.withData([outChannels, inChannels, ...kernel], out);
}

/** A copy of a dense weight [Cout, Cin, …] with zeros wherever the mask is 0. */
export function maskWeight(weight: Tensor, conn: Connectivity): Tensor {
  const [outChannels, inChannels] = weight.dims as [number, number];
  if (outChannels !== conn.outChannels || inChannels !== conn.inChannels) {
    throw new RegroupError(
      'invalid-ir',
      `weight '${weight.name}' is [${weight.dims.join(',')}] but its connectivity is ${conn.outChannels}×${conn.inChannels}`,
    );
  }
  const area = weight.size / (outChannels * inChannels);
  const mask = connectivityMask(conn);
  const out = (weight.data as Float32Array).slice();
  for (let pair = 0; pair < mask.length; pair++) if (!mask[pair]) out.fill(0, pair * area, (pair + 1) * area);
  return weight.withData(weight.dims, out);
}

/**
 * Importance vectors of a dense weight [Cout, Cin, …] (row-major Cout × Cin):
 * v[i·Cin + j] = Σ_hw |W[i, j, hw]|, zero where the connectivity (when given) masks the pair.
 */
export function importanceVectors(weight: Tensor, conn?: Connectivity): Float64Array {
  const [outChannels, inChannels] = weight.dims as [number, number];
  const area = weight.size / (outChannels * inChannels);
  const values =
    weight.data instanceof Float32Array || weight.data instanceof Float64Array ? weight.data : weight.toFloat64();
  const mask = conn ? connectivityMask(conn) : undefined;
  const out = new Float64Array(outChannels * inChannels);
  for (let pair = 0; pair < out.length; pair++) {
    if (mask && !mask[pair]) continue;
    let sum = 0;
    for (let k = pair * area; k < (pair + 1) * area; k++) sum += Math.abs(values[k]!);
    out[pair] = sum;
  }
  return out;
}
