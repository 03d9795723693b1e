#!/usr/bin/env node
// Entry point of the `regroup` command: runs the compiled CLI in dist/ (built by `npm ci`
// through the package's `prepare` script, or by `npm run build`).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write(`regroup: the compiled CLI is missing (${main}); run \`npm run build\` in the regroup folder\n`);
  process.exit(70);
}
const { runCli } = await import(pathToFileURL(main).href);
process.exitCode = await runCli(process.argv.slice(2));
