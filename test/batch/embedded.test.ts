/**
 * `regroup batch` on this machine: every job published whole under its id, a corrupt model
 * failing alone with its reason, a second run reusing every finished job, a killed batch
 * resuming without partial artifacts, `--status`, and the zoo page linking each job's report.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { computeCost } from '../../compiler/analysis/cost.js';
import { inferShapes } from '../../compiler/analysis/shape-inference.js';
import { loadModel } from '../../compiler/onnx/io.js';
import { expandJobs, readSpec } from '../../cli/batch/spec.js';
import { BIN, regroup } from '../helpers/cli.js';
import { PROJECT_ROOT } from '../helpers/shared.js';

const MODELS = path.join(PROJECT_ROOT, 'fixtures/models');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-batch-embedded-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function writeSpec(name: string, json: object): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, JSON.stringify(json));
  return file;
}

/** The folders under results: published job ids, and anything left in the scratch area. */
function published(results: string): { jobs: string[]; scratch: string[] } {
  const entries = fs.readdirSync(results, { withFileTypes: true }).filter((e) => e.isDirectory());
  const scratchDir = path.join(results, '.scratch');
  return {
    jobs: entries.filter((e) => !e.name.startsWith('.')).map((e) => e.name),
    scratch: fs.existsSync(scratchDir) ? fs.readdirSync(scratchDir) : [],
  };
}

describe('regroup batch (embedded)', () => {
  const corrupt = path.join(tmp, 'corrupt.onnx');
  fs.writeFileSync(corrupt, fs.readFileSync(path.join(MODELS, 'resnet-tiny.onnx')).subarray(0, 5000));
  const spec = writeSpec('jobs.json', {
    models: [path.join(MODELS, 'resnet-tiny.onnx'), 'corrupt.onnx', path.join(MODELS, 'fmnist-vgg.onnx')],
    methods: ['l1'],
    targets: [{ 'keep-macs': 0.5 }, { 'keep-macs': 0.7 }],
    options: { latency: false },
    results: 'results',
  });
  const results = path.join(tmp, 'results');
  const jobs = expandJobs(readSpec(spec));
  const good = jobs.filter((j) => j.model !== corrupt);
  const bad = jobs.filter((j) => j.model === corrupt);

  it('publishes every good job whole, fails the corrupt model with its reason, and draws the zoo', async () => {
    const run = await regroup('batch', spec, '--workers', '2');
    expect(run.code, run.stderr).toBe(1);
    expect(run.stdout).toContain('6 jobs: 4 done, 0 reused');
    for (const job of bad)
      expect(run.stdout).toMatch(new RegExp(`failed ${job.id} corrupt\\.onnx .*error\\[bad-model\\]`));
    expect(run.stderr).toMatch(/\[6\/6\]/);
    const { jobs: ids, scratch } = published(results);
    expect(ids.sort()).toEqual(good.map((j) => j.id).sort());
    expect(scratch).toEqual([]);
    for (const job of good) {
      const folder = path.join(results, job.id);
      expect(fs.readdirSync(folder).sort()).toEqual(['model.onnx', 'report.html', 'report.json', 'result.json']);
      const model = loadModel(path.join(folder, 'model.onnx'));
      const dense = loadModel(job.model);
      const ratio =
        computeCost(model, inferShapes(model)).totals.macs / computeCost(dense, inferShapes(dense)).totals.macs;
      const result = JSON.parse(fs.readFileSync(path.join(folder, 'result.json'), 'utf8'));
      expect(result.macsRatio).toBeCloseTo(ratio, 6);
      expect(ratio).toBeLessThan(1);
    }
    const state = JSON.parse(fs.readFileSync(path.join(results, 'batch-state.json'), 'utf8'));
    for (const job of bad) expect(state.jobs[job.id].reason).toContain(corrupt);
    const zoo = fs.readFileSync(path.join(results, 'zoo.html'), 'utf8');
    for (const job of good) expect(zoo).toContain(`href="${job.id}/report.html"`);
    for (const job of bad) expect(zoo).not.toContain(job.id);
    expect(zoo).toContain('chart-zoo-macs');

    const status = await regroup('batch', spec, '--status');
    expect(status.stdout).toContain('queued 0, running 0, done 4, failed 2');
    expect(status.stdout).toContain(`failed ${bad[0]!.id}`);
  });

  it('reuses every finished job on a second run and never rewrites it', async () => {
    const model = path.join(results, good[0]!.id, 'model.onnx');
    const before = fs.statSync(model).mtimeMs;
    const run = await regroup('batch', spec, '--workers', '2');
    expect(run.stdout).toContain('6 jobs: 0 done, 4 reused');
    expect(fs.statSync(model).mtimeMs).toBe(before);
  });

  it('resumes a killed batch: finished jobs stay, nothing half-written, the rest runs', async () => {
    const resumeSpec = writeSpec('resume.json', {
      models: [path.join(MODELS, 'resnet-tiny.onnx'), path.join(MODELS, 'fmnist-vgg.onnx')],
      methods: ['l1', 'l1-uniform'],
      targets: [{ 'keep-macs': 0.6 }],
      options: { latency: false, seed: 3 },
      results: 'resume',
    });
    const child = spawn(process.execPath, [BIN, 'batch', resumeSpec, '--workers', '1'], { stdio: 'pipe' });
    let stderr = '';
    await new Promise<void>((resolve) => {
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        if (stderr.includes('[1/4]')) resolve();
      });
    });
    // Kill it while a job that has not been published is recorded as running.
    const stateFile = path.join(tmp, 'resume', 'batch-state.json');
    const runningUnpublished = () => {
      const state = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
      return Object.entries(state.jobs).some(
        ([id, entry]) =>
          (entry as { state: string }).state === 'running' && !fs.existsSync(path.join(tmp, 'resume', id)),
      );
    };
    for (let tries = 0; !runningUnpublished() && tries < 100; tries++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    // The running job's process sees its parent go and removes its scratch folder.
    const resume = path.join(tmp, 'resume');
    for (let tries = 0; published(resume).scratch.length > 0 && tries < 50; tries++)
      await new Promise((resolve) => setTimeout(resolve, 100));
    const afterKill = published(resume);
    expect(afterKill.scratch).toEqual([]);
    expect(afterKill.jobs.length).toBeGreaterThanOrEqual(1);
    expect(afterKill.jobs.length).toBeLessThan(4);
    for (const id of afterKill.jobs) expect(fs.existsSync(path.join(resume, id, 'result.json'))).toBe(true);
    // The killed batch had a job running: --status says it was interrupted, not running.
    const status = await regroup('batch', resumeSpec, '--status');
    const queuedNow = 4 - afterKill.jobs.length;
    expect(status.stdout).toContain(`queued ${queuedNow}, running 0, done ${afterKill.jobs.length}, failed 0`);
    expect(status.stdout).toMatch(new RegExp(`1 of the queued were interrupted \\(the batch process ${child.pid} `));
    const run = await regroup('batch', resumeSpec, '--workers', '2');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`4 jobs: ${4 - afterKill.jobs.length} done, ${afterKill.jobs.length} reused`);
    expect(published(resume).jobs).toHaveLength(4);
  });

  it("passes a method's own options from the spec to the job", async () => {
    const optionsSpec = writeSpec('options.json', {
      models: [path.join(MODELS, 'resnet-tiny.onnx')],
      methods: [
        { method: 'l1', 'round-to': 1 },
        { method: 'l1', 'round-to': 16 },
      ],
      targets: [{ 'keep-macs': 0.6 }],
      options: { latency: false },
      results: 'options',
    });
    const run = await regroup('batch', optionsSpec, '--workers', '1');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('l1(round-to 16) keep-macs 0.6');
    const widths = (job: { id: string }) =>
      loadModel(path.join(tmp, 'options', job.id, 'model.onnx'))
        .graph.nodeList()
        .filter((n) => n.opType === 'Conv')
        .map((n) => n.input(1).constValue!.dims[0]!);
    const [fine, coarse] = expandJobs(readSpec(optionsSpec)).map(widths);
    expect(coarse!.every((w) => w % 16 === 0)).toBe(true);
    expect(fine!.some((w) => w % 16 !== 0)).toBe(true);
  });

  it('refuses a bad spec with the field named and exit code 2', async () => {
    const bad = writeSpec('bad.json', {
      ...{ models: ['nope.onnx'], methods: ['l1'], targets: [{ 'keep-macs': 0.5 }] },
      results: 'r',
    });
    const run = await regroup('batch', bad);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`job spec ${bad}: field 'models[0]'`);
  });
});
