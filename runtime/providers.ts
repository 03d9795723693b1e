/**
 * Execution providers. `cpu` and `webgpu` ship inside the onnxruntime-node package; `cuda`
 * needs binaries that its install script downloads, which this project skips at `npm ci`
 * (see README: `npm run install:cuda`).
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { RegroupError } from '../compiler/errors.js';

export type ExecutionProvider = 'cpu' | 'webgpu' | 'cuda';
export const PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'webgpu', 'cuda'];

export function parseProvider(text: string): ExecutionProvider {
  if ((PROVIDERS as readonly string[]).includes(text)) return text as ExecutionProvider;
  throw new RegroupError('usage', `unknown execution provider '${text}'; use one of ${PROVIDERS.join(', ')}`);
}

/** Folder of the onnxruntime native binaries for this platform. */
export function ortBinaryDir(): string {
  const require = createRequire(import.meta.url);
  const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
  return path.join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

/** Throws a RegroupError with the fix when the provider cannot run here. */
export function checkProvider(ep: ExecutionProvider): void {
  if (ep !== 'cuda') return;
  const dir = ortBinaryDir();
  const lib = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  if (!fs.existsSync(path.join(dir, lib))) {
    throw new RegroupError(
      'provider',
      `the CUDA execution provider is not installed (${lib} missing in ${dir}); on a machine with CUDA 12 and network access run \`npm run install:cuda\`, or use --ep cpu`,
    );
  }
}

/**
 * Channels per SIMD block of the CPU provider's float kernels: 16 with AVX-512, 8 with
 * AVX/AVX2, 4 otherwise (NEON, SSE). Grouped and pruned convs run near FLOP-proportional
 * speed when channel counts are multiples of it.
 */
export function cpuSimdBlock(): number {
  try {
    const flags = fs.readFileSync('/proc/cpuinfo', 'utf8');
    if (/\bavx512f\b/.test(flags)) return 16;
    if (/\bavx2?\b/.test(flags)) return 8;
  } catch {
    // not Linux: fall through
  }
  return process.arch === 'x64' ? 8 : 4;
}
