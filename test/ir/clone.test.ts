/**
 * Model.clone(): a deep copy without encode/decode. The copy must encode to the same bytes
 * as the original for every fixture and real model, hand back complete original → copy maps,
 * keep use-list order, and share nothing mutable (writing into the copy leaves the
 * original's bytes alone). Also Graph.renameValue.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES } from '../../fixtures/models.js';
import { attr } from '../../compiler/ir/attribute.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { decodeModel } from '../../compiler/onnx/decode.js';
import { encodeModel } from '../../compiler/onnx/encode.js';
import { allSharedModels, haveShared, PROJECT_ROOT, SHARED_FIXTURES } from '../helpers/shared.js';

const bytesOf = (model: Model): Buffer => Buffer.from(encodeModel(model).bytes);

/** A model with an If whose branches read an outer value, plus metadata everywhere. */
function ifModel(): Model {
  const b = new GraphBuilder({ opset: 17 });
  const cond = b.input('cond', [], DataType.BOOL);
  const x = b.input('x', [2]);
  const scale = b.constant('scale', [2], [2, 3]);
  const branch = (op: string, name: string) => {
    const g = new GraphBuilder({ opset: 17, graphName: name });
    const inner = g.graph.createNode(op, [x, scale], { name: `${name}_op` });
    g.graph.append(inner);
    g.output(inner.output(), { dtype: DataType.FLOAT, shape: [2] });
    return g.graph;
  };
  const node = b.node('If', [cond], {}, { name: 'choose' });
  node.setAttr(attr.graph('then_branch', branch('Mul', 'then')));
  node.setAttr(attr.graph('else_branch', branch('Add', 'else')));
  b.output(b.op('Relu', [node.output()], {}, 'relu'), { dtype: DataType.FLOAT, shape: [2] });
  b.model.metadataProps = [['author', 'test']];
  b.model.docString = 'model doc';
  b.graph.extras.docString = 'graph doc';
  node.extras.docString = 'node doc';
  x.info = { docString: 'input doc', metadataProps: [['k', 'v']] };
  return b.model;
}

/** Encode, clone, compare bytes; then mutate the clone and require the original unchanged. */
function expectFaithfulClone(model: Model): void {
  const before = bytesOf(model);
  const { model: copy, nodes, values } = model.clone();
  expect(bytesOf(copy).equals(before)).toBe(true);
  copy.graph.verify();
  expect(nodes.size).toBeGreaterThanOrEqual(model.graph.nodeCount);
  const badNodes = [...nodes].filter(([from, to]) => to === from || to.opType !== from.opType || to.name !== from.name);
  expect(badNodes).toEqual([]);
  // Same use lists, in the same order, through the node map.
  const sameUses = (from: Value, to: Value) =>
    to.useCount === from.useCount &&
    from.uses().every((u, k) => to.uses()[k]!.node === nodes.get(u.node) && to.uses()[k]!.inputIndex === u.inputIndex);
  const badValues = [...values]
    .filter(([from, to]) => to === from || to.name !== from.name || !sameUses(from, to))
    .map(([v]) => v.name);
  expect(badValues).toEqual([]);
  mutate(copy);
  expect(bytesOf(model).equals(before)).toBe(true);
}

/** Write into every tensor of the clone, rename things, drop metadata. */
function mutate(copy: Model): void {
  for (const v of copy.graph.initializers.values()) {
    const data = v.constValue!.data;
    if (data.length > 0 && !(data instanceof BigInt64Array || data instanceof BigUint64Array))
      (data as Float32Array)[0] = 12345;
  }
  for (const node of copy.graph.nodes()) {
    node.name = `${node.name}_x`;
    node.extras.docString = 'changed';
  }
  copy.metadataProps.push(['new', 'entry']);
  copy.opsetImports.push({ domain: 'com.example', version: 1 });
  copy.graph.extras.docString = 'changed';
  const first = copy.graph.inputs[0];
  if (first) copy.graph.renameValue(first, `${first.name}_renamed`);
}

describe('Model.clone', () => {
  const committed = fs.readdirSync(path.join(PROJECT_ROOT, 'fixtures/models')).filter((f) => f.endsWith('.onnx'));

  it.each(committed)('fixtures/models/%s: identical bytes, independent copy', (file) => {
    expectFaithfulClone(decodeModel(fs.readFileSync(path.join(PROJECT_ROOT, 'fixtures/models', file))));
  });

  it.each(Object.keys(FIXTURES))('generated fixture %s: identical bytes, independent copy', (key) => {
    expectFaithfulClone(FIXTURES[key]!());
  });

  it.skipIf(!haveShared).each(allSharedModels().map((f) => path.relative(SHARED_FIXTURES, f)))(
    'shared %s: identical bytes, independent copy',
    (rel) => {
      const file = path.join(SHARED_FIXTURES, rel);
      expectFaithfulClone(decodeModel(fs.readFileSync(file), { baseDir: path.dirname(file), source: rel }));
    },
  );

  it('copies If branches with their outer captures, doc strings and metadata', () => {
    const model = ifModel();
    const before = bytesOf(model);
    const { model: copy, values, graphs } = model.clone();
    expect(bytesOf(copy).equals(before)).toBe(true);
    copy.graph.verify();
    const ifNode = copy.graph.nodeList().find((n) => n.opType === 'If')!;
    const [thenBranch, elseBranch] = ifNode.subgraphs();
    expect(thenBranch!.parent).toBe(copy.graph);
    expect(graphs.size).toBe(3);
    const outerX = values.get(model.graph.inputs[1]!)!;
    expect(outerX.graph).toBe(copy.graph);
    expect(outerX.uses().map((u) => u.node.graph)).toEqual([thenBranch, elseBranch]);
    // The copy's name authority knows the branch names: a fresh name never collides.
    expect(copy.graph.names.fresh('then_op')).toBe('then_op_1');
    thenBranch!.nodeList()[0]!.opType = 'Sub';
    expect(bytesOf(model).equals(before)).toBe(true);
  });

  it('keeps a raw-stored tensor raw and a typed-stored tensor typed', () => {
    const raw = Tensor.fromRaw(DataType.FLOAT, [2], new Uint8Array(new Float32Array([1, 2]).buffer), { name: 'r' });
    const typed = Tensor.fromArray(DataType.FLOAT, [2], new Float32Array([1, 2]), { name: 't', storage: 'typed' });
    for (const t of [raw, typed]) {
      const c = t.clone();
      expect(c.storage).toBe(t.storage);
      expect(Array.from(c.data as Float32Array)).toEqual([1, 2]);
      (c.data as Float32Array)[0] = 9;
      expect(t.data[0]).toBe(1);
    }
  });
});

describe('Graph.renameValue', () => {
  it('renames an initializer in place in the initializer order, its tensor and its readers', () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', [1, 2]);
    const w = b.weight('w', [2, 2]);
    const bias = b.constant('bias', [2], [0, 1]);
    const y = b.op('Add', [b.op('MatMul', [x, w], {}, 'mm'), bias], {}, 'add');
    b.output(y);
    b.graph.renameValue(w, 'weight');
    expect([...b.graph.initializers.keys()]).toEqual(['weight', 'bias']);
    expect(b.graph.initializers.get('weight')).toBe(w);
    expect(w.constValue!.name).toBe('weight');
    expect(w.isInitializer()).toBe(true);
    b.graph.renameValue(x, 'image');
    b.graph.renameValue(y, 'logits');
    b.graph.verify();
    const back = decodeModel(encodeModel(b.model).bytes);
    expect(back.graph.inputs.map((v) => v.name)).toEqual(['image']);
    expect(back.graph.outputs.map((v) => v.name)).toEqual(['logits']);
    expect(back.graph.nodeList()[0]!.inputs.map((v) => v?.name)).toEqual(['image', 'weight']);
  });

  it('refuses a taken name, an empty name and a value of another graph', () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', [2]);
    const y = b.op('Relu', [x], {}, 'relu');
    b.output(y);
    expect(() => b.graph.renameValue(y, 'x')).toThrow(/already used/);
    expect(() => b.graph.renameValue(y, 'relu')).toThrow(/already used/);
    expect(() => b.graph.renameValue(y, '')).toThrow(/empty/);
    const other = new GraphBuilder({ opset: 17 });
    expect(() => other.graph.renameValue(x, 'z')).toThrow(/not defined in graph/);
    b.graph.renameValue(y, y.name);
    expect(y.name).not.toBe('');
  });
});
