/**
 * fold-constants, checked against onnxruntime: the original model (ORT evaluates the
 * constant subgraphs at run time, optimisations disabled) and the folded one must give the
 * same outputs — bit for bit for data movement, casts and int64 arithmetic, within 1e-6
 * relative for float32 arithmetic (which is in fact exact; one case asserts that). Also
 * structural (what folded, what stayed), negative cases with identical bytes, idempotence,
 * and the real models: PaddleOCR's Constant weights and Reshape(Constant, Constant) biases,
 * every shared model and every fixture under fold-constants + cleanup.
 */
import { describe, expect, it } from 'vitest';
import { floatAttr, floatsAttr, GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';
import { floatToHalf, Tensor } from '../../compiler/ir/tensor.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { FIXTURES } from '../../fixtures/models.js';
import { cleanup } from '../../passes/cleanup.js';
import { foldConstants } from '../../passes/fold-constants.js';
import { runPasses } from '../../passes/manager.js';
import { Random } from '../../compiler/util/random.js';
import { allSharedModels, haveShared, sharedModel } from '../helpers/shared.js';
import { checkRewrite, expectNoChange, opCounts, totalStats, type Tolerance } from './compare.js';

const random = new Random(5);
const floats = (dims: number[]) => Tensor.float32(dims, random.normals(dims.reduce((a, b) => a * b, 1)));
const halfs = (dims: number[], dtype = DataType.FLOAT16) =>
  Tensor.fromArray(dtype, dims, Uint16Array.from(random.normals(dims.reduce((a, b) => a * b, 1)), floatToHalf));

interface Case {
  name: string;
  opset: number;
  /** Build the constant subgraph; its result is read by an Identity that is the graph output. */
  build: (b: GraphBuilder) => Value;
  folded: number;
  lifted?: number;
  tolerance?: Tolerance;
}

// Distinct names: GraphBuilder.initializer cannot yet reuse a taken name (see the report).
let serial = 0;
const c = (b: GraphBuilder, tensor: Tensor) => b.initializer(`c${serial++}`, tensor);
const ints = (b: GraphBuilder, values: number[]) => b.ints(`shape${serial++}`, values);

/** Data movement, casts and int64 arithmetic: all must match ORT exactly. */
const EXACT_CASES: Case[] = [
  {
    name: 'Reshape with 0 and -1',
    opset: 13,
    folded: 1,
    build: (b) => b.op('Reshape', [c(b, floats([2, 3, 4])), ints(b, [0, -1])]),
  },
  {
    name: 'Reshape allowzero on an empty tensor',
    opset: 14,
    folded: 1,
    build: (b) => b.op('Reshape', [c(b, floats([2, 0, 3])), ints(b, [0, 6])], { allowzero: 1 }),
  },
  {
    name: 'Reshape-1 with a shape attribute',
    opset: 4,
    folded: 1,
    build: (b) => b.op('Reshape', [c(b, floats([2, 6]))], { shape: [3, -1] }),
  },
  {
    name: 'Flatten axis 2',
    opset: 13,
    folded: 1,
    build: (b) => b.op('Flatten', [c(b, floats([2, 3, 4, 5]))], { axis: 2 }),
  },
  {
    name: 'Flatten axis -1',
    opset: 13,
    folded: 1,
    build: (b) => b.op('Flatten', [c(b, floats([2, 3, 4]))], { axis: -1 }),
  },
  {
    name: 'Squeeze-11 axes attribute',
    opset: 11,
    folded: 1,
    build: (b) => b.op('Squeeze', [c(b, floats([1, 3, 1]))], { axes: [0, -1] }),
  },
  {
    name: 'Squeeze-13 without axes',
    opset: 13,
    folded: 1,
    build: (b) => b.op('Squeeze', [c(b, floats([1, 3, 1, 2]))]),
  },
  {
    name: 'Squeeze-13 axes input',
    opset: 13,
    folded: 1,
    build: (b) => b.op('Squeeze', [c(b, floats([1, 3, 1, 2])), ints(b, [2])]),
  },
  {
    name: 'Unsqueeze-11 axes attribute',
    opset: 11,
    folded: 1,
    build: (b) => b.op('Unsqueeze', [c(b, floats([3, 2]))], { axes: [0, -1] }),
  },
  {
    name: 'Unsqueeze-13 axes input',
    opset: 13,
    folded: 1,
    build: (b) => b.op('Unsqueeze', [c(b, floats([3, 2])), ints(b, [1, -1])]),
  },
  {
    name: 'Transpose perm',
    opset: 13,
    folded: 1,
    build: (b) => b.op('Transpose', [c(b, floats([2, 3, 4]))], { perm: [2, 0, 1] }),
  },
  {
    name: 'Transpose default perm',
    opset: 13,
    folded: 1,
    build: (b) => b.op('Transpose', [c(b, floats([2, 3, 4, 5]))]),
  },
  {
    name: 'Concat of three on axis 1',
    opset: 13,
    folded: 1,
    build: (b) =>
      b.op('Concat', [c(b, floats([2, 1, 3])), c(b, floats([2, 2, 3])), c(b, floats([2, 3, 3]))], { axis: 1 }),
  },
  {
    name: 'Concat axis -1',
    opset: 13,
    folded: 1,
    build: (b) => b.op('Concat', [c(b, floats([2, 2])), c(b, floats([2, 3]))], { axis: -1 }),
  },
  {
    name: 'Gather axis 1, 2-D int64 indices with negatives',
    opset: 13,
    folded: 1,
    build: (b) => b.op('Gather', [c(b, floats([2, 3, 4])), b.ints('idx', [0, -1, 2, 1], [2, 2])], { axis: 1 }),
  },
  {
    name: 'Gather scalar int32 index',
    opset: 13,
    folded: 1,
    build: (b) =>
      b.op('Gather', [
        c(b, floats([3, 4])),
        b.initializer('idx', Tensor.fromArray(DataType.INT32, [], Int32Array.of(-2))),
      ]),
  },
  {
    name: 'a chain Identity → Transpose → Reshape folds in one run',
    opset: 13,
    folded: 3,
    build: (b) => b.op('Reshape', [b.op('Transpose', [b.op('Identity', [c(b, floats([2, 3]))])]), ints(b, [-1])]),
  },
  {
    name: 'Cast float32 → int64 truncates, → int32 → float64 → float32',
    opset: 13,
    folded: 4,
    build: (b) => {
      const x = c(b, Tensor.float32([6], [-2.7, -0.5, 0.5, 2.5, 1e9, -3]));
      const i64 = b.op('Cast', [x], { to: DataType.INT64 });
      return b.op('Cast', [b.op('Cast', [b.op('Cast', [i64], { to: DataType.INT32 })], { to: DataType.DOUBLE })], {
        to: DataType.FLOAT,
      });
    },
  },
  {
    name: 'Cast int64 → float32 and float32 → float64',
    opset: 13,
    folded: 2,
    build: (b) =>
      b.op('Cast', [b.op('Cast', [b.ints('k', [-(2 ** 53), 16777217, -5, 2 ** 40 + 1])], { to: DataType.FLOAT })], {
        to: DataType.DOUBLE,
      }),
  },
  {
    name: 'int64 Add/Sub/Mul/Div with broadcasting, division truncating toward zero',
    opset: 13,
    folded: 4,
    build: (b) => {
      const x = b.ints('x', [-7, 7, 9, -9, 100, 3], [2, 3]);
      const y = b.ints('y', [2, -3, 4]);
      return b.op('Div', [b.op('Mul', [b.op('Sub', [b.op('Add', [x, y]), y]), y]), b.ints('d', [-2, 3, 5])]);
    },
  },
  {
    name: 'float16 data movement copies bit patterns',
    opset: 13,
    folded: 4,
    build: (b) => {
      const t = b.op('Transpose', [b.op('Reshape', [c(b, halfs([2, 3, 4])), ints(b, [6, 4])])]);
      return b.op('Gather', [b.op('Concat', [t, c(b, halfs([4, 2]))], { axis: 1 }), b.ints('idx', [3, 0])]);
    },
  },
  {
    name: 'Constant nodes of every attribute form feed folds',
    opset: 13,
    folded: 3,
    lifted: 4,
    build: (b) => {
      const data = b.op('Constant', [], { value: floats([2, 3]) });
      const shape = b.op('Constant', [], { value_ints: [3, 2] });
      const index = b.op('Constant', [], { value_int: 1 });
      const scale = b.op('Constant', [], { value_floats: floatsAttr([0.5, 2]) });
      return b.op('Mul', [b.op('Gather', [b.op('Reshape', [data, shape]), index]), scale]);
    },
  },
];

/** Build a model whose constant subgraph feeds an Identity graph output (so ORT computes it). */
function caseModel(test: Case): Model {
  const b = new GraphBuilder({ opset: test.opset });
  b.output(b.op('Identity', [test.build(b)], {}, 'result'));
  return b.model;
}

describe('fold-constants on constant subgraphs, checked against onnxruntime', () => {
  for (const test of EXACT_CASES) {
    it(test.name, async () => {
      const model = caseModel(test);
      const result = await checkRewrite(model, [foldConstants], test.tolerance ?? 'exact');
      expect(result.changed).toBe(true);
      expect(totalStats(result)).toEqual({ constantsLifted: test.lifted ?? 0, nodesFolded: test.folded });
      // Only the Identity that is the graph output remains, reading an initializer.
      expect(opCounts(model)).toEqual({ Identity: 1 });
      expect(model.graph.outputs[0]!.producer!.input(0).isInitializer()).toBe(true);
    });
  }

  it('float32 Add/Sub/Mul/Div with broadcasting, mixed with a run-time input', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', [2, 3, 4]);
    const p = b.initializer('p', floats([2, 1, 4]));
    const q = b.initializer('q', floats([3, 1]));
    const folded = b.op('Div', [
      b.op('Mul', [b.op('Add', [p, q]), q]),
      b.op('Sub', [p, b.op('Constant', [], { value_float: floatAttr(0.25) })]),
    ]);
    b.output(b.op('Mul', [folded, x], {}, 'out'));
    const result = await checkRewrite(b.model, [foldConstants], { rtol: 1e-6 });
    expect(totalStats(result)).toEqual({ constantsLifted: 1, nodesFolded: 4 });
    expect(opCounts(b.model)).toEqual({ Mul: 1 });
  });

  it('float32 division folds bit-exactly (float64 then one rounding is IEEE float32 division)', async () => {
    const b = new GraphBuilder({ opset: 13 });
    b.output(b.op('Identity', [b.op('Div', [b.initializer('n', floats([64, 64])), b.initializer('d', floats([64]))])]));
    await checkRewrite(b.model, [foldConstants], 'exact');
    expect(opCounts(b.model)).toEqual({ Identity: 1 });
  });

  it('Shape of a statically shaped input folds, with opset-15 start/end', async () => {
    const b = new GraphBuilder({ opset: 15 });
    const x = b.input('x', [2, 3, 4]);
    const leading = b.op('Shape', [x], { end: 1 });
    const target = b.op('Concat', [leading, b.op('Constant', [], { value_ints: [-1] })], { axis: 0 });
    b.output(b.op('Reshape', [x, target], {}, 'out'));
    const result = await checkRewrite(b.model, [foldConstants], 'exact');
    expect(totalStats(result)).toEqual({ constantsLifted: 1, nodesFolded: 2 });
    expect(opCounts(b.model)).toEqual({ Reshape: 1 });
    expect(Array.from(b.model.graph.outputs[0]!.producer!.input(1).constValue!.data as BigInt64Array, Number)).toEqual([
      2, -1,
    ]);
  });

  it('bfloat16 Transpose copies bit patterns', () => {
    const b = new GraphBuilder({ opset: 13 });
    const source = halfs([2, 3], DataType.BFLOAT16);
    b.output(b.op('Identity', [b.op('Transpose', [b.initializer('c', source)])]));
    const result = runPasses(b.model, [foldConstants], {}, { verify: true });
    expect(totalStats(result)).toEqual({ constantsLifted: 0, nodesFolded: 1 });
    const folded = b.model.graph.outputs[0]!.producer!.input(0).constValue!;
    const bits = source.data as Uint16Array;
    expect(folded.dtype).toBe(DataType.BFLOAT16);
    expect(folded.dims).toEqual([3, 2]);
    expect(Array.from(folded.data as Uint16Array)).toEqual([bits[0], bits[3], bits[1], bits[4], bits[2], bits[5]]);
  });

  it('a lifted Constant keeps its output name and becomes an initializer', () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', [3]);
    const k = b.op('Constant', [], { value: floats([3]) }, 'k');
    b.output(b.op('Add', [x, k], {}, 'out'));
    const name = k.name;
    runPasses(b.model, [foldConstants], {}, { verify: true });
    const lifted = b.model.graph.initializers.get(name);
    expect(lifted?.uses().map((u) => u.node.opType)).toEqual(['Add']);
    expect(lifted?.type).toEqual({ dtype: DataType.FLOAT, shape: [3] });
  });
});

describe('fold-constants leaves alone what it must not fold', () => {
  const unchanged = (name: string, build: () => Model) =>
    it(name, () => {
      const model = build();
      expectNoChange(model, [foldConstants]);
    });

  unchanged('a Constant that is a graph output', () => {
    const b = new GraphBuilder({ opset: 13 });
    b.output(b.op('Constant', [], { value: floats([2]) }, 'k'));
    return b.model;
  });
  unchanged('a foldable node whose output is a graph output', () => {
    const b = new GraphBuilder({ opset: 13 });
    b.output(b.op('Transpose', [b.initializer('c', floats([2, 3]))]));
    return b.model;
  });
  unchanged('an initializer that is also a graph input (IR 3) is a default, not a constant', () => {
    const b = new GraphBuilder({ opset: 8, irVersion: 3 });
    const w = b.initializer('w', floats([2, 3]));
    b.graph.inputs.push(w);
    b.output(b.op('Identity', [b.op('Reshape', [w, b.ints('shape', [3, 2])])]));
    return b.model;
  });
  unchanged('float16 arithmetic', () => {
    const b = new GraphBuilder({ opset: 13 });
    b.output(b.op('Identity', [b.op('Add', [b.initializer('p', halfs([3])), b.initializer('q', halfs([3]))])]));
    return b.model;
  });
  unchanged('int64 division by zero', () => {
    const b = new GraphBuilder({ opset: 13 });
    b.output(b.op('Identity', [b.op('Div', [b.ints('n', [4, 5]), b.ints('d', [2, 0])])]));
    return b.model;
  });
  unchanged('a broadcast that would grow the model past 65536 elements', () => {
    const b = new GraphBuilder({ opset: 13 });
    b.output(
      b.op('Identity', [b.op('Add', [b.initializer('p', floats([300, 1])), b.initializer('q', floats([1, 300]))])]),
    );
    return b.model;
  });
  unchanged('Shape of a symbolically shaped input', () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', ['N', 3]);
    b.output(b.op('Reshape', [x, b.op('Shape', [x])]));
    return b.model;
  });
  unchanged('a string Constant', () => {
    const b = new GraphBuilder({ opset: 13 });
    b.output(b.op('Relu', [b.input('x', [2])]));
    b.op('Constant', [], { value: Tensor.fromStrings([1], [new TextEncoder().encode('label')]) });
    return b.model;
  });
  unchanged('a fold that contradicts the declared output type', () => {
    const b = new GraphBuilder({ opset: 13 });
    const t = b.op('Transpose', [b.initializer('c', floats([2, 3]))]);
    t.type = { dtype: DataType.FLOAT, shape: [2, 3] };
    b.graph.valueInfo.push(t);
    b.output(b.op('Identity', [t]));
    return b.model;
  });
  for (const [key, build] of Object.entries(FIXTURES))
    unchanged(`fixture ${key} (initializers only, nothing constant to compute)`, build);

  it('logs why a node with constant inputs stays', () => {
    const b = new GraphBuilder({ opset: 13 });
    b.output(b.op('Identity', [b.op('Div', [b.ints('n', [4]), b.ints('d', [0])], {}, 'div0')]));
    const lines: string[] = [];
    runPasses(b.model, [foldConstants], { log: (line) => lines.push(line) });
    expect(lines).toContainEqual(expect.stringMatching(/div0 \(Div\) stays: int64 division by zero/));
  });
});

describe.skipIf(!haveShared)('fold-constants + cleanup on real models', () => {
  const PPOCR_SHAPES = { x: [1, 3, 48, 192] };

  it('PaddleOCR: Constant weights become initializers, Reshape(Constant, Constant) biases fold', async () => {
    const model = loadModel(sharedModel('ppocr'));
    expect(opCounts(model)).toMatchObject({ Constant: 275, Reshape: 19 });
    const result = await checkRewrite(model, [foldConstants, cleanup], 'exact', { shapes: PPOCR_SHAPES });
    expect(totalStats(result)).toEqual({
      constantsLifted: 275,
      nodesFolded: 18,
      nodesRemoved: 0,
      initializersRemoved: 36,
      valueInfoRemoved: 0,
    });
    const counts = opCounts(model);
    expect(counts.Constant).toBeUndefined();
    expect(counts.Reshape).toBe(1);
    const reshapesOfConstants = model.graph
      .nodeList()
      .filter((n) => n.opType === 'Reshape' && n.inputs.every((v) => v?.isInitializer()));
    expect(reshapesOfConstants).toEqual([]);
    expect(model.graph.inputs.map((v) => v.name)).toEqual(['x']);
  });

  for (const file of allSharedModels()) {
    const name = file.split('/models/')[1]!;
    it(`${name}: same ORT outputs, bit for bit`, async () => {
      const model = loadModel(file);
      const inputs = file === sharedModel('ppocr') ? { shapes: PPOCR_SHAPES } : {};
      await checkRewrite(model, [foldConstants, cleanup], 'exact', inputs);
    });
  }
});

describe('fold-constants + cleanup on every fixture', () => {
  for (const [key, build] of Object.entries(FIXTURES)) {
    it(`${key}: same ORT outputs`, async () => {
      const model = build();
      const result = await checkRewrite(model, [foldConstants, cleanup], 'exact');
      expect(result.changed).toBe(false);
    });
  }
});
