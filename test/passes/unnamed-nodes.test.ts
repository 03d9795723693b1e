/**
 * Models whose node names are empty or repeated (fixtures/models.ts unnamedDetector, as old
 * PyTorch detector exports): every grouping method must group, lower and report each layer
 * on its own — side tables keyed by Node, labels unique — and the lowered model must compute
 * what the masked-dense model computes (onnxruntime, optimisations off, max |diff| ≤ 1e-4 of
 * the largest |output|, as test/passes/lower-grouped.test.ts). onnxruntime refuses repeated
 * node names, so the repeated-names variant is compared with its node names cleared (names
 * do not change what a model computes). Channel pruning must work too.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { analyzeChannels } from '../../compiler/analysis/channel-groups.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { nodeLabel, nodeLabels } from '../../compiler/ir/label.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Node } from '../../compiler/ir/node.js';
import { loadModel, saveModel } from '../../compiler/onnx/io.js';
import { pruneModel } from '../../cli/prune.js';
import { unnamedDetector } from '../../fixtures/models.js';
import { lowerGrouped, PREPARE, runPasses, selfGroup, type LayerChoice } from '../../passes/index.js';
import { balancedSelfGroup } from '../../passes/self-group-balanced.js';
import { uniformGroup } from '../../passes/uniform-group.js';
import { expectReproduces } from './compare.js';

const TOLERANCE = 1e-4;

const VARIANTS = { 'empty names': false, 'empty and repeated names': true } as const;

function prepared(repeatedNames: boolean): Model {
  const model = unnamedDetector({ repeatedNames });
  runPasses(model, PREPARE, {}, { fixpoint: true });
  return model;
}

/** A copy without node names, which onnxruntime accepts whatever the original's names were. */
function runnable(model: Model): Model {
  const copy = model.clone().model;
  for (const node of copy.graph.nodes()) node.name = '';
  return copy;
}

async function expectSameAsReference(reference: Model, lowered: Model): Promise<void> {
  lowered.graph.verify();
  await expectReproduces(runnable(reference), runnable(lowered), TOLERANCE);
}

/** Every layer reported once, under a distinct non-empty label, with at least one grouped form. */
function expectDistinctLayers(choices: readonly LayerChoice[], connectivitySize: number): void {
  expect(choices).toHaveLength(connectivitySize);
  expect(new Set(choices.map((c) => c.node)).size).toBe(connectivitySize);
  const labels = choices.map((c) => c.label);
  expect(labels.every((l) => l.length > 0)).toBe(true);
  expect(new Set(labels).size).toBe(labels.length);
  expect(choices.filter((c) => c.form !== 'masked-dense').length).toBeGreaterThan(0);
}

describe('the unnamed-detector fixture', () => {
  it('has empty and repeated node names but unique value names', () => {
    expect(
      unnamedDetector()
        .graph.nodeList()
        .every((n) => n.name === ''),
    ).toBe(true);
    const nodes = unnamedDetector({ repeatedNames: true }).graph.nodeList();
    expect(nodes.filter((n) => n.name === '').length).toBeGreaterThan(nodes.length - 5);
    expect(nodes.filter((n) => n.name === 'conv')).toHaveLength(2);
    expect(nodes.filter((n) => n.name === 'relu')).toHaveLength(2);
    expect(nodes.filter((n) => n.opType === 'Conv' && constInChannels(n) >= 16).length).toBeGreaterThanOrEqual(4);
  });

  it('nodeLabel: the name when unique, else op#ordinal and output; every label distinct', () => {
    const model = unnamedDetector({ repeatedNames: true });
    const labels = nodeLabels(model.graph);
    expect(new Set(labels.values()).size).toBe(model.graph.nodeCount);
    const convs = model.graph.nodeList().filter((n) => n.opType === 'Conv');
    expect(labels.get(convs[0]!)).toBe(`Conv#1 (→ ${convs[0]!.output(0).name})`);
    const repeated = convs.find((n) => n.name === 'conv')!;
    expect(labels.get(repeated)).toMatch(/^Conv#\d+ \(→ .+\)$/);
    expect(nodeLabel(repeated)).toBe(labels.get(repeated));
  });
});

function constInChannels(node: Node): number {
  return node.inputs[1]?.constValue?.dims[1] ?? 0;
}

describe.each(Object.entries(VARIANTS))('grouping and lowering a model with %s', (_, repeated) => {
  it('selfGroup (keepMacs 0.5) → lowerGrouped: valid graph, grouped forms, equal to the masked-dense reference', async () => {
    const {
      model: reference,
      connectivity,
      stats,
    } = selfGroup(prepared(repeated), { groups: 4, keepMacs: 0.5, seed: 1 });
    expect(stats.targetMet).toBe(true);
    expect(new Set(stats.layers.map((l) => l.label)).size).toBe(stats.layers.length);
    expect(connectivity.size).toBe(stats.layers.length);
    expect(connectivity.size).toBeGreaterThanOrEqual(4);
    for (const form of ['padded', 'per-group', 'auto'] as const) {
      const { model: lowered, choices } = await lowerGrouped(reference, connectivity, { form });
      if (form !== 'auto') expectDistinctLayers(choices, connectivity.size);
      await expectSameAsReference(reference, lowered);
    }
  });

  it('balancedSelfGroup → lowerGrouped (grouped form): Conv(group) per layer, equal to the masked-dense reference', async () => {
    const result = balancedSelfGroup(prepared(repeated), { keepMacs: 0.5, seed: 1 });
    expect(result.connectivity.size).toBeGreaterThan(1);
    const { model: lowered, choices } = await lowerGrouped(result.model, result.connectivity, { form: 'grouped' });
    expectDistinctLayers(choices, result.connectivity.size);
    expect(choices.every((c) => c.form === 'grouped')).toBe(true);
    expect(lowered.graph.nodeList().filter((n) => n.opType === 'Conv' && n.getInt('group', 1) > 1)).toHaveLength(
      result.connectivity.size,
    );
    await expectSameAsReference(result.model, lowered);
  });

  it('uniformGroup → lowerGrouped (grouped form): equal to the masked-dense reference', async () => {
    const result = uniformGroup(prepared(repeated), { keepMacs: 0.5 });
    expect(result.connectivity.size).toBeGreaterThan(1);
    expect(new Set(result.stats.layers.map((l) => l.label)).size).toBe(result.stats.layers.length);
    const { model: lowered, choices } = await lowerGrouped(result.model, result.connectivity, { form: 'grouped' });
    expectDistinctLayers(choices, result.connectivity.size);
    await expectSameAsReference(result.model, lowered);
  });

  it('lowered nodes keep the empty and repeated names they had (no names invented)', async () => {
    const { model: reference, connectivity } = balancedSelfGroup(prepared(repeated), { keepMacs: 0.5, seed: 1 });
    const { model: lowered } = await lowerGrouped(reference, connectivity, { form: 'grouped' });
    const names = (m: Model) =>
      m.graph
        .nodeList()
        .filter((n) => n.opType === 'Conv')
        .map((n) => n.name)
        .sort();
    expect(names(lowered)).toEqual(names(reference));
  });
});

describe('channel pruning a model without usable node names', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-unnamed-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it.each(Object.entries(VARIANTS))(
    'pruneModel (keepMacs 0.5) on %s: a smaller valid model, one row per layer',
    async (variant, repeatedNames) => {
      const input = path.join(tmp, `${variant}.onnx`);
      saveModel(unnamedDetector({ repeatedNames }), input);
      const output = path.join(tmp, `${variant}-pruned.onnx`);
      const report = await pruneModel(input, output, { keepMacs: 0.5 });
      expect(report.changed).toBe(true);
      expect(report.macsRatio).toBeLessThan(0.6);
      loadModel(output).graph.verify();
      const layers = report.layers.map((l) => l.name);
      expect(layers).toHaveLength(7);
      expect(new Set(layers).size).toBe(layers.length);
      expect(report.layers.some((l) => l.channelsAfter < l.channelsBefore)).toBe(true);
    },
  );
});

describe('channel analysis of unnamed nodes', () => {
  for (const [variant, repeated] of Object.entries(VARIANTS)) {
    it(`names every channel group's producers by a distinct label (${variant})`, () => {
      const model = prepared(repeated);
      const analysis = analyzeChannels(model, inferShapes(model));
      const producers = analysis.groups.flatMap((g) => g.producers);
      expect(producers.length).toBeGreaterThan(3);
      for (const p of producers) expect(p).not.toMatch(/''/);
      expect(new Set(producers).size).toBe(producers.length);
      const labels = nodeLabels(model.graph);
      const convs = model.graph.nodeList().filter((n) => n.opType === 'Conv');
      for (const conv of convs) expect(producers).toContain(`Conv '${labels.get(conv)}'`);
    });
  }
});
