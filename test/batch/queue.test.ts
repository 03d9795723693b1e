/**
 * The batch queue on loopback, against a private redis-server (persistence on): three workers
 * give the embedded runner's bytes; a duplicate enqueue adds nothing; a corrupt model fails
 * once with its reason while the others finish; a worker killed mid-job gives the job back and
 * another finishes it with no partial artifact; a Redis restart mid-batch loses no job.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expandJobs, readSpec } from '../../cli/batch/spec.js';
import { regroup } from '../helpers/cli.js';
import { PROJECT_ROOT } from '../helpers/shared.js';
import { queueSkipReason, RedisServer, WorkerProcess } from './redis.js';

const MODELS = path.join(PROJECT_ROOT, 'fixtures/models');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-batch-queue-'));
const redis = new RedisServer();
const workers: WorkerProcess[] = [];

function writeSpec(name: string, json: Record<string, unknown>): string {
  const file = path.join(tmp, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ options: { latency: false }, results: name, ...json }));
  return file;
}

/**
 * Workers with a 10 s lock, so a loaded machine never lets a live worker's lock lapse; the
 * kill test passes a short one, so the dead worker's job comes back quickly.
 */
function startWorkers(queue: string, count: number, lockMs = 10_000): WorkerProcess[] {
  const started = Array.from({ length: count }, () => new WorkerProcess(redis.url, queue, 1, lockMs));
  workers.push(...started);
  return started;
}

/** How often each job id was started / finished, over these workers' output. */
function tally(ws: WorkerProcess[], word: 'start' | 'done'): Map<string, number> {
  const counts = new Map<string, number>();
  for (const w of ws)
    for (const line of w.lines) {
      const match = new RegExp(`^${word} ([0-9a-f]{20})\\b`).exec(line);
      if (match) counts.set(match[1]!, (counts.get(match[1]!) ?? 0) + 1);
    }
  return counts;
}

function scratchLeft(results: string): string[] {
  const dir = path.join(results, '.scratch');
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

const TINY = path.join(MODELS, 'resnet-tiny.onnx');
const VGG = path.join(MODELS, 'fmnist-vgg.onnx');
const MOBILE = path.join(MODELS, 'fmnist-mobilenet.onnx');

describe.skipIf(queueSkipReason !== undefined)('regroup batch --queue / regroup worker', () => {
  beforeAll(() => redis.start());
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop('SIGKILL')));
    await redis.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('gives byte-identical models through 3 workers and through the embedded runner', async () => {
    const json = { models: [TINY, VGG], methods: ['l1', 'l1-uniform'], targets: [{ 'keep-macs': 0.5 }] };
    const embeddedSpec = writeSpec('same-embedded', json);
    const queuedSpec = writeSpec('same-queued', json);
    const embedded = await regroup('batch', embeddedSpec, '--workers', '2');
    expect(embedded.code, embedded.stderr).toBe(0);
    const ws = startWorkers('same', 3);
    const queued = await regroup('batch', queuedSpec, '--queue', redis.url, '--name', 'same', '--wait');
    expect(queued.code, queued.stderr).toBe(0);
    expect(queued.stdout).toContain('4 jobs: 4 enqueued');
    const jobs = expandJobs(readSpec(queuedSpec));
    for (const job of jobs) {
      const a = fs.readFileSync(path.join(tmp, 'same-embedded', job.id, 'model.onnx'));
      const b = fs.readFileSync(path.join(tmp, 'same-queued', job.id, 'model.onnx'));
      expect(b.equals(a), job.id).toBe(true);
    }
    // Every job ran exactly once, spread over the workers.
    expect([...tally(ws, 'done').values()]).toEqual([1, 1, 1, 1]);
    expect(ws.filter((w) => w.lines.some((l) => l.startsWith('start '))).length).toBeGreaterThan(1);
    await Promise.all(ws.map((w) => w.stop()));
  });

  it('adds nothing when the same spec is enqueued twice; a corrupt model fails once with its reason', async () => {
    const corrupt = path.join(tmp, 'corrupt.onnx');
    fs.writeFileSync(corrupt, fs.readFileSync(TINY).subarray(0, 4000));
    const spec = writeSpec('twice', {
      models: [TINY, corrupt, MOBILE],
      methods: ['l1'],
      targets: [{ 'keep-macs': 0.6 }],
    });
    const first = await regroup('batch', spec, '--queue', redis.url, '--name', 'twice');
    const second = await regroup('batch', spec, '--queue', redis.url, '--name', 'twice');
    expect(first.stdout).toContain('3 jobs: 3 enqueued, 0 already queued');
    expect(second.stdout).toContain('3 jobs: 0 enqueued, 3 already queued');
    const ws = startWorkers('twice', 2);
    const waited = await regroup('batch', spec, '--queue', redis.url, '--name', 'twice', '--wait');
    expect(waited.code).toBe(1);
    const jobs = expandJobs(readSpec(spec));
    const bad = jobs.find((j) => j.model === corrupt)!;
    expect(waited.stdout).toMatch(new RegExp(`failed ${bad.id} corrupt\\.onnx .*error\\[bad-model\\].*${corrupt}`));
    expect(waited.stdout).toContain('3 jobs: 2 done');
    const starts = tally(ws, 'start');
    for (const job of jobs) expect(starts.get(job.id), ws.map((w) => w.lines.join('\n')).join('\n--\n')).toBe(1);
    const status = await regroup('batch', '--status', '--queue', redis.url, '--name', 'twice');
    expect(status.stdout).toContain('queued 0, running 0, done 2, failed 1');
    expect(status.stdout).toMatch(new RegExp(`failed job-${bad.id} .*bad-model`));
    const third = await regroup('batch', spec, '--queue', redis.url, '--name', 'twice');
    expect(third.stdout).toContain('2 already done');
    await Promise.all(ws.map((w) => w.stop()));
  });

  it('gives a killed worker’s job to another worker, leaving no partial artifact', async () => {
    // One job long enough to be caught running: fine-tuning on 256 Fashion-MNIST images.
    const spec = writeSpec('kill', {
      models: [path.join(MODELS, 'fmnist-resnet.onnx')],
      methods: ['l1'],
      targets: [{ 'keep-macs': 0.5 }],
      data: 'fashion-mnist',
      finetune: { scheme: 'global', limit: 256 },
      options: { latency: false, 'eval-limit': 64 },
    });
    const [job] = expandJobs(readSpec(spec));
    const [doomed] = startWorkers('kill', 1, 3000);
    await regroup('batch', spec, '--queue', redis.url, '--name', 'kill');
    await doomed!.waitFor(new RegExp(`^start ${job!.id}`));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await doomed!.stop('SIGKILL');
    const results = path.join(tmp, 'kill');
    expect(fs.existsSync(path.join(results, job!.id))).toBe(false);
    const [rescuer] = startWorkers('kill', 1, 3000);
    const waited = await regroup('batch', spec, '--queue', redis.url, '--name', 'kill', '--wait');
    expect(waited.code, waited.stdout + waited.stderr).toBe(0);
    expect(rescuer!.lines.some((l) => l.startsWith(`done ${job!.id}`))).toBe(true);
    expect(doomed!.lines.some((l) => l.startsWith(`done ${job!.id}`))).toBe(false);
    expect(fs.readdirSync(path.join(results, job!.id)).sort()).toEqual([
      'model.onnx',
      'report.html',
      'report.json',
      'result.json',
    ]);
    expect(scratchLeft(results)).toEqual([]);
    await rescuer!.stop();
  });

  it('loses no job when Redis restarts mid-batch', async () => {
    const spec = writeSpec('restart', {
      models: [TINY, VGG, MOBILE],
      methods: ['l1', 'l1-uniform'],
      targets: [{ 'keep-macs': 0.55 }],
    });
    const jobs = expandJobs(readSpec(spec));
    const enqueued = await regroup('batch', spec, '--queue', redis.url, '--name', 'restart');
    expect(enqueued.stdout).toContain('6 jobs: 6 enqueued');
    const ws = startWorkers('restart', 2);
    await ws[0]!.waitFor(/^start /);
    await redis.stop();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await redis.start();
    const waited = await regroup('batch', spec, '--queue', redis.url, '--name', 'restart', '--wait');
    expect(waited.code, waited.stdout + waited.stderr).toBe(0);
    expect(waited.stdout).toContain('6 jobs: 6 done');
    for (const job of jobs) expect(fs.existsSync(path.join(tmp, 'restart', job.id, 'result.json'))).toBe(true);
    expect(scratchLeft(path.join(tmp, 'restart'))).toEqual([]);
    await Promise.all(ws.map((w) => w.stop()));
  });
});
