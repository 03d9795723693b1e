/**
 * Run the built `regroup` command as a user would, asynchronously: a synchronous spawn would
 * block the test worker's event loop for the whole child run, and vitest's worker RPC times
 * out when that exceeds a minute on a loaded machine.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT } from './shared.js';

export const BIN = path.join(PROJECT_ROOT, 'bin/regroup.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node bin/regroup.js …args` with CI=true (plain progress lines); resolves when it exits. */
export function regroup(...args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, CI: 'true' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }),
    );
  });
}
