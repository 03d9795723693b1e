/**
 * Pruning a model whose weights are external data (the code paths of bench/large-model.ts on
 * a ~7 MB model): the output keeps its weights in `<output>.data` beside a small .onnx, its
 * tensors are byte for byte those of pruning the same model stored inline, onnxruntime gives
 * bit-identical outputs for both, and the input files are left untouched. Also: a model with
 * nothing to prune is written anew with its data file, `compress` keeps data external too, and
 * the CLI passes all of this through.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import { loadModel, saveModel } from '../../compiler/onnx/io.js';
import { NetBuilder } from '../../fixtures/models.js';
import { pruneModel } from '../../cli/prune.js';
import { regroup } from '../helpers/cli.js';
import { tempFolders } from '../helpers/temp.js';
import { outputBytes } from './output-bytes.js';

const folder = tempFolders('regroup-external-prune-');

/** Four 3×3 convs of 256 channels with BN and ReLU, GAP → Gemm: about 7 MB of float32 weights. */
function wideStack(): Model {
  const n = new NetBuilder(31, 'wide_stack');
  let x = n.input(16, 6);
  for (let k = 0; k < 4; k++) x = n.convBnRelu(x, `block${k}`, { outChannels: 256 });
  return n.gapHead(x, 10);
}

/** input → one Conv → graph output: its channels are pinned at both ends, so nothing prunes. */
function pinnedConv(): Model {
  const n = new NetBuilder(32, 'pinned_conv');
  const y = n.conv(n.input(16, 4), 'only', { outChannels: 32, bias: true });
  return n.finish(n.flatten(n.globalAveragePool(y, 'pool'), 1, 'flat'));
}

const digest = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const tensorBytes = (m: Model) =>
  new Map([...m.graph.initializers.values()].map((v) => [v.name, Buffer.from(v.constValue!.rawBytes())]));

const outputs = (source: string, model: Model) => outputBytes(source, model, 5);

describe('prune keeps external data external', () => {
  let inline: string;
  let external: string;

  beforeAll(() => {
    const model = wideStack();
    inline = path.join(folder('inline'), 'wide.onnx');
    external = path.join(folder('external'), 'wide.onnx');
    saveModel(model, inline);
    saveModel(model, external, { externalData: true });
  });

  it('writes <output>.data with the same tensors as pruning the inline model, and the same outputs', async () => {
    const inputDigests = [digest(external), digest(`${external}.data`)];
    expect(fs.statSync(`${external}.data`).size).toBeGreaterThan(6e6);
    const options = { keepMacs: 0.5, roundTo: 8 };
    const fromInline = path.join(folder('out-inline'), 'pruned.onnx');
    const fromExternal = path.join(folder('out-external'), 'pruned.onnx');
    const a = await pruneModel(inline, fromInline, options);
    const b = await pruneModel(external, fromExternal, options);
    expect(b.changed).toBe(true);
    expect(b.macsRatio).toBeLessThan(0.6);
    expect(b.macsRatio).toBe(a.macsRatio);
    expect(b.paramsRatio).toBe(a.paramsRatio);

    expect(fs.readdirSync(path.dirname(fromInline))).toEqual(['pruned.onnx']);
    expect(fs.readdirSync(path.dirname(fromExternal)).sort()).toEqual(['pruned.onnx', 'pruned.onnx.data']);
    expect(fs.statSync(fromExternal).size).toBeLessThan(64_000);
    expect(fs.statSync(`${fromExternal}.data`).size).toBeGreaterThan(0.4 * fs.statSync(`${external}.data`).size);

    const prunedInline = loadModel(fromInline);
    const prunedExternal = loadModel(fromExternal);
    const conv = [...prunedExternal.graph.initializers.values()].find((v) => v.name === 'block1.conv.weight')!;
    expect(conv.constValue!.external?.location).toBe('pruned.onnx.data');
    expect(conv.constValue!.dims[0]).toBeLessThan(256);
    expect(tensorBytes(prunedExternal)).toEqual(tensorBytes(prunedInline));
    expect(await outputs(fromExternal, prunedExternal)).toEqual(await outputs(fromInline, prunedInline));

    expect([digest(external), digest(`${external}.data`)]).toEqual(inputDigests);
  });

  it('writes a model with nothing to prune anew, its weights still in a data file beside it', async () => {
    const input = path.join(folder('pinned'), 'pinned.onnx');
    const model = pinnedConv();
    saveModel(model, input, { externalData: true });
    const output = path.join(folder('pinned-out'), 'same.onnx');
    const report = await pruneModel(input, output, { keepMacs: 0.5, roundTo: 8 });
    expect(report.changed).toBe(false);
    expect(fs.existsSync(`${output}.data`)).toBe(true);
    const written = loadModel(output);
    expect(written.graph.initializers.get('only.weight')!.constValue!.external?.location).toBe('same.onnx.data');
    expect(tensorBytes(written)).toEqual(tensorBytes(model));
  });

  it('`regroup compress` writes an external-data input the same way, its tensors those of the inline run', async () => {
    const inputDigests = [digest(external), digest(`${external}.data`)];
    const run = async (input: string, name: string) => {
      const out = path.join(folder(name), 'small.onnx');
      const r = await regroup('compress', input, '-o', out, '--method', 'l1', '--keep-macs', '0.5', '--no-latency');
      expect(r.code, r.stderr).toBe(0);
      return out;
    };
    const [fromInline, fromExternal] = [await run(inline, 'compress-inline'), await run(external, 'compress-external')];
    expect(fs.existsSync(`${fromInline}.data`)).toBe(false);
    expect(fs.statSync(fromExternal).size).toBeLessThan(64_000);
    const [a, b] = [loadModel(fromInline), loadModel(fromExternal)];
    expect(b.graph.initializers.get('block1.conv.weight')!.constValue!.external?.location).toBe('small.onnx.data');
    expect(tensorBytes(b)).toEqual(tensorBytes(a));
    expect(await outputs(fromExternal, b)).toEqual(await outputs(fromInline, a));
    expect([digest(external), digest(`${external}.data`)]).toEqual(inputDigests);
  });

  it('`regroup prune` and `regroup convert` pass it through the command line', async () => {
    const dir = folder('cli');
    const pruned = path.join(dir, 'pruned.onnx');
    const r = await regroup('prune', external, '-o', pruned, '--keep-macs', '0.5', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).changed).toBe(true);
    expect(fs.existsSync(`${pruned}.data`)).toBe(true);
    // convert without --external-data brings the weights back inline, values unchanged.
    const inlined = path.join(dir, 'inlined.onnx');
    const c = await regroup('convert', pruned, '-o', inlined);
    expect(c.code).toBe(0);
    expect(fs.existsSync(`${inlined}.data`)).toBe(false);
    const back = loadModel(inlined);
    expect([...back.graph.initializers.values()].every((v) => v.constValue!.external === undefined)).toBe(true);
    expect(tensorBytes(back)).toEqual(tensorBytes(loadModel(pruned)));
    expect(back.graph.initializers.get('block0.conv.weight')!.constValue!.dtype).toBe(DataType.FLOAT);
  });
});
