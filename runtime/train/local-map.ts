/**
 * The output map for local reconstruction from a channel-pruning removal set: for each
 * Conv/Gemm/MatMul of the dense model, the dense output channels that survive, in order —
 * exactly what `applyChannelMap` keeps (it deletes removed channels and keeps the order of
 * the rest). Pass it as LocalOptions.keptOutputs when the pruning plan is at hand; without
 * it, localReconstruct infers the map from output correlations.
 */
import type { ChannelAnalysis } from '../../compiler/analysis/channel-groups.js';

const LAYER_OPS = new Set(['Conv', 'Gemm', 'MatMul']);

/** Node name → dense channel index of each kept output, for an analysis of the dense model and the root elements removed. */
export function keptOutputsOf(analysis: ChannelAnalysis, removed: ReadonlySet<number>): Map<string, Int32Array> {
  const kept = new Map<string, Int32Array>();
  for (const touch of analysis.touches) {
    if (touch.role !== 'out-channels' || touch.inputIndex !== 1 || !LAYER_OPS.has(touch.node.opType) || !touch.node.name) continue;
    const channels: number[] = [];
    touch.elems.forEach((elem, channel) => removed.has(analysis.root(elem)) || channels.push(channel));
    kept.set(touch.node.name, Int32Array.from(channels));
  }
  return kept;
}
