/**
 * What every benchmark needs from its command line: the project root (benchmarks run
 * compiled from dist/bench/), and `--name value` flags taken out of the argument list so the
 * positional arguments that remain are easy to read.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root, whether a benchmark runs compiled (dist/bench/) or from source (bench/). */
export const ROOT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  path.basename(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')) === 'dist' ? '../..' : '..',
);

/** The process arguments with flags removed as they are read. */
export class BenchArgs {
  readonly rest: string[];

  constructor(argv: readonly string[] = process.argv.slice(2)) {
    this.rest = [...argv];
  }

  /** The value after `name` (removing both), or the fallback. */
  string(name: string, fallback: string): string {
    const at = this.rest.indexOf(name);
    if (at < 0 || this.rest[at + 1] === undefined) return fallback;
    return this.rest.splice(at, 2)[1]!;
  }

  number(name: string, fallback: number): number {
    return Number(this.string(name, String(fallback)));
  }

  /** A comma-separated list of numbers. */
  numbers(name: string, fallback: string): number[] {
    return this.string(name, fallback).split(',').map(Number);
  }

  /** Whether a bare switch is present (removing it). */
  has(name: string): boolean {
    const at = this.rest.indexOf(name);
    if (at >= 0) this.rest.splice(at, 1);
    return at >= 0;
  }
}
