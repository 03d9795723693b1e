/**
 * The output map for local reconstruction from a channel-pruning removal set: for each
 * Conv/Gemm/MatMul of the dense model, the dense output channels that survive, in order —
 * exactly what `applyChannelMap` keeps (it deletes removed channels and keeps the order of
 * the rest). Pass it as LocalOptions.keptOutputs when the pruning plan is at hand; without
 * it, localReconstruct infers the map from output correlations.
 */
import type { ChannelAnalysis } from '../../compiler/analysis/channel-groups.js';
import type { Node } from '../../compiler/ir/node.js';
import { isLinearLayer } from '../../compiler/ir/op-roles.js';

/**
 * Layer node → dense channel index of each kept output, for the channel analysis of the model
 * being pruned (taken before applyChannelMap narrows it in place, so the keys are the pruned
 * model's nodes) and the root elements removed. Keyed by Node: node names may be empty or repeated.
 */
export function keptOutputsOf(analysis: ChannelAnalysis, removed: ReadonlySet<number>): Map<Node, Int32Array> {
  const kept = new Map<Node, Int32Array>();
  for (const touch of analysis.touches) {
    if (
      touch.role !== 'out-channels' ||
      touch.inputIndex !== 1 ||
      !isLinearLayer(touch.node) ||
      touch.node.opType === 'ConvTranspose'
    )
      continue;
    const channels: number[] = [];
    touch.elems.forEach((elem, channel) => removed.has(analysis.root(elem)) || channels.push(channel));
    kept.set(touch.node, Int32Array.from(channels));
  }
  return kept;
}
