/**
 * The importance-criterion registry (passes/importance.ts, passes/importance/): each weight
 * criterion's scores against a hand computation on a two-conv chain, a new criterion
 * registered as one object, the list `regroup prune --criterion` offers, data criteria
 * refused without measurements, and weight-proxy's score against the official code's rule
 * (numpy percentiles, intersection of filter and next-layer column) on a hand case with ties.
 */
import { describe, expect, it } from 'vitest';
import { analyzeChannels, type ChannelAnalysis } from '../../compiler/analysis/channel-groups.js';
import { computeCost } from '../../compiler/analysis/cost.js';
import { RegroupError } from '../../compiler/errors.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import {
  channelImportance,
  CRITERIA,
  criterionNamed,
  IMPORTANCE_CRITERIA,
  type ImportanceCriterion,
} from '../../passes/importance.js';
import { planPruning, removalSet } from '../../passes/plan-pruning.js';

// conv1: 4 filters over 2 inputs (1×1); conv2: 3 filters over conv1's 4 channels.
const W1 = [
  [0.5, -1.0],
  [2.0, 0.25],
  [-0.1, 0.1],
  [1.0, 1.0],
];
const W2 = [
  [0.3, -0.2, 1.0, 0.0],
  [-0.6, 0.1, 0.5, 2.0],
  [0.2, 0.2, -0.1, 0.4],
];
const GAMMA = [0.5, -2.0, 1.0, 0.25];

function chain(withBn = false) {
  const b = new GraphBuilder();
  const x = b.input('x', [1, 2, 4, 4]);
  let y = b.op('Conv', [x, b.initializer('w1', Tensor.float32([4, 2, 1, 1], W1.flat()))], {}, 'conv1');
  if (withBn) {
    const [ones, zeros] = [b.constant('var', [4], 1), b.constant('bias', [4], 0)];
    y = b.op(
      'BatchNormalization',
      [y, b.initializer('gamma', Tensor.float32([4], GAMMA)), zeros, b.constant('mean', [4], 0), ones],
      {},
      'bn1',
    );
  }
  y = b.op('Relu', [y]);
  b.output(b.op('Conv', [y, b.initializer('w2', Tensor.float32([3, 4, 1, 1], W2.flat()))], {}, 'conv2'));
  return analyzeChannels(b.model);
}

/** conv1's coupled channels (the prunable group), in filter order. */
function conv1Roots(analysis: ChannelAnalysis): number[] {
  return [...analysis.groups.find((g) => g.prunable)!.roots];
}

// Expectations use the float32 values the initializers hold.
const F1 = W1.map((r) => r.map(Math.fround));
const F2 = W2.map((r) => r.map(Math.fround));
const normalised = (xs: number[]) => xs.map((x) => x / (xs.reduce((a, b) => a + b, 0) / xs.length));
const l1Rows = (rows: number[][]) => rows.map((r) => r.reduce((s, v) => s + Math.abs(v), 0));
const l2Rows = (rows: number[][]) => rows.map((r) => Math.sqrt(r.reduce((s, v) => s + v * v, 0)));
const columns = (rows: number[][]) => rows[0]!.map((_, c) => rows.map((r) => r[c]!));

describe('importance criteria registry', () => {
  it('l1, l2 and fpgm score each channel as the hand computation (filter + next-layer column, each normalised by its mean)', () => {
    const analysis = chain();
    const roots = conv1Roots(analysis);
    const distances = F1.map((f) =>
      F1.reduce((s, g) => s + Math.sqrt(f.reduce((t, v, i) => t + (v - g[i]!) ** 2, 0)), 0),
    );
    const want: Record<string, [number[], number[]]> = {
      l1: [normalised(l1Rows(F1)), normalised(l1Rows(columns(F2)))],
      l2: [normalised(l2Rows(F1)), normalised(l2Rows(columns(F2)))],
      fpgm: [normalised(distances), normalised(l2Rows(columns(F2)))],
    };
    for (const [criterion, [filters, cols]] of Object.entries(want)) {
      for (const aggregate of ['sum', 'mean', 'max'] as const) {
        const scores = channelImportance(analysis, { criterion, aggregate });
        roots.forEach((root, c) => {
          const parts = [filters[c]!, cols[c]!];
          const expected =
            aggregate === 'max' ? Math.max(...parts) : (parts[0]! + parts[1]!) / (aggregate === 'mean' ? 2 : 1);
          expect(scores.get(root), `${criterion} ${aggregate} channel ${c}`).toBeCloseTo(expected, 12);
        });
      }
    }
  });

  it('bn scores BatchNormalization |γ| where there is one and l1 elsewhere', () => {
    const analysis = chain(true);
    const scores = channelImportance(analysis, { criterion: 'bn' });
    const gammas = normalised(GAMMA.map((g) => Math.abs(Math.fround(g))));
    conv1Roots(analysis).forEach((root, c) => {
      expect(scores.get(root)).toBeCloseTo(gammas[c]!, 12);
    });
    // conv2's channels have no BN: its filters' l1 norms.
    const conv2 = analysis.groups.find((g) => g.producers.some((p) => p.includes('conv2')))!;
    const filters = normalised(l1Rows(F2));
    [...conv2.roots].forEach((root, o) => {
      expect(scores.get(root)).toBeCloseTo(filters[o]!, 12);
    });
  });

  it('a new criterion is one object: registered, it scores; unknown names list the registry', () => {
    const position: ImportanceCriterion = {
      name: 'position',
      description: 'a channel scores its position in its group',
      needs: ['weights'],
      score: (group) => new Map([...group.roots].map((root, i) => [root, [i]])),
    };
    const analysis = chain();
    const registry = [...IMPORTANCE_CRITERIA, position];
    const scores = channelImportance(analysis, { criterion: 'position', registry });
    conv1Roots(analysis).forEach((root, c) => {
      expect(scores.get(root)).toBe(c);
    });
    expect(criterionNamed('position', registry)).toBe(position);
    expect(() => channelImportance(analysis, { criterion: 'position' })).toThrow(
      /unknown importance criterion 'position'; choose one of: l1, l2, fpgm, bn, weight-proxy, saliency/,
    );
  });

  it('prune offers the weight-only criteria; data criteria refuse to score without measurements', () => {
    expect([...CRITERIA]).toEqual(['l1', 'l2', 'fpgm', 'bn', 'weight-proxy']);
    expect(criterionNamed('saliency').needs).toEqual(['activations', 'gradients']);
    const analysis = chain();
    expect(() => channelImportance(analysis, { criterion: 'saliency' })).toThrow(RegroupError);
    expect(() => channelImportance(analysis, { criterion: 'saliency' })).toThrow(
      /needs activations and gradients measured on data/,
    );
  });
});

/** numpy.percentile(values, p), linear interpolation. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const h = ((sorted.length - 1) * p) / 100;
  const lo = Math.floor(h);
  return lo + 1 < sorted.length ? sorted[lo]! + (h - lo) * (sorted[lo + 1]! - sorted[lo]!) : sorted[lo]!;
}

describe('weight-proxy', () => {
  // conv1: 10 filters over one input (1×1), so a filter's l1 norm is |w|; conv2: one filter, so a column's is |w|.
  const FILTERS = [0.9, 0.1, 0.5, 0.5, 0.3, 1.2, 0.05, 0.7, 0.5, 0.2];
  const COLUMNS = [0.1, 0.2, 0.8, 0.3, 0.3, 0.05, 0.9, 0.4, 0.6, 1.0];

  function proxyChain() {
    const b = new GraphBuilder();
    const x = b.input('x', [1, 1, 6, 6]);
    const y = b.op('Relu', [
      b.op('Conv', [x, b.initializer('w1', Tensor.float32([10, 1, 1, 1], FILTERS))], {}, 'conv1'),
    ]);
    b.output(b.op('Conv', [y, b.initializer('w2', Tensor.float32([1, 10, 1, 1], COLUMNS))], {}, 'conv2'));
    return { model: b.model, analysis: analyzeChannels(b.model) };
  }

  /** The official code's candidates at percentile p: filter and column both below their layer's p-th percentile. */
  function official(p: number): number[] {
    const [f, c] = [percentile(FILTERS, p), percentile(COLUMNS, p)];
    return FILTERS.map((_, i) => i).filter((i) => FILTERS[i]! < f && COLUMNS[i]! < c);
  }

  it('a threshold τ on the score removes exactly the channels the percentile rule removes at p = 100·τ', () => {
    const { analysis } = proxyChain();
    const scores = channelImportance(analysis, { criterion: 'weight-proxy' });
    const roots = conv1Roots(analysis);
    const sizes = new Set<number>();
    for (let p = 0; p <= 100; p += 0.5) {
      const ours = roots
        .map((r, i) => [r, i] as const)
        .filter(([r]) => scores.get(r)! < p / 100)
        .map(([, i]) => i);
      expect(ours, `p = ${p}`).toEqual(official(p));
      sizes.add(ours.length);
    }
    // The intersection removes fewer than p% of the channels: at p = 50, two (channels 1 and 4), not five.
    expect(official(50)).toEqual([1, 4]);
    expect(Math.max(...sizes)).toBeLessThan(FILTERS.length);
  });

  it('planPruning on the scores lands on one of the rule’s removal sets', () => {
    const { model, analysis } = proxyChain();
    const cost = computeCost(model, analysis.shapes);
    const plan = planPruning(
      analysis,
      cost,
      channelImportance(analysis, { criterion: 'weight-proxy' }),
      { keepMacs: 0.6, roundTo: 1 },
      'weight-proxy',
    );
    const removed = removalSet(plan, analysis);
    const roots = conv1Roots(analysis);
    const positions = roots
      .map((r, i) => [r, i] as const)
      .filter(([r]) => removed.has(r))
      .map(([, i]) => i);
    expect(positions.length).toBeGreaterThan(0);
    const grid = Array.from({ length: 201 }, (_, k) => official(k / 2).join(','));
    expect(grid).toContain(positions.join(','));
  });
});
