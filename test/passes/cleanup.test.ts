/**
 * cleanup and remove-identity, checked against onnxruntime (outputs must match bit for bit:
 * both passes only delete or re-route), structurally (what went, what stayed, stats), on
 * negative cases with identical bytes, for idempotence, and on the real models; plus the pass
 * manager: fixpoint iteration, verification after each pass, failures naming the pass.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { RegroupError } from '../../compiler/errors.js';
import type { Model } from '../../compiler/ir/model.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { FIXTURES } from '../../fixtures/models.js';
import { cleanup } from '../../passes/cleanup.js';
import { runPasses } from '../../passes/manager.js';
import type { Pass } from '../../passes/pass.js';
import { removeIdentity } from '../../passes/remove-identity.js';
import { allSharedModels, haveShared, sharedModel } from '../helpers/shared.js';
import { checkRewrite, expectNoChange, opCounts, totalStats } from './compare.js';

/** x → Relu → out, plus dead branches: a chain, a Constant, an Add reading a weight only it uses. */
function modelWithDeadCode(): Model {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', [2, 3]);
  b.output(b.op('Relu', [x], {}, 'relu'));
  b.op('Neg', [b.op('Sigmoid', [x], {}, 'sigmoid')], {}, 'neg');
  b.op('Constant', [], { value: Tensor.float32([1], [1]) }, 'dead_constant');
  b.op('Add', [x, b.weight('only_dead_reads_me', [3])], {}, 'dead_add');
  b.weight('never_read', [4]);
  return b.model;
}

describe('cleanup', () => {
  it('removes dead chains, dead Constants and the initializers only they read', async () => {
    const model = modelWithDeadCode();
    const result = await checkRewrite(model, [cleanup], 'exact');
    expect(totalStats(result)).toEqual({ nodesRemoved: 4, initializersRemoved: 2, valueInfoRemoved: 0 });
    expect(opCounts(model)).toEqual({ Relu: 1 });
    expect([...model.graph.initializers.keys()]).toEqual([]);
    expect(model.graph.inputs.map((v) => v.name)).toEqual(['x']);
  });

  it('drops value_info entries of removed values, including ones another edit left behind', () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', [2]);
    b.output(b.op('Relu', [x]));
    const dead = b.op('Neg', [x]);
    const stale = b.op('Abs', [x]);
    b.graph.valueInfo.push(dead);
    b.graph.remove(stale.producer!);
    b.graph.valueInfo.push(stale); // an edit that re-declares a value it has just removed
    const result = runPasses(b.model, [cleanup], {}, { verify: true });
    // Graph.remove drops the dead node's entry itself; cleanup finds the one left behind.
    expect(totalStats(result)).toEqual({ nodesRemoved: 1, initializersRemoved: 0, valueInfoRemoved: 1 });
    expect(b.graph.valueInfo).toEqual([]);
  });

  it('keeps a node with one output used and one unused', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const [first] = b.ops('Split', [b.input('x', [4, 2]), b.ints('split', [1, 3])], 2, { axis: 0 });
    b.output(b.op('Relu', [first!]));
    expectNoChange(b.model, [cleanup]);
    expect(opCounts(b.model)).toEqual({ Split: 1, Relu: 1 });
  });

  it('keeps an unused initializer that is also a graph input (IR 3)', () => {
    const b = new GraphBuilder({ opset: 8, irVersion: 3 });
    b.output(b.op('Relu', [b.input('x', [2])]));
    b.graph.inputs.push(b.weight('overridable', [2]));
    expectNoChange(b.model, [cleanup]);
    expect(b.model.graph.initializers.has('overridable')).toBe(true);
  });

  it('keeps an initializer that is a graph output', () => {
    const b = new GraphBuilder({ opset: 13 });
    b.output(b.op('Relu', [b.input('x', [2])]));
    b.output(b.weight('exported', [2]));
    expectNoChange(b.model, [cleanup]);
  });

  it('keeps a dead node of a non-default domain and says why', () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', [2]);
    b.output(b.op('Relu', [x]));
    b.node('Print', [x], {}, { name: 'side_effect', domain: 'com.example' });
    b.model.opsetImports.push({ domain: 'com.example', version: 1 });
    const lines: string[] = [];
    const result = runPasses(b.model, [cleanup], { log: (line) => lines.push(line) }, { verify: true });
    expect(result.changed).toBe(false);
    expect(opCounts(b.model)).toEqual({ Relu: 1, Print: 1 });
    expect(lines).toEqual([expect.stringContaining('side_effect (com.example.Print) is unused but stays')]);
  });

  for (const [key, build] of Object.entries(FIXTURES)) {
    it(`changes nothing in fixture ${key}`, () => expectNoChange(build(), [cleanup]));
  }
});

describe('remove-identity', () => {
  it('bypasses Identity nodes but keeps one that is a graph output', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', [2, 3]);
    const relu = b.op('Relu', [b.op('Identity', [x])]);
    const chained = b.op('Identity', [b.op('Identity', [relu])]);
    b.output(b.op('Add', [chained, b.op('Identity', [b.weight('w', [3])])], {}, 'sum'));
    b.output(b.op('Identity', [relu], {}, 'exported'));
    const result = await checkRewrite(b.model, [removeIdentity], 'exact');
    expect(totalStats(result)).toEqual({ identitiesRemoved: 4 });
    expect(opCounts(b.model)).toEqual({ Relu: 1, Add: 1, Identity: 1 });
    expect(b.model.graph.outputs.map((v) => v.producer!.name)).toEqual(['sum', 'exported']);
  });

  it('changes nothing when the only Identity is a graph output', () => {
    const b = new GraphBuilder({ opset: 13 });
    b.output(b.op('Identity', [b.input('x', [2])]));
    expectNoChange(b.model, [removeIdentity]);
  });
});

describe.skipIf(!haveShared)('cleanup and remove-identity on real models', () => {
  for (const file of allSharedModels()) {
    const name = file.split('/models/')[1]!;
    it(`${name}: remove-identity + cleanup keep ORT outputs bit for bit`, async () => {
      const model = loadModel(file);
      const identities = opCounts(model).Identity ?? 0;
      const ppocr = file === sharedModel('ppocr');
      const result = await checkRewrite(
        model,
        [removeIdentity, cleanup],
        'exact',
        ppocr ? { shapes: { x: [1, 3, 48, 192] } } : {},
      );
      // PaddleOCR's only Identity produces its graph output, so it stays.
      expect(totalStats(result).identitiesRemoved).toBe(ppocr ? 0 : identities);
      expect(opCounts(model).Identity ?? 0).toBe(ppocr ? 1 : 0);
    });
  }
});

/** A pass that reports a change its first `times` runs. */
function changesTimes(times: number): Pass & { runs: number } {
  return {
    name: 'countdown',
    runs: 0,
    run() {
      this.runs++;
      return { changed: this.runs <= times };
    },
  };
}

describe('runPasses', () => {
  const tiny = () => {
    const b = new GraphBuilder({ opset: 13 });
    b.output(b.op('Relu', [b.input('x', [2])]));
    return b.model;
  };

  it('runs the list once without fixpoint', () => {
    const pass = changesTimes(3);
    const result = runPasses(tiny(), [pass, cleanup]);
    expect(result).toMatchObject({ changed: true, rounds: 1, converged: false });
    expect(result.records.map((r) => r.pass)).toEqual(['countdown', 'cleanup']);
  });

  it('repeats the list until a round changes nothing', () => {
    const pass = changesTimes(2);
    const result = runPasses(tiny(), [pass], {}, { fixpoint: true, verify: true });
    expect(result).toMatchObject({ changed: true, rounds: 3, converged: true });
    expect(pass.runs).toBe(3);
  });

  it('stops at maxIterations and logs that it did not converge', () => {
    const lines: string[] = [];
    const result = runPasses(
      tiny(),
      [changesTimes(100)],
      { log: (l) => lines.push(l) },
      { fixpoint: true, maxIterations: 4 },
    );
    expect(result).toMatchObject({ rounds: 4, converged: false });
    expect(lines).toEqual([expect.stringContaining('still changed the model after 4 rounds')]);
  });

  it('names the pass when it throws, keeping a RegroupError code', () => {
    const thrower: Pass = {
      name: 'thrower',
      run: () => {
        throw new Error('boom');
      },
    };
    const unsupported: Pass = {
      name: 'picky',
      run: () => {
        throw new RegroupError('unsupported', 'no');
      },
    };
    expect(() => runPasses(tiny(), [thrower])).toThrow(
      expect.objectContaining({ code: 'invalid-ir', message: "pass 'thrower' failed: boom" }),
    );
    expect(() => runPasses(tiny(), [unsupported])).toThrow(
      expect.objectContaining({ code: 'unsupported', message: "pass 'picky' failed: no" }),
    );
  });

  it('verifies after each pass and names the pass that broke the IR', () => {
    const breaker: Pass = {
      name: 'breaker',
      run(model) {
        const orphan = model.graph.createNode('RandomNormal', [], { name: 'orphan' });
        model.graph.outputs.push(orphan.output(0));
        return { changed: true };
      },
    };
    expect(() => runPasses(tiny(), [breaker], {}, { verify: true })).toThrow(
      /pass 'breaker' left invalid IR: .*graph output 'orphan_out' is not defined/,
    );
    expect(() => runPasses(tiny(), [breaker])).not.toThrow();
  });

  it('reports per-pass results with round numbers', () => {
    const model = modelWithDeadCode();
    const result = runPasses(model, [removeIdentity, cleanup], {}, { fixpoint: true, verify: true });
    expect(result.records.map((r) => [r.pass, r.round, r.result.changed])).toEqual([
      ['remove-identity', 1, false],
      ['cleanup', 1, true],
      ['remove-identity', 2, false],
      ['cleanup', 2, false],
    ]);
    expect(model.graph.nodeCount).toBe(1);
  });
});
