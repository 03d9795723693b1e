/**
 * Latency pricing of pruned models (passes/latency-pricing.ts) and the planner's latency mode:
 * predicted time = fixed + Σ layer time at the widths a removal set leaves, checked against
 * the layer widths of the model actually pruned; the planner meets a latency fraction, and
 * spends it where a millisecond costs least importance.
 */
import { describe, expect, it } from 'vitest';
import { analyzeChannels } from '../../compiler/analysis/channel-groups.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import type { Model } from '../../compiler/ir/model.js';
import { resnetBasic, vggChain } from '../../fixtures/models.js';
import { applyChannelMap, channelImportance, planPruning, PREPARE, runPasses } from '../../passes/index.js';
import { LatencyPricing, type LayerLatency } from '../../passes/latency-pricing.js';

function prepared(build: () => Model): Model {
  const model = build();
  runPasses(model, PREPARE, {}, { fixpoint: true });
  return model;
}

/** A layer costs 1 µs per (cin · cout) pair (100 µs for `heavy` ones) plus 1 µs; the rest 0.02 ms. */
function syntheticLatency(_model: Model, heavy: ReadonlySet<string> = new Set()): LayerLatency & { calls: number } {
  const seen = { calls: 0 };
  return {
    fixedMs: 0.02,
    layerMs(node, cin, cout) {
      seen.calls++;
      const scale = heavy.has(node.outputs[0]!.name) ? 100 : 1;
      return 0.001 + scale * 1e-3 * cin * cout;
    },
    get calls() {
      return seen.calls;
    },
  };
}

/** Σ layer time of a (pruned) model read from its weights' shapes. */
function timeOf(model: Model, latency: LayerLatency): number {
  let total = latency.fixedMs;
  for (const layer of computeCost(model, inferShapes(model)).layers) {
    if (layer.macs <= 0) continue;
    const w = inferShapes(model).typeOf(layer.node.inputs[1]!)!.shape as number[];
    const [cout, cin] = layer.node.opType === 'Conv' ? [w[0]!, w[1]! * layer.node.getInt('group', 1)] : [w[0]!, w[1]!];
    total += latency.layerMs(layer.node, cin, cout)!;
  }
  return total;
}

describe('LatencyPricing', () => {
  it('prices the dense model as fixed + Σ layers, and a pruned one as its realised widths', () => {
    for (const build of [vggChain, resnetBasic]) {
      const model = prepared(build);
      const shapes = inferShapes(model);
      const analysis = analyzeChannels(model, shapes);
      const cost = computeCost(model, shapes);
      const latency = syntheticLatency(model);
      const pricing = new LatencyPricing(analysis, cost, latency);
      expect(pricing.before).toBeCloseTo(timeOf(model, latency), 9);
      const scores = channelImportance(analysis, { criterion: 'l1' });
      const plan = planPruning(analysis, cost, scores, { keepLatency: 0.7, latency: pricing, roundTo: 1 });
      const removed = new Set<number>();
      for (const pg of plan.groups) for (const p of pg.removed) removed.add(analysis.groups[pg.id]!.roots[p]!);
      const predicted = pricing.evaluate(removed);
      // The planner met its target on the prediction …
      expect(Math.abs(predicted / pricing.before - 0.7)).toBeLessThan(0.03);
      // … and the prediction is the pruned model's own widths priced the same way.
      applyChannelMap(model, analysis, removed);
      model.graph.verify();
      expect(predicted).toBeCloseTo(timeOf(model, latency), 9);
    }
  });

  it('spends the budget where a millisecond costs least importance', () => {
    const model = prepared(vggChain);
    const shapes = inferShapes(model);
    const analysis = analyzeChannels(model, shapes);
    const cost = computeCost(model, shapes);
    const scores = channelImportance(analysis, { criterion: 'l1' });
    // Make one conv a hundred times as slow per channel pair: the channel group feeding it and the
    // one it produces save far more per channel removed.
    const heavyNode = cost.layers.find(
      (l) => l.node.opType === 'Conv' && l.macs > 0 && l.node !== cost.layers[0]!.node,
    )!;
    const heavy = new Set([heavyNode.node.outputs[0]!.name]);
    // The heavy conv's kept share of its (input × output) channel pairs under each pricing.
    const keptOf = (latency: LayerLatency) => {
      const pricing = new LatencyPricing(analysis, cost, latency);
      const plan = planPruning(analysis, cost, scores, { keepLatency: 0.6, latency: pricing, roundTo: 1 });
      const share = (role: string) => {
        const id = analysis.groups.findIndex((g) =>
          g.members.some((m) => m.node === heavyNode.node && m.role === role),
        );
        const group = plan.groups.find((g) => g.id === id)!;
        return group.keep / group.channels;
      };
      return share('in-channels') * share('out-channels');
    };
    expect(keptOf(syntheticLatency(model, heavy))).toBeLessThan(keptOf(syntheticLatency(model)));
  });
});
