/**
 * Batching: a dataset → an async iterable of { images, labels } batches, in dataset order
 * or a seeded shuffle (Random(seed).shuffle of the indices, so runs repeat), cut to `limit`
 * positions (counted before skipping), with the next `prefetch` batches decoded while the
 * current one is used.
 *
 * Unreadable images (RegroupError 'bad-data' from decoding) are skipped and counted unless
 * strict (the option, else the dataset's `strict`), in which case the first one throws.
 * Batches that lose every image are not yielded; read `skipped` on the stream for the total.
 *
 * Workers: file datasets (image folders) can decode in a pool of worker_threads, each task a
 * contiguous slice of a batch; in-memory datasets (MNIST, IDX) never use one. Measured on the
 * 2-core development machine, CIFAR-10 test JPEGs (32×32), batch 64:
 *   - read + decode + preprocess only (bench/data.ts, 10,000 images, median of 5 passes, two
 *     runs): main thread 6,350–6,380 images/s, 1 worker 7,830 (1.23×), 2 workers 9,550–9,730 (1.5×);
 *   - the same feeding ResNet-20 (batch 1) through onnxruntime, 3,000 images, three runs each:
 *     main thread 2.38–2.52 s, 1 worker 2.31–2.36 s, 2 workers 2.39–2.44 s — with inference on
 *     the same cores a second decode thread only competes with onnxruntime.
 * So workers help, and `workers: 'auto'` (the default) is one per core beyond the main thread,
 * at most 4: 1 here.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { RegroupError } from '../../compiler/errors.js';
import { Random } from '../../compiler/util/random.js';
import { isFileDataset, type FileDataset } from './datasets.js';
import type { DecodeOutcome, DecodeReply, DecodeTask } from './decode-worker.js';
import type { Dataset, LabeledImage } from './types.js';

export interface LoaderOptions {
  batchSize: number;
  shuffle?: boolean;
  /** Shuffle seed (default 0). */
  seed?: number;
  /** Use only the first `limit` positions of the (shuffled) order. */
  limit?: number;
  /** Throw on the first unreadable image (default: the dataset's `strict`, else false). */
  strict?: boolean;
  /** Decode threads for file datasets: a count (0 = decode on the main thread) or 'auto' (default). */
  workers?: number | 'auto';
  /** Batches decoded ahead of the one in use (default 2). */
  prefetch?: number;
  /** Drop a last batch smaller than batchSize (default false). */
  dropLast?: boolean;
}

export interface Batch {
  images: LabeledImage[];
  labels: Int32Array;
  /** Skipped images so far in this pass, this batch included. */
  skipped: number;
  /** The first few skipped sources so far (at most SKIPPED_SOURCES_KEPT). */
  skippedSources: readonly string[];
}

export const SKIPPED_SOURCES_KEPT = 5;

type Outcome = { ok: true; sample: LabeledImage } | { ok: false; error: RegroupError };

/** Batches over `dataset`; iterate with `for await`. Each iteration is a fresh pass. */
export function batches(dataset: Dataset, options: LoaderOptions): BatchStream {
  return new BatchStream(dataset, options);
}

export class BatchStream implements AsyncIterable<Batch> {
  #skipped = 0;
  #skippedSources: string[] = [];
  readonly workers: number;

  constructor(
    readonly dataset: Dataset,
    readonly options: LoaderOptions,
  ) {
    if (!Number.isInteger(options.batchSize) || options.batchSize <= 0)
      throw new RegroupError('usage', `batch size ${options.batchSize} is not a positive whole number`);
    this.workers = resolveWorkers(dataset, options.workers ?? 'auto');
  }

  /** Images skipped in the current or last pass. */
  get skipped(): number {
    return this.#skipped;
  }

  get skippedSources(): readonly string[] {
    return this.#skippedSources;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Batch> {
    this.#skipped = 0;
    this.#skippedSources = [];
    const chunks = batchIndices(this.dataset.size, this.options);
    const pool = this.workers > 0 ? new DecodePool(this.workers) : undefined;
    const fetch = (indices: number[]) =>
      pool ? fetchInPool(this.dataset as FileDataset, indices, pool) : fetchInProcess(this.dataset, indices);
    const ahead = Math.max(0, this.options.prefetch ?? 2);
    const pending: Promise<Outcome[]>[] = [];
    let next = 0;
    try {
      while (next < chunks.length || pending.length > 0) {
        while (pending.length <= ahead && next < chunks.length) {
          const p = fetch(chunks[next++]!);
          p.catch(() => {}); // awaited below in order; this only stops an early failure counting as unhandled
          pending.push(p);
        }
        const batch = this.#collect(await pending.shift()!);
        if (batch.images.length > 0) yield batch;
      }
    } finally {
      await pool?.close();
    }
  }

  #collect(outcomes: Outcome[]): Batch {
    const strict = this.options.strict ?? this.dataset.strict ?? false;
    const images: LabeledImage[] = [];
    for (const outcome of outcomes) {
      if (outcome.ok) images.push(outcome.sample);
      else if (strict) throw outcome.error;
      else {
        this.#skipped++;
        if (this.#skippedSources.length < SKIPPED_SOURCES_KEPT) this.#skippedSources.push(sourceOf(outcome.error));
      }
    }
    return {
      images,
      labels: Int32Array.from(images, (s) => s.label),
      skipped: this.#skipped,
      skippedSources: [...this.#skippedSources],
    };
  }
}

/** The file a bad-data message names (messages start with `<file>: `). */
function sourceOf(error: RegroupError): string {
  const colon = error.message.indexOf(': ');
  return colon > 0 ? error.message.slice(0, colon) : error.message;
}

function batchIndices(size: number, options: LoaderOptions): number[][] {
  const order = Array.from({ length: size }, (_, i) => i);
  if (options.shuffle) new Random(options.seed ?? 0).shuffle(order);
  const used = order.slice(0, Math.min(options.limit ?? size, size));
  const chunks: number[][] = [];
  for (let start = 0; start < used.length; start += options.batchSize)
    chunks.push(used.slice(start, start + options.batchSize));
  if (options.dropLast && chunks.length > 0 && chunks.at(-1)!.length < options.batchSize) chunks.pop();
  return chunks;
}

function resolveWorkers(dataset: Dataset, workers: number | 'auto'): number {
  if (!isFileDataset(dataset)) return 0;
  if (workers === 'auto') return autoWorkers();
  if (!Number.isInteger(workers) || workers < 0)
    throw new RegroupError('usage', `workers ${workers} is not a whole number ≥ 0 (or 'auto')`);
  return workers;
}

/** One decode thread per core beyond the main thread, at most 4 (the file header has the measurement). */
function autoWorkers(): number {
  return Math.max(0, Math.min(4, os.availableParallelism() - 1));
}

function isBadData(err: unknown): err is RegroupError {
  return err instanceof RegroupError && err.code === 'bad-data';
}

async function fetchInProcess(dataset: Dataset, indices: readonly number[]): Promise<Outcome[]> {
  return Promise.all(
    indices.map((index) =>
      dataset.get(index).then(
        (sample): Outcome => ({ ok: true, sample }),
        (err: unknown): Outcome => {
          if (isBadData(err)) return { ok: false, error: err };
          throw err;
        },
      ),
    ),
  );
}

async function fetchInPool(dataset: FileDataset, indices: readonly number[], pool: DecodePool): Promise<Outcome[]> {
  const files = indices.map((i) => dataset.files[i]!);
  const outcomes = await pool.decode(files.map((f) => f.path));
  return outcomes.map((o, k): Outcome => {
    const file = files[k]!;
    if (o.ok)
      return {
        ok: true,
        sample: {
          image: { width: o.width, height: o.height, channels: o.channels, data: o.data },
          label: file.label,
          source: file.path,
        },
      };
    const error = new RegroupError(o.code as RegroupError['code'], o.message);
    if (error.code !== 'bad-data') throw error;
    return { ok: false, error };
  });
}

/** The compiled worker script (under vitest this module runs from source, so use dist/). */
function workerScript(): URL {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return new URL('./decode-worker.js', import.meta.url);
  const built = path.resolve(path.dirname(here), '../../dist/runtime/data/decode-worker.js');
  if (!fs.existsSync(built))
    throw new RegroupError(
      'usage',
      `decode workers need the compiled ${built}; run npx tsc -p tsconfig.json first, or pass workers: 0`,
    );
  return pathToFileURL(built);
}

interface WorkerSlot {
  worker: Worker;
  pending: Map<number, { resolve: (outcomes: DecodeOutcome[]) => void; reject: (err: unknown) => void }>;
}

/** A few decode threads; each batch is split into one contiguous slice per thread. */
export class DecodePool {
  readonly #slots: WorkerSlot[];
  #nextId = 0;

  constructor(size: number) {
    const script = workerScript();
    this.#slots = Array.from({ length: size }, () => this.#spawn(script));
  }

  #spawn(script: URL): WorkerSlot {
    const slot: WorkerSlot = { worker: new Worker(script), pending: new Map() };
    slot.worker.unref();
    slot.worker.on('message', (reply: DecodeReply) => {
      slot.pending.get(reply.id)?.resolve(reply.outcomes);
      slot.pending.delete(reply.id);
      if (slot.pending.size === 0) slot.worker.unref();
    });
    const failAll = (err: unknown) => {
      for (const task of slot.pending.values())
        task.reject(
          new RegroupError(
            'runtime',
            `image decode worker failed: ${err instanceof Error ? err.message : String(err)}`,
            { cause: err },
          ),
        );
      slot.pending.clear();
    };
    slot.worker.on('error', failAll);
    slot.worker.on('exit', (code) => failAll(new Error(`exited with code ${code}`)));
    return slot;
  }

  /** Decode files, keeping their order; the work is spread over the threads. */
  async decode(files: readonly string[]): Promise<DecodeOutcome[]> {
    const per = Math.ceil(files.length / this.#slots.length);
    const parts = this.#slots.map((slot, k) =>
      k * per < files.length ? this.#send(slot, files.slice(k * per, (k + 1) * per)) : Promise.resolve([]),
    );
    return (await Promise.all(parts)).flat();
  }

  #send(slot: WorkerSlot, files: string[]): Promise<DecodeOutcome[]> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.ref();
      const task: DecodeTask = { id, files };
      slot.worker.postMessage(task);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
  }
}
