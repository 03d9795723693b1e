/**
 * compiler/util/linalg: Cholesky factor and solve against known answers, ridge behaviour
 * (λ relative to the penalised diagonal, unpenalised unknowns untouched, shrinkage
 * monotone in the ridge), singular and indefinite matrices (jitter, then a clear error),
 * and the streaming Gram / cross-product sums against a direct computation.
 */
import { describe, expect, it } from 'vitest';
import { RegroupError } from '../../compiler/errors.js';
import {
  addCrossProducts,
  addGram,
  bilinear,
  cholesky,
  choleskySolve,
  NotPositiveDefinite,
  ridgeSolve,
  selectEntries,
  submatrix,
  symmetrize,
} from '../../compiler/util/linalg.js';
import { Random } from '../../compiler/util/random.js';

/** A·B for row-major matrices (n×k)·(k×m). */
function matmul(a: Float64Array, b: Float64Array, n: number, k: number, m: number): Float64Array {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++)
      for (let t = 0; t < k; t++) out[i * m + j] = out[i * m + j]! + a[i * k + t]! * b[t * m + j]!;
  return out;
}

function transpose(a: Float64Array, n: number, m: number): Float64Array {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) out[j * n + i] = a[i * m + j]!;
  return out;
}

/** A random SPD matrix M·Mᵀ + n·I. */
function randomSpd(n: number, random: Random): Float64Array {
  const m = Float64Array.from({ length: n * n }, () => random.normal());
  const a = matmul(m, transpose(m, n, n), n, n, n);
  for (let i = 0; i < n; i++) a[i * n + i] = a[i * n + i]! + n;
  return a;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

describe('cholesky', () => {
  it('factors the textbook 3×3 example exactly', () => {
    const a = Float64Array.of(4, 12, -16, 12, 37, -43, -16, -43, 98);
    expect([...cholesky(a, 3)]).toEqual([2, 0, 0, 6, 1, 0, -8, 5, 3]);
  });

  it('L·Lᵀ reproduces a random 30×30 SPD matrix to 1e-12 relative', () => {
    const n = 30;
    const a = randomSpd(n, new Random(1));
    const l = cholesky(a, n);
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) expect(l[i * n + j]).toBe(0);
    const back = matmul(l, transpose(l, n, n), n, n, n);
    expect(maxAbsDiff(back, a) / Math.max(...a.map(Math.abs))).toBeLessThan(1e-12);
  });

  it('rejects an indefinite matrix naming the failing pivot', () => {
    const a = Float64Array.of(1, 2, 2, 1);
    let caught: unknown;
    try {
      cholesky(a, 2, 'test matrix');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(NotPositiveDefinite);
    expect((caught as NotPositiveDefinite).pivot).toBe(1);
    expect((caught as Error).message).toMatch(/test matrix is not positive definite \(Cholesky pivot 1 is -3\.00\)/);
  });

  it('rejects a matrix of the wrong size', () => {
    expect(() => cholesky(new Float64Array(5), 2)).toThrow(/5 entries for an 2×2 matrix/);
  });
});

describe('choleskySolve', () => {
  it('solves the 3×3 example for a known solution exactly', () => {
    const a = Float64Array.of(4, 12, -16, 12, 37, -43, -16, -43, 98);
    const x = Float64Array.of(1, -2, 3);
    const b = matmul(a, x, 3, 3, 1); // (-68, -191, 356)
    expect([...choleskySolve(cholesky(a, 3), 3, b)]).toEqual([1, -2, 3]);
  });

  it('recovers 4 known right-hand-side solutions of a random 40×40 SPD system to 1e-10', () => {
    const n = 40;
    const random = new Random(2);
    const a = randomSpd(n, random);
    const x = Float64Array.from({ length: n * 4 }, () => random.normal());
    const solved = choleskySolve(cholesky(a, n), n, matmul(a, x, n, n, 4), 4);
    expect(maxAbsDiff(solved, x)).toBeLessThan(1e-10);
  });
});

describe('ridgeSolve', () => {
  it('ridge 0 is the plain solve', () => {
    const n = 12;
    const random = new Random(3);
    const a = randomSpd(n, random);
    const b = Float64Array.from({ length: n }, () => random.normal());
    const r = ridgeSolve(a, n, b, 1);
    expect(r).toMatchObject({ lambda: 0, jitter: 0 });
    expect(maxAbsDiff(r.solution, choleskySolve(cholesky(a, n), n, b))).toBe(0);
  });

  it('λ = ridge · mean penalised diagonal, added to penalised unknowns only', () => {
    // G = diag(2, 4, 9), the last unknown unpenalised: λ = 0.5 · (2 + 4)/2 = 1.5.
    const g = Float64Array.of(2, 0, 0, 0, 4, 0, 0, 0, 9);
    const b = Float64Array.of(2, 4, 9);
    const r = ridgeSolve(g, 3, b, 1, { ridge: 0.5, penalized: (i) => i < 2 });
    expect(r.lambda).toBe(1.5);
    expect(r.jitter).toBe(0);
    expect(r.solution[0]).toBeCloseTo(2 / 3.5, 14);
    expect(r.solution[1]).toBeCloseTo(4 / 5.5, 14);
    expect(r.solution[2]).toBeCloseTo(1, 14);
  });

  it('shrinks the solution norm monotonically as the ridge grows, towards 0', () => {
    const n = 10;
    const random = new Random(4);
    const a = randomSpd(n, random);
    const b = Float64Array.from({ length: n }, () => random.normal() * 10);
    const norms = [0, 1e-3, 1e-1, 1, 10, 1e3].map((ridge) => Math.hypot(...ridgeSolve(a, n, b, 1, { ridge }).solution));
    for (let i = 1; i < norms.length; i++) expect(norms[i]!).toBeLessThan(norms[i - 1]!);
    expect(norms.at(-1)! / norms[0]!).toBeLessThan(0.01);
  });

  it('a singular but consistent system gets a small jitter and a solution that satisfies it', () => {
    // Two identical columns: G = XᵀX is rank 2 of 3; b = Xᵀy with y in the column space.
    const x = Float64Array.of(1, 1, 2, 2, 2, 0, 3, 3, 1, 4, 4, -1); // 4 rows × 3 columns, columns 0 and 1 equal
    const gram = matmul(transpose(x, 4, 3), x, 3, 4, 3);
    const y = matmul(x, Float64Array.of(1, 1, 0.5), 4, 3, 1);
    const b = matmul(transpose(x, 4, 3), y, 3, 4, 1);
    const r = ridgeSolve(gram, 3, b, 1, { what: 'duplicate-column Gram' });
    expect(r.jitter).toBeGreaterThan(0);
    expect(r.jitter).toBeLessThanOrEqual(1e-4 * 30);
    const fitted = matmul(x, r.solution, 4, 3, 1);
    expect(maxAbsDiff(fitted, y)).toBeLessThan(1e-6);
    // Only the sum of the duplicated weights is determined; jitter keeps the split bounded
    // (the null-space part is roundoff / jitter, far from blowing up).
    expect(r.solution[0]! + r.solution[1]!).toBeCloseTo(2, 6);
    expect(Math.abs(r.solution[0]! - r.solution[1]!)).toBeLessThan(1e-2);
  });

  it('an all-zero matrix (dead inputs) with a zero right-hand side solves to zeros', () => {
    const r = ridgeSolve(new Float64Array(4), 2, new Float64Array(2), 1, { ridge: 1e-3 });
    expect([...r.solution]).toEqual([0, 0]);
    expect(r.jitter).toBeGreaterThan(0);
  });

  it('an indefinite matrix fails with a RegroupError naming it', () => {
    const g = Float64Array.of(1, 0, 0, -1);
    expect(() => ridgeSolve(g, 2, Float64Array.of(1, 1), 1, { what: 'Gram matrix of layer x' })).toThrow(RegroupError);
    expect(() => ridgeSolve(g, 2, Float64Array.of(1, 1), 1, { what: 'Gram matrix of layer x' })).toThrow(
      /Gram matrix of layer x stays singular after adding jitter up to 1\.00e-4 \(pivot 1\)/,
    );
  });

  it('least squares from streamed Gram sums recovers exact weights (200 rows, 6 unknowns, bias unpenalised)', () => {
    const random = new Random(5);
    const rows = 200;
    const k = 6;
    const truth = Float64Array.of(0.5, -1, 2, 0, 3, -0.25); // last one is the bias
    const block = new Float64Array(k * rows); // column-major
    const y = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < k - 1; c++) block[c * rows + r] = random.normal();
      block[(k - 1) * rows + r] = 1;
      for (let c = 0; c < k; c++) y[r] = y[r]! + truth[c]! * block[c * rows + r]!;
    }
    const gram = new Float64Array(k * k);
    const xy = new Float64Array(k);
    addGram(gram, k, block, rows);
    addCrossProducts(xy, block, k, y, 1, rows);
    const r = ridgeSolve(symmetrize(gram, k), k, xy, 1, { penalized: (i) => i < k - 1 });
    expect(maxAbsDiff(r.solution, truth)).toBeLessThan(1e-12);
  });
});

describe('streaming sums and indexing', () => {
  it('addGram (upper triangle) and addCrossProducts match AᵀA and AᵀB, over blocks with a stride', () => {
    const random = new Random(6);
    const [rows, n, m, stride] = [37, 5, 3, 64];
    const a = Float64Array.from({ length: rows * n }, () => random.normal()); // row-major
    const b = Float64Array.from({ length: rows * m }, () => random.normal());
    const colMajor = (x: Float64Array, cols: number) => {
      const out = new Float64Array(cols * stride);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * stride + r] = x[r * cols + c]!;
      return out;
    };
    const gram = new Float64Array(n * n);
    const cross = new Float64Array(n * m);
    // Two partial blocks must sum like one.
    addGram(gram, n, colMajor(a, n), rows, stride);
    addGram(gram, n, colMajor(a, n), rows, stride);
    addCrossProducts(cross, colMajor(a, n), n, colMajor(b, m), m, rows, stride);
    const wantGram = matmul(transpose(a, rows, n), a, n, rows, n).map((v) => 2 * v);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(gram[i * n + j]).toBe(0);
    expect(maxAbsDiff(symmetrize(gram, n), wantGram)).toBeLessThan(1e-12);
    expect(maxAbsDiff(cross, matmul(transpose(a, rows, n), b, n, rows, m))).toBeLessThan(1e-12);
  });

  it('submatrix, selectEntries and bilinear pick the right entries', () => {
    const a = Float64Array.from({ length: 16 }, (_, i) => i); // 4×4, a[i][j] = 4i + j
    expect([...submatrix(a, 4, [3, 1])]).toEqual([15, 13, 7, 5]);
    expect([...selectEntries(a, 4, [0, 2], [1, 3, 0])]).toEqual([1, 3, 0, 9, 11, 8]);
    expect(bilinear([1, 0, 0, 2], a, [0, 1, 0, 0], 4)).toBe(1 + 2 * 13);
  });
});
