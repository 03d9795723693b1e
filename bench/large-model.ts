/**
 * Large-model benchmark: a plain conv stack whose weights pass protobuf's 2 GiB limit, kept in
 * an external data file, run through `regroup inspect`, `convert --external-data` and
 * `prune --keep-macs` as child processes. Each run's peak RSS (GNU time's %M, or the
 * child's own process.resourceUsage().maxRSS without it) must stay within
 * 1.2 × the model's size + 200 MB (MB = 10^6 bytes), and the pruned model must keep its weights in
 * `<output>.data` (a small .onnx beside it) with the right values: one pruned layer is compared
 * with the original weights cut at the plan's kept channels, both read straight from the files.
 *
 *   npm run bench:large-model [-- --gib 2.1] [--channels 2048] [--keep-macs 0.5] [--dir DIR] [--keep-files]
 *
 * The generator streams the weights to disk (4 MB at a time) and builds the small ModelProto by
 * hand, so it never holds the model and does not depend on the code it measures. Everything is
 * written under a fresh folder in the system's temporary directory (or --dir) and removed at the end.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { proto } from '../compiler/onnx/schema.js';
import { BenchArgs, ROOT } from './args.js';

// biome-ignore lint/suspicious/noExplicitAny: plain objects in protobufjs field layout
type P = any;

const args = new BenchArgs();
const gib = args.number('--gib', 2.1);
const channels = args.number('--channels', 2048);
const keepMacs = args.number('--keep-macs', 0.5);
const keepFiles = args.has('--keep-files');
const parent = args.string('--dir', os.tmpdir());
if (!(gib > 0) || !(channels > 0) || !(keepMacs > 0 && keepMacs <= 1)) {
  console.error('bench/large-model: --gib and --channels must be positive and --keep-macs in (0, 1]');
  process.exit(2);
}
const FLOAT = 1;
const ALIGN = 4096;
const MB = 1e6;
const KERNEL = 3;
const SPATIAL = 4;
const weightBytes = channels * channels * KERNEL * KERNEL * 4;
const layers = Math.ceil((gib * 2 ** 30) / (weightBytes + channels * 4));

interface Span {
  name: string;
  dims: number[];
  offset: number;
  length: number;
}

/** Seeded uniform values in (-scale, scale): xorshift32, one state per tensor. */
function fill(out: Float32Array, state: { s: number }, scaleOf: (index: number) => number, start: number): void {
  let s = state.s;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 2 ** 32 - 0.5) * 2 * scaleOf(start + i);
  }
  state.s = s;
}

/**
 * Write every layer's weight and bias to `dataFile`, 4 MB at a time, spans aligned like
 * regroup's writer; filter o of a layer is scaled by 1 + (o mod 7) so importance differs.
 */
function writeWeights(dataFile: string): Span[] {
  const fd = fs.openSync(dataFile, 'w');
  const spans: Span[] = [];
  const piece = new Float32Array(1 << 20);
  const perFilter = channels * KERNEL * KERNEL;
  const base = 1 / Math.sqrt(perFilter);
  let offset = 0;
  const tensor = (name: string, dims: number[], seed: number, scaleOf: (index: number) => number) => {
    offset = Math.ceil(offset / ALIGN) * ALIGN;
    const count = dims.reduce((a, b) => a * b, 1);
    const state = { s: seed | 1 };
    for (let done = 0; done < count; done += piece.length) {
      const part = piece.subarray(0, Math.min(piece.length, count - done));
      fill(part, state, scaleOf, done);
      fs.writeSync(fd, new Uint8Array(part.buffer, 0, part.byteLength), 0, part.byteLength, offset + done * 4);
    }
    spans.push({ name, dims, offset, length: count * 4 });
    offset += count * 4;
  };
  for (let k = 0; k < layers; k++) {
    tensor(`conv${k}.weight`, [channels, channels, KERNEL, KERNEL], 2 * k + 1, (i) => {
      return base * (1 + (Math.floor(i / perFilter) % 7));
    });
    tensor(`conv${k}.bias`, [channels], 2 * k + 2, () => 0.01);
  }
  fs.closeSync(fd);
  return spans;
}

/** The ModelProto: x → (Conv 3×3 → Relu) × layers → GlobalAveragePool → y, weights external. */
function modelProto(spans: Span[], location: string): Uint8Array {
  const nodes: P[] = [];
  let x = 'x';
  for (let k = 0; k < layers; k++) {
    nodes.push({
      name: `conv${k}`,
      op_type: 'Conv',
      input: [x, `conv${k}.weight`, `conv${k}.bias`],
      output: [`conv${k}.out`],
      attribute: [
        { name: 'kernel_shape', type: 7, ints: [KERNEL, KERNEL] },
        { name: 'pads', type: 7, ints: [1, 1, 1, 1] },
      ],
    });
    nodes.push({ name: `relu${k}`, op_type: 'Relu', input: [`conv${k}.out`], output: [`relu${k}.out`] });
    x = `relu${k}.out`;
  }
  nodes.push({ name: 'pool', op_type: 'GlobalAveragePool', input: [x], output: ['y'] });
  const info = (name: string, dims: number[]) => ({
    name,
    type: { tensor_type: { elem_type: FLOAT, shape: { dim: dims.map((d) => ({ dim_value: d })) } } },
  });
  const initializer = spans.map((s) => ({
    name: s.name,
    dims: s.dims,
    data_type: FLOAT,
    data_location: 1,
    external_data: [
      { key: 'location', value: location },
      { key: 'offset', value: String(s.offset) },
      { key: 'length', value: String(s.length) },
    ],
  }));
  const model = {
    ir_version: 8,
    opset_import: [{ domain: '', version: 13 }],
    producer_name: 'regroup bench/large-model',
    graph: {
      name: 'large-conv-stack',
      node: nodes,
      initializer,
      input: [info('x', [1, channels, SPATIAL, SPATIAL])],
      output: [info('y', [1, channels, 1, 1])],
    },
  };
  return proto.ModelProto.encode(proto.ModelProto.fromObject(model)).finish();
}

interface Run {
  peakBytes: number;
  seconds: number;
  stdout: string;
}

/** Run the CLI in a fresh process; its peak RSS from GNU time, or from the child itself. */
function regroup(cliArgs: string[]): Run {
  const cli = [path.join(ROOT, 'bin/regroup.js'), ...cliArgs];
  const gnuTime = fs.existsSync('/usr/bin/time');
  const hook =
    "data:text/javascript,process.on('exit',()=>process.stderr.write('peak-kb '+process.resourceUsage().maxRSS+'\\n'))";
  const started = performance.now();
  const r = gnuTime
    ? spawnSync('/usr/bin/time', ['-f', 'peak-kb %M', process.execPath, ...cli], { encoding: 'utf8' })
    : spawnSync(process.execPath, ['--import', hook, ...cli], { encoding: 'utf8' });
  const seconds = (performance.now() - started) / 1000;
  if (r.status !== 0) {
    console.error(`bench/large-model: regroup ${cliArgs.join(' ')} failed (exit ${r.status}):\n${r.stderr}`);
    process.exit(1);
  }
  const peak = /peak-kb (\d+)/.exec(r.stderr);
  if (!peak) {
    console.error(`bench/large-model: no peak RSS reported for regroup ${cliArgs[0]}`);
    process.exit(1);
  }
  return { peakBytes: Number(peak[1]) * 1024, seconds, stdout: r.stdout };
}

const fileSize = (file: string) => fs.statSync(file).size;

/** The raw float32 elements of one initializer, read from the model's data file by its external_data span. */
function readInitializer(modelFile: string, name: string): { dims: number[]; values: Float32Array } {
  const m: P = proto.ModelProto.decode(fs.readFileSync(modelFile));
  const t = m.graph.initializer.find((i: P) => i.name === name);
  if (t?.data_location !== 1) throw new Error(`${modelFile}: initializer '${name}' is not external`);
  const entry = (key: string) => t.external_data.find((e: P) => e.key === key)?.value as string;
  const length = Number(entry('length'));
  const bytes = Buffer.alloc(length);
  const fd = fs.openSync(path.join(path.dirname(modelFile), entry('location')), 'r');
  fs.readSync(fd, bytes, 0, length, Number(entry('offset')));
  fs.closeSync(fd);
  return { dims: t.dims.map(Number), values: new Float32Array(bytes.buffer, bytes.byteOffset, length / 4) };
}

/** Largest |pruned − original[keptOut][keptIn]| over one conv weight. */
function cutError(original: Float32Array, pruned: Float32Array, keptOut: number[], keptIn: number[]): number {
  const k2 = KERNEL * KERNEL;
  let worst = 0;
  keptOut.forEach((o, oi) => {
    keptIn.forEach((i, ii) => {
      for (let j = 0; j < k2; j++) {
        const want = original[(o * channels + i) * k2 + j]!;
        const got = pruned[(oi * keptIn.length + ii) * k2 + j]!;
        worst = Math.max(worst, Math.abs(got - want));
      }
    });
  });
  return worst;
}

const keptOf = (plan: P, producer: string): number[] => {
  const group = plan.groups.find((g: P) => g.producer === producer);
  const removed = new Set<number>(group?.removed ?? []);
  return Array.from({ length: channels }, (_, c) => c).filter((c) => !removed.has(c));
};

fs.mkdirSync(parent, { recursive: true });
const projectTree = path.relative(ROOT, fs.realpathSync(parent));
if (!projectTree.startsWith('..') && !path.isAbsolute(projectTree)) {
  console.error(
    `bench/large-model: --dir ${parent} lies inside the project; choose a folder outside it (default: the system's temp)`,
  );
  process.exit(2);
}
const expectedBytes = layers * (weightBytes + channels * 4);
const free = fs.statfsSync(parent);
const needed = expectedBytes * 2.7;
if (free.bavail * free.bsize < needed) {
  console.error(
    `bench/large-model: ${parent} has ${((free.bavail * free.bsize) / 2 ** 30).toFixed(1)} GiB free; the model, its converted copy and the pruned model need about ${(needed / 2 ** 30).toFixed(1)} GiB (pass --dir or a smaller --gib)`,
  );
  process.exit(1);
}
const dir = fs.mkdtempSync(path.join(parent, 'regroup-large-model-'));
const modelFile = path.join(dir, 'large.onnx');
const dataFile = `${modelFile}.data`;
let failures = 0;
try {
  const started = performance.now();
  const spans = writeWeights(dataFile);
  fs.writeFileSync(modelFile, modelProto(spans, path.basename(dataFile)));
  const size = fileSize(modelFile) + fileSize(dataFile);
  const budget = 1.2 * size + 200 * MB;
  console.log(
    `model: ${layers} × Conv ${channels}→${channels} 3×3 (+ bias, Relu) → GlobalAveragePool; ${(size / MB).toFixed(0)} MB ` +
      `(${(size / 2 ** 30).toFixed(2)} GiB; .onnx ${(fileSize(modelFile) / 1e3).toFixed(1)} kB + data); ` +
      `generated in ${((performance.now() - started) / 1000).toFixed(1)} s under ${dir}`,
  );
  console.log(
    `budget per command: 1.2 × ${(size / MB).toFixed(0)} MB + 200 MB = ${(budget / MB).toFixed(0)} MB peak RSS ` +
      `(${fs.existsSync('/usr/bin/time') ? 'GNU time %M' : "the child's resourceUsage().maxRSS"})`,
  );
  const check = (what: string, ok: boolean, detail: string) => {
    if (!ok) failures++;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}: ${detail}`);
  };
  const rest = regroup(['--version']);
  console.log(`node + regroup at rest: ${(rest.peakBytes / MB).toFixed(0)} MB`);

  const row = (name: string, run: Run) =>
    check(
      `${name} peak RSS`,
      run.peakBytes <= budget,
      `${(run.peakBytes / MB).toFixed(0)} MB (${(run.peakBytes / size).toFixed(2)}× size) in ${run.seconds.toFixed(1)} s`,
    );

  const inspect = regroup(['inspect', modelFile, '--json']);
  row('inspect', inspect);
  const params = JSON.parse(inspect.stdout).totals.params as number;
  check('inspect params', params === expectedBytes / 4, `${params} (expected ${expectedBytes / 4})`);

  const converted = path.join(dir, 'converted.onnx');
  const convert = regroup(['convert', modelFile, '-o', converted, '--external-data']);
  row('convert --external-data', convert);
  check(
    'converted files',
    fileSize(converted) < MB && fileSize(`${converted}.data`) >= layers * weightBytes,
    `.onnx ${(fileSize(converted) / 1e3).toFixed(1)} kB, .data ${(fileSize(`${converted}.data`) / MB).toFixed(0)} MB`,
  );
  fs.rmSync(converted);
  fs.rmSync(`${converted}.data`);

  const pruned = path.join(dir, 'pruned.onnx');
  const planFile = path.join(dir, 'plan.json');
  const prune = regroup([
    'prune',
    modelFile,
    '-o',
    pruned,
    '--keep-macs',
    String(keepMacs),
    '--save-plan',
    planFile,
    '--json',
  ]);
  row(`prune --keep-macs ${keepMacs}`, prune);
  const report = JSON.parse(prune.stdout);
  const prunedData = `${pruned}.data`;
  check(
    'pruned output keeps external data',
    fs.existsSync(prunedData) && fileSize(pruned) < MB,
    `.onnx ${(fileSize(pruned) / 1e3).toFixed(1)} kB, .data ${fs.existsSync(prunedData) ? (fileSize(prunedData) / MB).toFixed(0) : 'missing'} MB; ` +
      `MACs ${(100 * report.macsRatio).toFixed(1)}%, params ${(100 * report.paramsRatio).toFixed(1)}%`,
  );
  const plan = JSON.parse(fs.readFileSync(planFile, 'utf8'));
  const layer = Math.min(1, layers - 1);
  const original = readInitializer(modelFile, `conv${layer}.weight`);
  const cut = readInitializer(pruned, `conv${layer}.weight`);
  // A plan names each group by its first producer's label; a graph input or output pins its group.
  const keptOut = layer === layers - 1 ? keptOf({ groups: [] }, '') : keptOf(plan, `Conv 'conv${layer}'`);
  const keptIn = layer === 0 ? keptOf({ groups: [] }, '') : keptOf(plan, `Conv 'conv${layer - 1}'`);
  const shapeOk = cut.dims[0] === keptOut.length && cut.dims[1] === keptIn.length;
  check(
    `pruned conv${layer}.weight values`,
    shapeOk && cutError(original.values, cut.values, keptOut, keptIn) === 0,
    `[${cut.dims.join(',')}] equals the original at the plan's ${keptOut.length} kept filters × ${keptIn.length} kept inputs`,
  );
} finally {
  if (keepFiles) console.log(`files kept in ${dir}`);
  else fs.rmSync(dir, { recursive: true, force: true });
}
if (failures > 0) {
  console.error(`bench/large-model: ${failures} check(s) failed`);
  process.exit(1);
}
