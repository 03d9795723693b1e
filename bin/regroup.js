#!/usr/bin/env node
// Entry point of the `regroup` command: runs the compiled CLI in dist/ (built by `npm run build`;
// `npm test`, `npm run demo` and the bench scripts build first — `npm ci` runs no scripts, see .npmrc).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write(`regroup: the compiled CLI is missing (${main}); run \`npm run build\` in the regroup folder\n`);
  process.exit(70);
}
const { runCli } = await import(pathToFileURL(main).href);
process.exitCode = await runCli(process.argv.slice(2));
