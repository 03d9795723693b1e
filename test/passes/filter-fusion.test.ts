/**
 * DCFF's math (passes/filter-fusion.ts) against a direct float64 implementation: distances,
 * softmax probabilities, KL scores, fusion, and the temperature schedule's end points.
 */
import { describe, expect, it } from 'vitest';
import { Random } from '../../compiler/util/random.js';
import {
  FUSION_TEMPERATURE,
  finiteScores,
  fuseRows,
  fusionCode,
  fusionTemperature,
  selectRows,
  topChannels,
  type FilterRows,
} from '../../passes/filter-fusion.js';

function randomFilters(rows: number, dim: number, seed: number, scale = 0.3): FilterRows {
  const random = new Random(seed);
  return { rows, dim, data: Float64Array.from({ length: rows * dim }, () => random.normal() * scale) };
}

/** The paper's definitions written out directly: exp, normalise, then KL by its triple sum. */
function direct(filters: FilterRows, temperature: number): { p: number[][]; scores: number[] } {
  const { rows, dim, data } = filters;
  const distance = (j: number, k: number) =>
    Math.sqrt(
      Array.from({ length: dim }, (_, d) => (data[j * dim + d]! - data[k * dim + d]!) ** 2).reduce((a, b) => a + b, 0),
    );
  const p = Array.from({ length: rows }, (_, j) => {
    const e = Array.from({ length: rows }, (_, k) => Math.exp(-distance(j, k) * temperature));
    const sum = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / sum);
  });
  const kl = (j: number, k: number) => p[j]!.reduce((s, pji, i) => s + pji * Math.log(pji / p[k]![i]!), 0);
  const scores = Array.from({ length: rows }, (_, j) =>
    Array.from({ length: rows }, (_, k) => kl(j, k)).reduce((a, b) => a + b, 0),
  );
  return { p, scores };
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number): void {
  const bad: string[] = [];
  for (let i = 0; i < expected.length; i++) {
    if (Math.abs(actual[i]! - expected[i]!) > atol + rtol * Math.abs(expected[i]!))
      bad.push(`[${i}] ${actual[i]} vs ${expected[i]}`);
  }
  expect(bad).toEqual([]);
}

describe('fusion code', () => {
  for (const temperature of [1, 3.5]) {
    it(`P and the KL scores match the direct definitions at T = ${temperature} (rtol 1e-10)`, () => {
      const filters = randomFilters(7, 12, 5);
      const code = fusionCode(filters, temperature);
      const want = direct(filters, temperature);
      expectClose(code.probabilities, want.p.flat(), 1e-10, 1e-15);
      expectClose(code.scores, want.scores, 1e-10, 1e-12);
      for (let j = 0; j < 7; j++)
        expect(code.probabilities.subarray(j * 7, j * 7 + 7).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    });
  }

  it('stays finite where the direct form underflows (T = 1e4): P becomes the identity, fusion becomes selection', () => {
    const filters = randomFilters(6, 9, 8);
    const naive = direct(filters, 1e4);
    expect(naive.scores.every(Number.isFinite)).toBe(false); // log(0 / 0) in the direct form
    const code = fusionCode(filters, 1e4);
    expect(finiteScores(code.scores)).toBe(true);
    expectClose(
      code.probabilities,
      Array.from({ length: 36 }, (_, k) => (k % 7 === 0 ? 1 : 0)),
      0,
      1e-300,
    );
    const rows = [4, 1];
    const fused = fuseRows(selectRows(code, rows), rows.length, filters.data, 6);
    expectClose(fused, [...filters.data.subarray(36, 45), ...filters.data.subarray(9, 18)], 1e-15, 0);
  });

  it('the distinct filters score highest: a near-duplicate pair scores lowest', () => {
    const filters = randomFilters(5, 8, 3);
    filters.data.set(
      filters.data.subarray(0, 8).map((x) => x + 1e-3),
      8,
    ); // filter 1 ≈ filter 0
    const code = fusionCode(filters, 2);
    const order = topChannels(code.scores, 5);
    expect(new Set(order.slice(3))).toEqual(new Set([0, 1]));
    expect(topChannels(code.scores, 2)).toEqual(order.slice(0, 2));
    expect(() => topChannels(code.scores, 0)).toThrow(/cannot keep 0 of 5/);
  });

  it('a NaN filter makes the scores non-finite (the caller reuses the last selection)', () => {
    const filters = randomFilters(4, 3, 2);
    filters.data[5] = Number.NaN;
    expect(finiteScores(fusionCode(filters, 1).scores)).toBe(false);
  });

  it('W̃ = P_top · W row by row, biases (rows of one element) included', () => {
    const filters = randomFilters(5, 6, 9);
    const code = fusionCode(filters, 1.5);
    const rows = [3, 0, 2];
    const pTop = selectRows(code, rows);
    const fused = fuseRows(pTop, 3, filters.data, 5);
    const want = rows.flatMap((row) =>
      Array.from({ length: 6 }, (_, d) =>
        Array.from({ length: 5 }, (_, c) => code.probabilities[row * 5 + c]! * filters.data[c * 6 + d]!).reduce(
          (a, b) => a + b,
          0,
        ),
      ),
    );
    expectClose(fused, want, 1e-14, 1e-16);
    const bias = [0.5, -1, 2, 0.25, 3];
    expectClose(
      fuseRows(pTop, 3, bias, 5),
      rows.map((row) => bias.reduce((s, b, c) => s + code.probabilities[row * 5 + c]! * b, 0)),
      1e-14,
      1e-16,
    );
  });
});

describe('temperature schedule', () => {
  for (const epochs of [1, 5, 30]) {
    it(`T(0) = T_s = 1 and T(E) = T_e = 1e4 for E = ${epochs}, rising in between`, () => {
      expect(fusionTemperature(0, epochs)).toBeCloseTo(FUSION_TEMPERATURE.start, 8);
      expect(fusionTemperature(epochs, epochs) / FUSION_TEMPERATURE.end).toBeCloseTo(1, 12);
      for (let e = 1; e <= epochs; e++)
        expect(fusionTemperature(e, epochs)).toBeGreaterThan(fusionTemperature(e - 1, epochs));
    });
  }

  it('follows A/(1+e^(−k·e)) + T_s − A/2 with A = 2(T_e − T_s)(1 + e^(−kE))/(1 − e^(−kE))', () => {
    const a = (2 * (1e4 - 1) * (1 + Math.exp(-10))) / (1 - Math.exp(-10));
    expect(fusionTemperature(3, 10)).toBeCloseTo(a / (1 + Math.exp(-3)) + 1 - a / 2, 8);
    expect(() => fusionTemperature(0, 0)).toThrow(/at least one epoch/);
  });
});
