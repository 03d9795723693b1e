/** Parsers for numeric command-line values; each throws commander's InvalidArgumentError with the bad text. */
import { InvalidArgumentError } from 'commander';

export function positiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`'${text}' is not a positive integer`);
  return n;
}

export function nonNegativeInt(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`'${text}' is not a non-negative integer`);
  return n;
}

export function positiveNumber(text: string): number {
  const n = Number(text);
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`'${text}' is not a positive number`);
  return n;
}

export function nonNegativeNumber(text: string): number {
  const n = Number(text);
  if (!(n >= 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`'${text}' is not a number ≥ 0`);
  return n;
}

/** A number in [0, 1]. */
export function unitFraction(text: string): number {
  const n = Number(text);
  if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError(`'${text}' is not a number in [0, 1]`);
  return n;
}

/** A fraction in (0, 1]: how much of something to keep. */
export function fraction(text: string): number {
  const n = Number(text);
  if (!(n > 0 && n <= 1)) throw new InvalidArgumentError(`'${text}' is not a fraction in (0, 1]`);
  return n;
}
