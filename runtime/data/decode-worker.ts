/**
 * Worker thread body for loader.ts' decode pool: reads and decodes a list of image files and
 * posts the pixels back, transferring each image's buffer instead of copying it. Bad files
 * come back as { ok: false } with the RegroupError's code and message, so the main thread
 * can skip or throw exactly as it would for in-process decoding.
 */
import { parentPort } from 'node:worker_threads';
import { RegroupError } from '../../compiler/errors.js';
import { decodeImageFileSync } from './decode.js';

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

function decodeOne(file: string): DecodeOutcome {
  try {
    const image = decodeImageFileSync(file);
    const owned =
      image.data.byteOffset === 0 && image.data.byteLength === image.data.buffer.byteLength
        ? image.data
        : image.data.slice();
    return { ok: true, width: image.width, height: image.height, channels: image.channels, data: owned };
  } catch (err) {
    if (err instanceof RegroupError) return { ok: false, code: err.code, message: err.message };
    return { ok: false, code: 'runtime', message: `${file}: ${err instanceof Error ? err.message : String(err)}` };
  }
}

parentPort?.on('message', (task: DecodeTask) => {
  const outcomes = task.files.map(decodeOne);
  const transfer = outcomes.flatMap((o) => (o.ok ? [o.data.buffer as ArrayBuffer] : []));
  const reply: DecodeReply = { id: task.id, outcomes };
  parentPort!.postMessage(reply, transfer);
});
