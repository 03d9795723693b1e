/**
 * Worker thread body for loader.ts' decode pool: reads and decodes a list of image files (all
 * of them at once: sharp works on libuv's thread pool) and posts the pixels back, transferring
 * a copy of each image's pixels (sharp's native buffers cannot move between threads). Bad files
 * come back as { ok: false } with the RegroupError's code and message, so the main thread
 * can skip or throw exactly as it would for in-process decoding.
 */
import { parentPort } from 'node:worker_threads';
import { RegroupError } from '../../compiler/errors.js';
import { decodeImageFileInWorker } from './decode.js';

export interface DecodeTask {
  id: number;
  files: string[];
}

export type DecodeOutcome =
  | { ok: true; width: number; height: number; channels: 1 | 3 | 4; data: Uint8Array }
  | { ok: false; code: string; message: string };

export interface DecodeReply {
  id: number;
  outcomes: DecodeOutcome[];
}

async function decodeOne(file: string): Promise<DecodeOutcome> {
  try {
    const image = await decodeImageFileInWorker(file);
    // A copy of our own: sharp's pixels live in native memory, which cannot be transferred.
    return { ok: true, width: image.width, height: image.height, channels: image.channels, data: image.data.slice() };
  } catch (err) {
    if (err instanceof RegroupError) return { ok: false, code: err.code, message: err.message };
    return { ok: false, code: 'runtime', message: `${file}: ${err instanceof Error ? err.message : String(err)}` };
  }
}

parentPort?.on('message', async (task: DecodeTask) => {
  const outcomes = await Promise.all(task.files.map(decodeOne));
  const transfer = outcomes.flatMap((o) => (o.ok ? [o.data.buffer as ArrayBuffer] : []));
  const reply: DecodeReply = { id: task.id, outcomes };
  parentPort!.postMessage(reply, transfer);
});
