/**
 * What every benchmark needs from its command line: the project root (benchmarks run
 * compiled from dist/bench/), `--name value` flags taken out of the argument list so the
 * positional arguments that remain are easy to read, and one clear line (exit status 1)
 * instead of a stack trace when a fixture is missing or an input is refused.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RegroupError } from '../compiler/errors.js';

/** The project root, whether a benchmark runs compiled (dist/bench/) or from source (bench/). */
export const ROOT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  path.basename(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')) === 'dist' ? '../..' : '..',
);

/** The third-party models and data (../shared/fixtures/README.md), beside the project, never inside it. */
export const SHARED_FIXTURES = path.resolve(ROOT, '../shared/fixtures');

/** The running benchmark's name, for messages: `bench/prune`. */
const BENCH = `bench/${path.basename(process.argv[1] ?? 'bench', '.js')}`;

/**
 * Stop with one line naming every missing file or folder, and exit status 1, unless all of
 * `files` exist; for files under ../shared/fixtures the line says where that folder belongs.
 */
export function requireFixtures(files: readonly string[]): void {
  const missing = files.filter((file) => !fs.existsSync(file));
  if (missing.length === 0) return;
  const shared = missing.some((file) => !path.relative(SHARED_FIXTURES, file).startsWith('..'));
  const where = shared
    ? `; ../shared/fixtures must sit beside the project (looked in ${SHARED_FIXTURES}; see its README.md)`
    : '';
  console.error(`${BENCH}: missing ${missing.join(', ')}${where}`);
  process.exit(1);
}

// A refused input (a missing model given by flag, a bad file) is one line like the CLI's; a bug keeps its stack.
process.on('uncaughtException', (err) => {
  if (err instanceof RegroupError) console.error(`${BENCH}: error[${err.code}]: ${err.message}`);
  else console.error(err);
  process.exit(1);
});

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
