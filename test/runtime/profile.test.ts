/**
 * The training-step profile (runtime/profile.ts, `--profile FILE`): onnxruntime's trace
 * events added up by op type, layer and node, the first run left out; and `regroup train
 * --profile` on a small CNN, whose backward nodes are charged to their forward layers.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveModel } from '../../compiler/onnx/io.js';
import { layerOf, summariseProfile, type ProfileSummary } from '../../runtime/profile.js';
import { regroup } from '../helpers/cli.js';
import { plainCnn } from '../train/models.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regroup-profile-'));
const modelFile = path.join(tmp, 'plain.onnx');
beforeAll(() => saveModel(plainCnn(), modelFile));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const run = (ts: number, dur: number) => ({ cat: 'Session', name: 'model_run', ts, dur });
const node = (name: string, op: string, ts: number, dur: number, peak = 0) => ({
  cat: 'Node',
  name: `${name}_kernel_time`,
  ts,
  dur,
  args: { op_name: op, mem_in_use_peak: String(peak) },
});

describe('summariseProfile', () => {
  it('adds kernel time by op type, layer and node per run, leaving out the first run', () => {
    const events = [
      run(0, 1000),
      node('conv1', 'Conv', 10, 900, 4096), // first run: left out of the times
      run(2000, 500),
      node('conv1', 'FusedConv', 2010, 100),
      node('grad/conv1/Conv', 'Conv', 2110, 200),
      node('train/Mul', 'Mul', 2310, 50),
      run(3000, 700),
      node('conv1', 'FusedConv', 3010, 120),
      node('grad/conv1/Conv', 'Conv', 3130, 260, 8192),
      node('train/Mul', 'Mul', 3390, 70),
    ];
    const p = summariseProfile(events);
    expect(p.runs).toBe(2);
    expect(p.runMs).toBeCloseTo(0.5, 9); // median of 500 and 700 µs: the lower middle
    expect(p.kernelMs).toBeCloseTo(0.4, 9); // (370 + 450) µs over 2 runs
    expect(p.peakBytes).toBe(8192);
    const byOp = Object.fromEntries(p.byOp.map((r) => [r.name, r.msPerRun]));
    expect(byOp).toEqual({ Conv: 0.23, FusedConv: 0.11, Mul: 0.06 });
    expect(p.byLayer[0]).toMatchObject({ name: 'conv1', callsPerRun: 2 });
    expect(p.byLayer[0]!.msPerRun).toBeCloseTo(0.34, 9);
    expect(p.byLayer.reduce((a, r) => a + r.share, 0)).toBeCloseTo(1, 9);
    expect(p.byNode.map((r) => r.name)).toEqual(['grad/conv1/Conv', 'conv1', 'train/Mul']);
  });

  it('charges backward, training-mode BN and optimizer nodes to what they belong to', () => {
    expect(layerOf('grad//layer1/conv/Conv/ConvTranspose')).toBe('/layer1/conv/Conv');
    expect(layerOf('grad/bn/stem.bn/BatchNormalization/Mul')).toBe('stem.bn');
    expect(layerOf('bn/stem.bn/ReduceSumSquare')).toBe('stem.bn');
    expect(layerOf('train/Mul_3')).toBe('(optimizer and loss)');
    expect(layerOf('grad/Sum')).toBe('(backward, shared)');
    expect(layerOf('layer1.conv_nchwc')).toBe('layer1.conv');
    expect(layerOf('grad/Conv_27/MatMul/MatmulTransposeFusion/')).toBe('Conv_27');
  });
});

describe('regroup train --profile', () => {
  it('writes the step profile as JSON with every layer charged its backward nodes, and prints the tables', async () => {
    const out = path.join(tmp, 'trained.onnx');
    const file = path.join(tmp, 'profile.json');
    const args = ['--data', 'mnist', '--limit', '256', '--eval-limit', '100', '--batch', '32', '--epochs', '1'];
    const r = await regroup('train', modelFile, ...args, '-o', out, '--profile', file);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/training step profile \(onnxruntime, 7 steps after the first\): [\d.]+ ms per step/);
    expect(r.stdout).toContain('layer (backward charged to its forward node)');
    const p = JSON.parse(fs.readFileSync(file, 'utf8')) as ProfileSummary;
    expect(p.runs).toBe(7);
    expect(p.kernelMs).toBeGreaterThan(0);
    expect(p.peakBytes).toBeGreaterThan(0);
    const layers = new Map(p.byLayer.map((l) => [l.name, l]));
    // conv2's forward and its input and weight gradients: more than one kernel per step.
    for (const conv of ['conv1', 'conv2']) expect(layers.get(conv)?.callsPerRun ?? 0).toBeGreaterThan(1);
    expect(layers.has('(optimizer and loss)')).toBe(true);
    expect(p.byLayer.reduce((a, l) => a + l.share, 0)).toBeCloseTo(1, 6);
    expect(p.byOp.some((o) => /Conv/.test(o.name))).toBe(true);
  });
});
