/** A temporary root for one test file (made before its tests, removed after) and fresh folders under it. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';

/** Registers the root's set-up and clean-up; returns `folder(name)`, which makes `<root>/<name>`. */
export function tempFolders(prefix: string): (name: string) => string {
  let root = '';
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
  return (name) => {
    const dir = path.join(root, name);
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  };
}
