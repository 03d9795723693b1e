/**
 * Dense float64 linear algebra for least-squares fitting, pure TypeScript.
 *
 * Matrices are row-major Float64Arrays; an n×n symmetric matrix is stored in full.
 *
 * - Cholesky: A = L·Lᵀ for symmetric positive definite A (L lower triangular), by the
 *   Cholesky–Banachiewicz recurrence L[i][j] = (A[i][j] − Σ_{k<j} L[i][k]·L[j][k]) / L[j][j],
 *   L[j][j] = √(A[j][j] − Σ_{k<j} L[j][k]²). A pivot ≤ 0 (or not finite) means A is not
 *   positive definite in working precision.
 * - Solve A·X = B by L·Z = B (forward) then Lᵀ·X = Z (backward), for many right-hand sides.
 * - Ridge: X = (G + λ·P)⁻¹ (B + λ·P·X₀) with P = diag(penalised ∈ {0, 1}), λ = ridge · mean
 *   of the penalised diagonal entries of G (so ridge is scale-free) and a prior X₀ (default
 *   0): the minimiser of ‖A·X − Y‖² + λ‖P(X − X₀)‖² when G = AᵀA and B = AᵀY. When the factorisation still
 *   fails (G singular along an unpenalised direction, or λ = 0), a jitter ε·I is added with
 *   ε = 1e-12·s, 1e-10·s, … up to 1e-4·s (s = mean |diagonal|, or 1 for a zero matrix);
 *   past that a RegroupError names the matrix.
 * - Streaming sums of cross products: target += Aᵀ·B for column-major row blocks, the Gram
 *   Aᵀ·A on its upper triangle only (symmetrize() fills the lower one).
 */
import { RegroupError } from '../errors.js';

/** Thrown when a matrix is not positive definite; `pivot` is the failing row. */
export class NotPositiveDefinite extends RegroupError {
  constructor(
    readonly pivot: number,
    readonly value: number,
    what: string,
  ) {
    super(
      'runtime',
      `${what} is not positive definite (Cholesky pivot ${pivot} is ${value.toPrecision(3)}); add a ridge term or more independent samples`,
    );
  }
}

/** Lower-triangular L with A = L·Lᵀ (upper part zero); throws NotPositiveDefinite. */
export function cholesky(matrix: Float64Array, n: number, what = 'matrix'): Float64Array {
  checkSquare(matrix, n, what);
  const factor = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const rowI = i * n;
    for (let j = 0; j <= i; j++) {
      const rowJ = j * n;
      let sum = matrix[rowI + j]!;
      for (let k = 0; k < j; k++) sum -= factor[rowI + k]! * factor[rowJ + k]!;
      if (i === j) {
        if (!(sum > 0) || !Number.isFinite(sum)) throw new NotPositiveDefinite(i, sum, what);
        factor[rowI + i] = Math.sqrt(sum);
      } else {
        factor[rowI + j] = sum / factor[rowJ + j]!;
      }
    }
  }
  return factor;
}

/** X with L·Lᵀ·X = B; B is n×columns row-major (a vector when columns = 1). */
export function choleskySolve(factor: Float64Array, n: number, rhs: Float64Array, columns = 1): Float64Array {
  if (rhs.length !== n * columns)
    throw new RangeError(`choleskySolve: right-hand side has ${rhs.length} values, expected ${n}×${columns}`);
  const x = Float64Array.from(rhs);
  for (let i = 0; i < n; i++) {
    const d = factor[i * n + i]!;
    for (let c = 0; c < columns; c++) {
      let sum = x[i * columns + c]!;
      for (let k = 0; k < i; k++) sum -= factor[i * n + k]! * x[k * columns + c]!;
      x[i * columns + c] = sum / d;
    }
  }
  for (let i = n - 1; i >= 0; i--) {
    const d = factor[i * n + i]!;
    for (let c = 0; c < columns; c++) {
      let sum = x[i * columns + c]!;
      for (let k = i + 1; k < n; k++) sum -= factor[k * n + i]! * x[k * columns + c]!;
      x[i * columns + c] = sum / d;
    }
  }
  return x;
}

export interface RidgeOptions {
  /** λ relative to the mean penalised diagonal entry (default 0: plain least squares). */
  ridge?: number;
  /** Which unknowns are penalised (default: all); e.g. a bias column is not. */
  penalized?: (index: number) => boolean;
  /** Named in errors: 'Gram matrix of layer conv3'. */
  what?: string;
  /** X₀, n×columns: the penalty pulls towards it instead of towards zero. */
  prior?: Float64Array;
}

export interface RidgeSolution {
  /** n×columns row-major. */
  solution: Float64Array;
  /** The absolute λ that was added to the penalised diagonal. */
  lambda: number;
  /** The absolute jitter that was added to every diagonal entry (0 when none was needed). */
  jitter: number;
}

const FIRST_JITTER = 1e-12;
const LAST_JITTER = 1e-4;

/** Solve (G + λ·P)·X = B, adding jitter only when the factorisation fails (see the header). */
export function ridgeSolve(
  gram: Float64Array,
  n: number,
  rhs: Float64Array,
  columns: number,
  options: RidgeOptions = {},
): RidgeSolution {
  const what = options.what ?? 'matrix';
  checkSquare(gram, n, what);
  const penalized = options.penalized ?? (() => true);
  const lambda = (options.ridge ?? 0) * meanDiagonal(gram, n, penalized);
  const regularized = Float64Array.from(gram);
  for (let i = 0; i < n; i++) if (penalized(i)) regularized[i * n + i] = regularized[i * n + i]! + lambda;
  const target = options.prior ? withPrior(rhs, options.prior, n, columns, lambda, penalized) : rhs;
  const scale = meanDiagonal(gram, n, () => true, true) || 1;
  let jitter = 0;
  for (;;) {
    try {
      return {
        solution: choleskySolve(cholesky(withJitter(regularized, n, jitter), n, what), n, target, columns),
        lambda,
        jitter,
      };
    } catch (err) {
      if (!(err instanceof NotPositiveDefinite)) throw err;
      jitter = jitter === 0 ? FIRST_JITTER * scale : jitter * 100;
      if (jitter > LAST_JITTER * scale * (1 + 1e-9)) {
        throw new RegroupError(
          'runtime',
          `${what} stays singular after adding jitter up to ${(LAST_JITTER * scale).toExponential(2)} (pivot ${err.pivot}); the inputs are degenerate — add calibration samples or raise the ridge`,
        );
      }
    }
  }
}

/** Mean of the selected diagonal entries (absolute values when `absolute`); 0 when none. */
export function meanDiagonal(
  matrix: Float64Array,
  n: number,
  selected: (index: number) => boolean = () => true,
  absolute = false,
): number {
  let sum = 0;
  let count = 0;
  for (let i = 0; i < n; i++) {
    if (!selected(i)) continue;
    const d = matrix[i * n + i]!;
    sum += absolute ? Math.abs(d) : d;
    count++;
  }
  return count ? sum / count : 0;
}

/** B + λ·P·X₀. */
function withPrior(
  rhs: Float64Array,
  prior: Float64Array,
  n: number,
  columns: number,
  lambda: number,
  penalized: (index: number) => boolean,
): Float64Array {
  if (prior.length !== n * columns)
    throw new RangeError(`ridgeSolve: prior has ${prior.length} values, expected ${n}×${columns}`);
  const out = Float64Array.from(rhs);
  for (let i = 0; i < n; i++)
    if (penalized(i))
      for (let c = 0; c < columns; c++) out[i * columns + c] = out[i * columns + c]! + lambda * prior[i * columns + c]!;
  return out;
}

function withJitter(matrix: Float64Array, n: number, jitter: number): Float64Array {
  if (jitter === 0) return matrix;
  const out = Float64Array.from(matrix);
  for (let i = 0; i < n; i++) out[i * n + i] = out[i * n + i]! + jitter;
  return out;
}

/** The square submatrix on `indices` (rows and columns) of an n×n matrix. */
export function submatrix(matrix: Float64Array, n: number, indices: ArrayLike<number>): Float64Array {
  const m = indices.length;
  const out = new Float64Array(m * m);
  for (let a = 0; a < m; a++) {
    const row = indices[a]! * n;
    for (let b = 0; b < m; b++) out[a * m + b] = matrix[row + indices[b]!]!;
  }
  return out;
}

/** Rows `rowIndices` and columns `columnIndices` of a row-major matrix with `columns` columns. */
export function selectEntries(
  matrix: Float64Array,
  columns: number,
  rowIndices: ArrayLike<number>,
  columnIndices: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(rowIndices.length * columnIndices.length);
  for (let a = 0; a < rowIndices.length; a++) {
    const row = rowIndices[a]! * columns;
    for (let b = 0; b < columnIndices.length; b++) out[a * columnIndices.length + b] = matrix[row + columnIndices[b]!]!;
  }
  return out;
}

/**
 * Upper triangle of target (n×n) += Aᵀ·A, where `block` holds `rows` rows of A column-major
 * (entry (r, i) at block[i·stride + r]; stride ≥ rows).
 */
export function addGram(target: Float64Array, n: number, block: Float64Array, rows: number, stride = rows): void {
  for (let i = 0; i < n; i++) {
    const ci = i * stride;
    const row = i * n;
    let j = i;
    // Four columns per sweep: each load of column i serves four dot products.
    for (; j + 3 < n; j += 4) {
      const [c0, c1, c2, c3] = [j * stride, (j + 1) * stride, (j + 2) * stride, (j + 3) * stride];
      let s0 = 0,
        s1 = 0,
        s2 = 0,
        s3 = 0;
      for (let r = 0; r < rows; r++) {
        const x = block[ci + r]!;
        s0 += x * block[c0 + r]!;
        s1 += x * block[c1 + r]!;
        s2 += x * block[c2 + r]!;
        s3 += x * block[c3 + r]!;
      }
      target[row + j] = target[row + j]! + s0;
      target[row + j + 1] = target[row + j + 1]! + s1;
      target[row + j + 2] = target[row + j + 2]! + s2;
      target[row + j + 3] = target[row + j + 3]! + s3;
    }
    for (; j < n; j++) {
      const cj = j * stride;
      let sum = 0;
      for (let r = 0; r < rows; r++) sum += block[ci + r]! * block[cj + r]!;
      target[row + j] = target[row + j]! + sum;
    }
  }
}

/** target (n×m, row-major) += Aᵀ·B for column-major row blocks A (n columns) and B (m columns). */
export function addCrossProducts(
  target: Float64Array,
  a: Float64Array,
  n: number,
  b: Float64Array,
  m: number,
  rows: number,
  stride = rows,
): void {
  for (let i = 0; i < n; i++) {
    const ci = i * stride;
    for (let j = 0; j < m; j++) {
      const cj = j * stride;
      let sum = 0;
      for (let r = 0; r < rows; r++) sum += a[ci + r]! * b[cj + r]!;
      target[i * m + j] = target[i * m + j]! + sum;
    }
  }
}

/** Copy the upper triangle onto the lower one, in place. */
export function symmetrize(matrix: Float64Array, n: number): Float64Array {
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) matrix[i * n + j] = matrix[j * n + i]!;
  return matrix;
}

/** xᵀ·A·y for an n×n matrix. */
export function bilinear(x: ArrayLike<number>, matrix: Float64Array, y: ArrayLike<number>, n: number): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[i]!;
    if (xi === 0) continue;
    let row = 0;
    for (let j = 0; j < n; j++) row += matrix[i * n + j]! * y[j]!;
    total += xi * row;
  }
  return total;
}

function checkSquare(matrix: Float64Array, n: number, what: string): void {
  if (matrix.length !== n * n) throw new RangeError(`${what}: ${matrix.length} entries for an ${n}×${n} matrix`);
}
