/** Learning-rate schedules: exact values at chosen iterations (formulas in runtime/train/schedule.ts). */
import { describe, expect, it } from 'vitest';
import { makeSchedule } from '../../runtime/train/schedule.js';

describe('learning-rate schedules', () => {
  it('constant stays at the base rate', () => {
    const s = makeSchedule({ kind: 'constant', baseLr: 0.1 }, 3, 10);
    expect([0, 9, 10, 29].map((i) => s.at(i))).toEqual([0.1, 0.1, 0.1, 0.1]);
    expect(s.totalIterations).toBe(30);
  });

  it('linear warm-up reaches the base rate at the last warm-up update', () => {
    // 1 warm-up epoch of 4 updates: 0.1·1/4, 0.1·2/4, 0.1·3/4, 0.1.
    const s = makeSchedule({ kind: 'constant', baseLr: 0.1, warmupEpochs: 1 }, 3, 4);
    expect(s.at(0)).toBeCloseTo(0.025, 15);
    expect(s.at(1)).toBeCloseTo(0.05, 15);
    expect(s.at(2)).toBeCloseTo(0.075, 15);
    expect(s.at(3)).toBeCloseTo(0.1, 15);
    expect(s.at(4)).toBe(0.1);
  });

  it('step multiplies by gamma at each milestone epoch', () => {
    const s = makeSchedule({ kind: 'step', baseLr: 1, milestones: [2, 4], gamma: 0.1 }, 6, 5);
    expect(s.at(0)).toBe(1);
    expect(s.at(9)).toBe(1); // last update of epoch 1 (0-based)
    expect(s.at(10)).toBeCloseTo(0.1, 15); // first update of epoch 2
    expect(s.at(19)).toBeCloseTo(0.1, 15);
    expect(s.at(20)).toBeCloseTo(0.01, 15);
    expect(s.at(29)).toBeCloseTo(0.01, 15);
  });

  it('step defaults to milestones at E/2 and 3E/4', () => {
    const s = makeSchedule({ kind: 'step', baseLr: 1 }, 8, 1);
    expect([3, 4, 5, 6, 7].map((i) => s.at(i))).toEqual([1, 0.1, 0.1, 0.1 ** 2, 0.1 ** 2]);
  });

  it('cosine decays from the base rate to the minimum after the warm-up', () => {
    // 4 epochs × 10 updates, 1 warm-up epoch: cosine over updates 10..40.
    const s = makeSchedule({ kind: 'cosine', baseLr: 0.2, warmupEpochs: 1, minLr: 0.02 }, 4, 10);
    expect(s.at(9)).toBeCloseTo(0.2, 15);
    expect(s.at(10)).toBeCloseTo(0.2, 15);
    expect(s.at(25)).toBeCloseTo(0.02 + 0.18 * 0.5, 15); // halfway: cos(π/2) = 0
    expect(s.at(20)).toBeCloseTo(0.02 + 0.09 * (1 + Math.cos(Math.PI / 3)), 15);
    expect(s.at(40)).toBeCloseTo(0.02, 15);
  });

  it('cosine without warm-up starts at the base rate', () => {
    const s = makeSchedule({ kind: 'cosine', baseLr: 0.05 }, 2, 50);
    expect(s.at(0)).toBe(0.05);
    expect(s.at(99)).toBeCloseTo(0.025 * (1 + Math.cos((Math.PI * 99) / 100)), 15);
  });

  it('rejects bad settings with usage errors', () => {
    expect(() => makeSchedule({ kind: 'cosine', baseLr: 0 }, 2, 5)).toThrow(
      /learning rate 0 must be a positive number/,
    );
    expect(() => makeSchedule({ kind: 'constant', baseLr: 0.1 }, 2, 0)).toThrow(/less than one batch/);
    expect(() => makeSchedule({ kind: 'linear' as never, baseLr: 0.1 }, 2, 5)).toThrow(
      /unknown learning-rate schedule 'linear'/,
    );
  });
});
