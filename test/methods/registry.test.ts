/**
 * The method seam: every method is reached through the registry; the methods that existed
 * before the seam write byte-identical models to what they wrote before it (hashes recorded
 * from the pre-seam `compress` on 2026-12-06 — the pruning baselines with `--round-to 1`, what
 * they did before it became a flag — no data, so no onnxruntime numerics are
 * involved and the bytes do not depend on the CPU); unknown methods and misplaced flags are
 * usage errors; quantized models are refused as `prune` refuses them.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compressModel } from '../../cli/pipelines/compress.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { saveModel } from '../../compiler/onnx/io.js';
import { DEFAULT_METHOD, METHODS, methodFlags, methodNamed } from '../../passes/methods/index.js';
import { regroup } from '../helpers/cli.js';
import { PROJECT_ROOT } from '../helpers/shared.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-methods-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const RESNET = path.join(PROJECT_ROOT, 'fixtures/models/fmnist-resnet.onnx');
const TINY = path.join(PROJECT_ROOT, 'fixtures/models/resnet-tiny.onnx');

/** sha256 of `compress fixtures/models/fmnist-resnet.onnx --keep-macs 0.5` before the seam. */
const BEFORE_SEAM: Record<string, string> = {
  'sg-cnn': '60a4a8ac1b5b38b0d21649359b6881066d0e1e0a97662d93e93650e7a8b691a7',
  'sg-balanced': '2ab92be421dcf2107b8f7bd23dfb975a0bc0270c45f510412680405b9e2c54e2',
  uniform: 'df8020f1324c9e68a6531912ad26d53a500f30d037e402fc35fd96e07d6a3532',
  l1: 'b6188676eb8c15f43e7379c3226515de96ad905468305a9726b9a627e113bc31',
  'l1-uniform': '765b0ec0f8b71fe2e00a6b2ebca208263b69e7c699401da1d60b1500a38edd03',
};

describe('method registry', () => {
  it('holds each method once, wsp as the default, and finds them by name', () => {
    const names = METHODS.map((m) => m.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual(expect.arrayContaining(Object.keys(BEFORE_SEAM)));
    expect(methodNamed(DEFAULT_METHOD).name).toBe('wsp');
    expect(() => methodNamed('nope')).toThrow(
      new RegExp(`unknown --method 'nope'; choose one of: ${names.join(', ')}`),
    );
  });

  it('lists every method flag once with the methods that declare it', () => {
    const flags = methodFlags();
    expect(new Set(flags.map((f) => f.flag.key)).size).toBe(flags.length);
    const groups = flags.find((f) => f.flag.key === 'groups')!;
    expect(groups.methods).toEqual(['sg-cnn']);
    for (const method of METHODS)
      for (const flag of method.flags)
        expect(flags.find((f) => f.flag.key === flag.key)!.methods).toContain(method.name);
  });

  it.each(Object.entries(BEFORE_SEAM))(
    '%s writes the same bytes as before the seam',
    async (method, sha256) => {
      const output = path.join(tmp, `${method}.onnx`);
      // Before the seam the pruning baselines kept exact counts; --round-to now defaults to the SIMD block.
      const methodOptions = method.startsWith('l1') ? { roundTo: 1 } : {};
      await compressModel(RESNET, { output, method, methodOptions, keepMacs: 0.5, latency: false });
      expect(crypto.createHash('sha256').update(fs.readFileSync(output)).digest('hex')).toBe(sha256);
    },
    60_000,
  );
});

/** `regroup compress` on the tiny ResNet at half the MACs, written to a scratch file, with `flags`. */
const compressTiny = (...flags: string[]) =>
  regroup('compress', TINY, '-o', path.join(tmp, 'x.onnx'), '--keep-macs', '0.5', ...flags);

describe('compress: bad input', () => {
  it('an unknown --method is a usage error that lists the registry', async () => {
    const r = await compressTiny('--method', 'magic');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`unknown --method 'magic'; choose one of: ${METHODS.map((m) => m.name).join(', ')}`);
    expect(fs.existsSync(path.join(tmp, 'x.onnx'))).toBe(false);
  });

  it("a method's flag given with another method is refused, naming the methods it belongs to", async () => {
    const r = await compressTiny('--method', 'uniform', '--groups', '8');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--groups applies to --method sg-cnn, not to uniform/);
  });

  it('no --method: wsp, with its weight proxy when there is no data, and a narrower model that is what it executes', async () => {
    const out = path.join(tmp, 'default.onnx');
    const r = await regroup('compress', TINY, '-o', out, '--keep-macs', '0.5', '--no-latency', '--json');
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.extra.method).toBe('wsp');
    expect(report.notes[0]).toMatch(/^method: wsp \(the default: .*; weight-proxy criterion\); --method names another/);
    expect(report.notes.join('\n')).toMatch(/wsp \(weight-proxy\): pruned/);
    // Channel pruning: the structure's MACs are the executed MACs, nothing is masked dense.
    const executed = report.totals.macsAfter / report.totals.macsBefore;
    expect(executed).toBeLessThan(0.6);
    expect(Math.abs(executed - report.totals.structureMacsRatio)).toBeLessThan(1e-9);
    expect(report.totals.paramsAfter).toBeLessThan(report.totals.paramsBefore);
    // A flag of another method without --method is refused against the default.
    const groups = await compressTiny('--groups', '8');
    expect(groups.code).toBe(2);
    expect(groups.stderr).toMatch(/--groups applies to --method sg-cnn, not to wsp/);
  });

  it('wsp with its paper criterion needs --data, and says so and names the proxy', async () => {
    const r = await compressTiny('--method', 'wsp');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /--method wsp ranks channels by activation and gradient sparsity on labelled images: pass --data, or use --criterion weight-proxy/,
    );
    const proxy = await regroup(
      'compress',
      TINY,
      '-o',
      path.join(tmp, 'p.onnx'),
      '--keep-macs',
      '0.5',
      '--method',
      'wsp',
      '--criterion',
      'weight-proxy',
      '--no-latency',
      '--json',
    );
    expect(proxy.code, proxy.stderr).toBe(0);
    const report = JSON.parse(proxy.stdout);
    expect(report.totals.macsAfter / report.totals.macsBefore).toBeLessThan(0.6);
  });

  it('a quantized model is refused exactly as prune refuses it: exit 1, nothing written', async () => {
    const file = path.join(tmp, 'qdq.onnx');
    saveModel(qdqModel(), file);
    const outputs = [path.join(tmp, 'q-compressed.onnx'), path.join(tmp, 'q-pruned.onnx')];
    const compress = await regroup('compress', file, '-o', outputs[0]!, '--keep-macs', '0.5', '--no-latency');
    const prune = await regroup('prune', file, '-o', outputs[1]!, '--keep-macs', '0.5');
    expect(compress.code).toBe(1);
    expect(prune.code).toBe(1);
    expect(compress.stderr).toMatch(
      /quantized models \(QuantizeLinear at node 'quant'\) are not supported yet; prune a float model before quantizing it/,
    );
    expect(compress.stderr).toBe(prune.stderr);
    for (const out of outputs) expect(fs.existsSync(out)).toBe(false);
  });
});

/** Float convs behind a QuantizeLinear → DequantizeLinear pair (QDQ format). */
function qdqModel() {
  const b = new GraphBuilder({ seed: 6, opset: 13 });
  const scale = b.constant('scale', [], 0.05);
  const zeroPoint = b.initializer('zero_point', Tensor.fromArray(DataType.UINT8, [], Uint8Array.of(128)));
  const q = b.op('QuantizeLinear', [b.input('x', [1, 16, 8, 8]), scale, zeroPoint], {}, 'quant');
  const dq = b.op('DequantizeLinear', [q, scale, zeroPoint], {}, 'dequant');
  const y = b.op(
    'Relu',
    [b.op('Conv', [dq, b.weight('w1', [32, 16, 3, 3])], { pads: [1, 1, 1, 1] }, 'conv1')],
    {},
    'relu1',
  );
  b.output(b.op('Conv', [y, b.weight('w2', [16, 32, 1, 1])], {}, 'conv2'));
  return b.model;
}

describe('--round-to (the channel-pruning methods)', () => {
  it('keeps channel counts on the grid for l1, wsp and dcff, and is refused by the grouping methods', async () => {
    for (const method of ['l1', 'wsp', 'dcff']) {
      const flags = method === 'wsp' ? ['--criterion', 'weight-proxy'] : [];
      const output = path.join(tmp, `round-${method}.onnx`);
      const r = await regroup(
        'compress',
        RESNET,
        '-o',
        output,
        '--keep-macs',
        '0.5',
        '--method',
        method,
        '--round-to',
        '8',
        '--no-latency',
        ...flags,
      );
      expect(r.code, r.stderr).toBe(0);
      const { loadModel } = await import('../../compiler/onnx/io.js');
      const widths = loadModel(output)
        .graph.nodeList()
        .filter((n) => n.opType === 'Conv')
        .map((n) => n.input(1).constValue!.dims[0]!);
      expect(
        widths.every((w) => w % 8 === 0 || w === 10),
        `${method}: ${widths.join(',')}`,
      ).toBe(true);
    }
    const r = await compressTiny('--method', 'sg-balanced', '--round-to', '8');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--round-to applies to --method l1 or l1-uniform or wsp or dcff, not to sg-balanced/);
  }, 60_000);
});
