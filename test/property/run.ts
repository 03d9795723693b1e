/**
 * Drive the generated-graph properties with fast-check: `checkGraphs` runs `checkCnn` on
 * `graphs` descriptions drawn from a seed, shrinks the first failure to a small case, and
 * returns it with a text ready to paste into test/property/regressions.test.ts. Shared by the
 * suite (test/property/generated.test.ts) and the long run (bench/property.ts); no vitest here.
 */
import fc from 'fast-check';
import { type CheckOptions, checkCnn, type GraphStats, PropertyFailure } from './check.js';
import { type CnnSpec, cnnSpec, specSource } from './generate.js';

export interface RunOptions extends CheckOptions {
  graphs: number;
  seed: number;
  /** Most layers per graph (default 6). */
  maxLayers?: number;
  /** Tallies every graph that passed (shrinking runs included). */
  coverage?: Coverage;
}

/** What the passing graphs covered: layer kinds drawn, and how much each check exercised. */
export class Coverage {
  graphs = 0;
  nodes = 0;
  shapes = 0;
  prepared = 0;
  prunedGraphs = 0;
  removed = 0;
  /** Graphs whose planted dead channels changed the outputs: the prune oracle compared something. */
  mattered = 0;
  loweredGraphs = 0;
  layers = 0;
  readonly ops: Record<string, number> = {};
  readonly names: Record<string, number> = {};
  readonly forced: Record<string, number> = {};
  readonly auto: Record<string, number> = {};

  record(spec: CnnSpec, stats: GraphStats): void {
    this.graphs++;
    this.nodes += stats.nodes;
    this.shapes += stats.shapesChecked;
    this.prepared += stats.prepared ? 1 : 0;
    this.prunedGraphs += stats.pruned.removed > 0 ? 1 : 0;
    this.removed += stats.pruned.removed;
    this.mattered += stats.pruned.mattered ? 1 : 0;
    this.loweredGraphs += stats.lowered.layers > 0 ? 1 : 0;
    this.layers += stats.lowered.layers;
    for (const [form, n] of Object.entries(stats.lowered.forced)) add(this.forced, form, n);
    for (const [form, n] of Object.entries(stats.lowered.auto)) add(this.auto, form, n);
    for (const layer of spec.layers) add(this.ops, layer.op, 1);
    add(this.names, spec.names, 1);
  }

  lines(): string[] {
    return [
      `layers drawn: ${list(this.ops)}; node names: ${list(this.names)}; ${this.nodes} nodes in all`,
      `shapes: ${this.shapes} node outputs compared with onnxruntime; PREPARE changed ${this.prepared} graphs`,
      `prune: ${this.prunedGraphs} graphs pruned, ${this.removed} coupled channels removed; planting changed the outputs of ${this.mattered}`,
      `lower: ${this.loweredGraphs} graphs, ${this.layers} layers; forced forms taken: ${list(this.forced)}; cost model's picks: ${list(this.auto)}`,
    ];
  }
}

function add(table: Record<string, number>, key: string, n: number): void {
  table[key] = (table[key] ?? 0) + n;
}

function list(table: Record<string, number>): string {
  return Object.entries(table)
    .map(([key, n]) => `${key} ${n}`)
    .join(', ');
}

export interface RunResult {
  /** Graphs the property ran on, shrinking included. */
  runs: number;
  seconds: number;
  failure?: {
    spec: CnnSpec;
    check: string;
    message: string;
    /** What to print: the error, how to replay it, the shrunk case as a regression entry. */
    report: string;
  };
}

/** Run the properties on `graphs` generated graphs; stop at the first failure and shrink it. */
export async function checkGraphs(options: RunOptions): Promise<RunResult> {
  const started = performance.now();
  let runs = 0;
  const property = fc.asyncProperty(cnnSpec(options.maxLayers), async (spec) => {
    runs++;
    const stats = await checkCnn(spec, options);
    options.coverage?.record(spec, stats);
  });
  const details = await fc.check(property, { numRuns: options.graphs, seed: options.seed });
  const seconds = (performance.now() - started) / 1000;
  if (!details.failed || !details.counterexample) return { runs, seconds };
  const [spec] = details.counterexample;
  const error = details.errorInstance;
  const check = error instanceof PropertyFailure ? error.check : 'unexpected';
  const message = error instanceof Error ? error.message : String(error);
  const report = [
    `generated graph ${details.numRuns} of ${options.graphs} failed (seed ${details.seed}, path '${details.counterexamplePath}'), shrunk ${details.numShrinks} times:`,
    `  ${message}`,
    'the shrunk case, as an entry of REGRESSIONS in test/property/regressions.test.ts:',
    `  { name: '${check}: <what it shows>', spec: ${specSource(spec)} },`,
  ].join('\n');
  return { runs, seconds, failure: { spec, check, message, report } };
}
