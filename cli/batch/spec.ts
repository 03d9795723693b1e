/**
 * A batch job spec: models × methods × targets × data × fine-tuning budgets, and where the
 * results go. Validated field by field (an error names the spec file, the field and the fix);
 * expanded into jobs whose id is a hash of everything that decides the output — the model's
 * bytes, the method, the target, the data, the fine-tuning budget, the common options and
 * regroup's version — so the same job is never run twice and a finished result is reused.
 *
 * ```json
 * { "models": ["a.onnx", "b.onnx"], "methods": ["l1", "wsp", { "method": "msgc", "heads": 4 }],
 *   "targets": [{ "keep-macs": 0.5 }, { "keep-latency": 0.7, "latency-batch": 8 }],
 *   "data": [null, "fashion-mnist"], "finetune": [{ "scheme": "none" }],
 *   "options": { "seed": 0, "latency": false }, "results": "results/" }
 * ```
 * Paths are relative to the spec file. A method is its name, or an object naming it under
 * "method" with its own options under their command-line names ("round-to", "heads", …).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RegroupError } from '../../compiler/errors.js';
import { METHODS } from '../../passes/methods/index.js';
import { methodFlagValue } from '../method-flags.js';
import { FINETUNE_SCHEMES, type FinetuneScheme } from '../pipelines/compress.js';

/** One budget: a MACs fraction or a fraction of the measured latency (at `latencyBatch`). */
export type Target = { keepMacs: number } | { keepLatency: number; latencyBatch: number };

export interface Finetune {
  scheme: FinetuneScheme;
  epochs: number;
  /** Fine-tune on a seeded subset of this many training samples (undefined: all). */
  limit?: number;
}

/** Options every job of the spec shares. */
export interface CommonJobOptions {
  seed: number;
  /** Measure latency before and after (false keeps jobs short and their reports comparable). */
  latency: boolean;
  evalLimit?: number;
}

/** A method and its own options (keys as CompressOptions.methodOptions: `roundTo`, `heads`, …). */
export interface MethodChoice {
  name: string;
  options: Record<string, unknown>;
}

export interface BatchSpec {
  file: string;
  models: string[];
  methods: MethodChoice[];
  targets: Target[];
  data: (string | null)[];
  finetune: Finetune[];
  options: CommonJobOptions;
  /** Absolute folder the job folders go under. */
  results: string;
}

/** One model × method × target × data × fine-tuning combination, with its id. */
export interface JobSpec {
  id: string;
  model: string;
  /** sha256 of the model file when the job was made; a worker checks it before running. */
  modelSha256: string;
  method: string;
  /** The method's own options; absent when none are given. */
  methodOptions?: Record<string, unknown>;
  target: Target;
  data: string | null;
  finetune: Finetune;
  options: CommonJobOptions;
  results: string;
  version: string;
}

const TOP_FIELDS = ['models', 'methods', 'targets', 'data', 'finetune', 'options', 'results'];

/** Read and validate a spec file; throws RegroupError('usage') naming the file and field. */
export function readSpec(file: string): BatchSpec {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new RegroupError('io', `cannot read job spec ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new RegroupError('usage', `job spec ${file} is not valid JSON: ${(err as Error).message}`);
  }
  return validateSpec(json, file);
}

/** Validate a parsed spec; paths are resolved against the spec file's folder. */
export function validateSpec(json: unknown, file: string): BatchSpec {
  const fail = (field: string, what: string): never => {
    throw new RegroupError('usage', `job spec ${file}: field '${field}' ${what}`);
  };
  if (!isObject(json)) return fail('(top level)', 'must be a JSON object with models, methods, targets, results');
  for (const key of Object.keys(json))
    if (!TOP_FIELDS.includes(key)) fail(key, `is not a spec field; expected one of ${TOP_FIELDS.join(', ')}`);
  const base = path.dirname(path.resolve(file));
  const models = nonEmptyList(json.models, 'models', fail).map((m, i) => {
    if (typeof m !== 'string' || m === '') return fail(`models[${i}]`, 'must be a model file path');
    const resolved = path.resolve(base, m);
    if (!fs.existsSync(resolved)) fail(`models[${i}]`, `names ${resolved}, which does not exist`);
    return resolved;
  });
  const methods = nonEmptyList(json.methods, 'methods', fail).map((m, i) => methodOf(m, `methods[${i}]`, fail));
  const targets = nonEmptyList(json.targets, 'targets', fail).map((t, i) => targetOf(t, `targets[${i}]`, fail));
  const data = listOr(json.data, [null], 'data', fail).map((d, i) => {
    if (d !== null && (typeof d !== 'string' || d === ''))
      fail(`data[${i}]`, 'must be a data spec (mnist, fashion-mnist, DIR, DIR,labels.csv, idx:PATH) or null');
    return d === null ? null : resolveDataSpec(d as string, base);
  });
  const finetune = listOr(json.finetune, [{ scheme: 'none' }], 'finetune', fail).map((f, i) =>
    finetuneOf(f, `finetune[${i}]`, fail),
  );
  for (const [i, f] of finetune.entries())
    if (f.scheme !== 'none' && data.includes(null))
      fail(`finetune[${i}]`, `scheme '${f.scheme}' needs data, but 'data' lists null; use scheme 'none' or drop null`);
  if (typeof json.results !== 'string' || json.results === '')
    fail('results', 'must be the folder the job results go to, e.g. "results/"');
  return {
    file: path.resolve(file),
    models,
    methods,
    targets,
    data,
    finetune,
    options: commonOf(json.options, fail),
    results: path.resolve(base, json.results as string),
  };
}

/** Every job of the spec, in spec order (model-major), with its content-hashed id. */
export function expandJobs(spec: BatchSpec): JobSpec[] {
  const version = regroupVersion();
  const jobs: JobSpec[] = [];
  for (const model of spec.models) {
    const modelSha256 = sha256File(model);
    for (const { name: method, options: chosen } of spec.methods)
      for (const target of spec.targets)
        for (const data of spec.data)
          for (const finetune of spec.finetune) {
            const job = {
              model,
              modelSha256,
              method,
              methodOptions: Object.keys(chosen).length > 0 ? chosen : undefined,
              target,
              data,
              finetune,
              options: spec.options,
              version,
            };
            jobs.push({ id: jobId(job), ...job, results: spec.results });
          }
  }
  return jobs;
}

/**
 * The job's id: a hash of what decides its output. The model enters by its bytes, not its
 * path, so the same model under another name (or on another machine's mount) is the same job.
 */
export function jobId(job: Omit<JobSpec, 'id' | 'results'>): string {
  const key = {
    modelSha256: job.modelSha256,
    method: job.method,
    // Undefined without options (expandJobs leaves it out), which canonicalJson skips: ids of
    // jobs made before method options stay.
    methodOptions: job.methodOptions,
    target: job.target,
    data: job.data,
    finetune: job.finetune,
    options: job.options,
    version: job.version,
  };
  return createHash('sha256').update(canonicalJson(key)).digest('hex').slice(0, 20);
}

/** A short human description: `resnet-tiny.onnx l1 keep-macs 0.5`. */
export function describeJob(job: JobSpec): string {
  const target =
    'keepMacs' in job.target
      ? `keep-macs ${job.target.keepMacs}`
      : `keep-latency ${job.target.keepLatency}@${job.target.latencyBatch}`;
  const data = job.data ? ` data ${job.data} finetune ${job.finetune.scheme}` : '';
  return `${path.basename(job.model)} ${methodLabel(job)} ${target}${data}`;
}

/** `msgc` or `msgc(heads 4, mask-threshold 0.4)`, with the options under their flag names. */
export function methodLabel(job: Pick<JobSpec, 'method' | 'methodOptions'>): string {
  const options = Object.entries(job.methodOptions ?? {});
  if (options.length === 0) return job.method;
  const flags = METHODS.find((m) => m.name === job.method)?.flags ?? [];
  const named = options.map(([key, value]) => {
    const flag = flags.find((f) => f.key === key);
    return `${flag ? flagName(flag.flags) : key} ${value === true ? '' : String(value)}`.trim();
  });
  return `${job.method}(${named.join(', ')})`;
}

const flagName = (flags: string) => flags.split(' ')[0]!.replace(/^--/, '');

/** A method entry: a registered name, or { "method": name, "<flag>": value, … } with that method's flags. */
function methodOf(m: unknown, field: string, fail: (field: string, what: string) => never): MethodChoice {
  const names = METHODS.map((known) => known.name).join(', ');
  const name = isObject(m) ? m.method : m;
  const method = METHODS.find((known) => known.name === name);
  if (!method)
    return fail(
      isObject(m) ? `${field}.method` : field,
      `must be one of ${names}${isObject(m) ? '' : ', or { "method": NAME, its options }'} (got ${JSON.stringify(name)})`,
    );
  const options: Record<string, unknown> = {};
  if (isObject(m))
    for (const [key, value] of Object.entries(m)) {
      if (key === 'method') continue;
      const flag = method.flags.find((f) => flagName(f.flags) === key);
      if (!flag)
        return fail(
          `${field}.${key}`,
          `is not an option of ${method.name}; its options are ${method.flags.map((f) => flagName(f.flags)).join(', ') || 'none'}`,
        );
      try {
        options[flag.key] = methodFlagValue(flag, value);
      } catch (err) {
        fail(`${field}.${key}`, (err as Error).message);
      }
    }
  return { name: method.name, options };
}

export function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

let cachedVersion: string | undefined;

/** regroup's version from its package.json (found above this module, in src or dist). */
export function regroupVersion(): string {
  if (cachedVersion) return cachedVersion;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'package.json');
    if (fs.existsSync(candidate)) {
      const pkg = JSON.parse(fs.readFileSync(candidate, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'regroup' && pkg.version) return (cachedVersion = pkg.version);
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new RegroupError('io', "cannot find regroup's package.json above its modules");
    dir = parent;
  }
}

/** JSON with object keys sorted, so equal values hash equally whatever order they were written in. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isObject(value))
    return `{${Object.keys(value)
      .sort()
      .filter((k) => value[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`)
      .join(',')}}`;
  return JSON.stringify(value);
}

type Fail = (field: string, what: string) => never;

function targetOf(t: unknown, field: string, fail: Fail): Target {
  if (!isObject(t)) return fail(field, 'must be { "keep-macs": F } or { "keep-latency": F, "latency-batch": N }');
  const keys = Object.keys(t);
  const allowed = ['keep-macs', 'keep-latency', 'latency-batch'];
  for (const k of keys)
    if (!allowed.includes(k)) fail(`${field}.${k}`, `is not a target field (${allowed.join(', ')})`);
  const given = ['keep-macs', 'keep-latency'].filter((k) => t[k] !== undefined);
  if (given.length !== 1) fail(field, 'must give exactly one of keep-macs, keep-latency');
  const keyName = given[0]!;
  const value = t[keyName];
  if (typeof value !== 'number' || !(value > 0 && value <= 1))
    fail(`${field}.${keyName}`, 'must be a fraction in (0, 1]');
  if (keyName === 'keep-macs') {
    if (t['latency-batch'] !== undefined) fail(`${field}.latency-batch`, 'goes with keep-latency, not keep-macs');
    return { keepMacs: value as number };
  }
  const batch = t['latency-batch'] ?? 1;
  if (!Number.isInteger(batch) || (batch as number) < 1) fail(`${field}.latency-batch`, 'must be a positive integer');
  return { keepLatency: value as number, latencyBatch: batch as number };
}

function finetuneOf(f: unknown, field: string, fail: Fail): Finetune {
  if (!isObject(f)) return fail(field, 'must be { "scheme": "none" | "local" | "global" | "local+global", ... }');
  for (const k of Object.keys(f))
    if (!['scheme', 'epochs', 'limit'].includes(k))
      fail(`${field}.${k}`, 'is not a fine-tuning field (scheme, epochs, limit)');
  if (!FINETUNE_SCHEMES.includes(f.scheme as FinetuneScheme))
    fail(`${field}.scheme`, `must be one of ${FINETUNE_SCHEMES.join(', ')}`);
  const epochs = f.epochs ?? 1;
  if (!Number.isInteger(epochs) || (epochs as number) < 1) fail(`${field}.epochs`, 'must be a positive integer');
  if (f.limit !== undefined && (!Number.isInteger(f.limit) || (f.limit as number) < 1))
    fail(`${field}.limit`, 'must be a positive integer (training samples)');
  return { scheme: f.scheme as FinetuneScheme, epochs: epochs as number, limit: f.limit as number | undefined };
}

function commonOf(o: unknown, fail: Fail): CommonJobOptions {
  if (o === undefined) return { seed: 0, latency: true };
  if (!isObject(o)) return fail('options', 'must be an object { "seed", "latency", "eval-limit" }');
  for (const k of Object.keys(o))
    if (!['seed', 'latency', 'eval-limit'].includes(k))
      fail(`options.${k}`, 'is not an option (seed, latency, eval-limit)');
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed) || (seed as number) < 0) fail('options.seed', 'must be a non-negative integer');
  const latency = o.latency ?? true;
  if (typeof latency !== 'boolean') fail('options.latency', 'must be true or false');
  const evalLimit = o['eval-limit'];
  if (evalLimit !== undefined && (!Number.isInteger(evalLimit) || (evalLimit as number) < 1))
    fail('options.eval-limit', 'must be a positive integer (test samples)');
  return { seed: seed as number, latency: latency as boolean, evalLimit: evalLimit as number | undefined };
}

/** Folder and file data specs become absolute; named data sets (mnist, fashion-mnist:test) stay. */
function resolveDataSpec(spec: string, base: string): string {
  if (spec.startsWith('idx:')) return `idx:${path.resolve(base, spec.slice(4))}`;
  const [first, ...rest] = spec.split(',');
  const candidate = path.resolve(base, first!);
  if (!fs.existsSync(candidate)) return spec;
  return [candidate, ...rest.map((r) => path.resolve(base, r))].join(',');
}

function nonEmptyList(value: unknown, field: string, fail: Fail): unknown[] {
  if (!Array.isArray(value) || value.length === 0) return fail(field, 'must be a non-empty list');
  return value;
}

/** A field that may be one value or a list; absent means `fallback`, an empty list is refused. */
function listOr(value: unknown, fallback: unknown[], field: string, fail: Fail): unknown[] {
  if (value === undefined) return fallback;
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) fail(field, 'must not be an empty list (leave it out for the default)');
  return list;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
