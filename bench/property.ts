/**
 * The long run of the generated-graph properties (test/property/): 10,000 random CNNs by
 * default, each checked for valid passes, shape inference against onnxruntime, exact pruning
 * of planted dead channels and every lowering form against the masked-dense reference.
 * Prints the wall time, what was covered, and on failure the shrunk case as a regression
 * entry (exit 1).
 * Run: npm run bench:property [-- --graphs 10000] [--seed 1] [--max-layers 6]
 */
import { BenchArgs } from './args.js';
import { checkGraphs, Coverage } from '../test/property/run.js';

const args = new BenchArgs();
const graphs = args.number('--graphs', 10_000);
const seed = args.number('--seed', 1);
const maxLayers = args.number('--max-layers', 6);

console.log(`bench/property: ${graphs} generated graphs, seed ${seed}, up to ${maxLayers} layers per graph`);
const coverage = new Coverage();
const result = await checkGraphs({ graphs, seed, maxLayers, coverage });
const perGraph = (1000 * result.seconds) / result.runs;
console.log(`${result.runs} graphs in ${result.seconds.toFixed(1)} s (${perGraph.toFixed(1)} ms per graph)`);
for (const line of coverage.lines()) console.log(`  ${line}`);
if (result.failure) {
  console.log(`\nFAILED\n${result.failure.report}`);
  process.exitCode = 1;
} else {
  console.log('no failures');
}
