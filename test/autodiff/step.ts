/**
 * Running a training step model in tests: carried tensors start at their init values (or
 * values the test sets) and each step's outputs replace them, as the trainer does.
 */
import type { TrainingGraph } from '../../compiler/autodiff/types.js';
import { DataType } from '../../compiler/ir/dtype.js';
import { Random } from '../../compiler/util/random.js';
import { createSession, ort, run, toOrtTensor, type Feeds, type Outputs } from '../../runtime/session.js';

export interface Batch {
  readonly data: ort.Tensor;
  readonly labels: ort.Tensor;
  readonly teacherLogits?: ort.Tensor;
}

/** A seeded batch: normal data of `dims`, labels cycling through `classes`. */
export function syntheticBatch(dims: readonly number[], classes: number, seed: number): Batch {
  const random = new Random(seed);
  const count = dims.reduce((a, b) => a * b, 1);
  const labels = BigInt64Array.from({ length: dims[0]! }, (_, n) => BigInt((n * 7 + seed) % classes));
  return {
    data: toOrtTensor(DataType.FLOAT, dims, random.normals(count)),
    labels: toOrtTensor(DataType.INT64, [dims[0]!], labels),
  };
}

export class StepHarness {
  /** Current carried tensors by step-model input name. */
  readonly carried = new Map<string, ort.Tensor>();

  private constructor(
    readonly graph: TrainingGraph,
    readonly session: ort.InferenceSession,
  ) {
    for (const c of [...graph.params, ...graph.state])
      this.carried.set(c.input, toOrtTensor(c.init.dtype, c.init.dims, c.init.data.slice()));
  }

  static async open(graph: TrainingGraph, optimization: 'disabled' | 'all' = 'disabled'): Promise<StepHarness> {
    return new StepHarness(graph, await createSession(graph.model, { optimization }));
  }

  /** The current value of a carried tensor, by its model name (parameter or state slot). */
  value(name: string): Float32Array {
    const c = [...this.graph.params, ...this.graph.state].find((t) => t.name === name);
    if (!c) throw new Error(`'${name}' is not carried by the step model`);
    return this.carried.get(c.input)!.data as Float32Array;
  }

  /** Overwrite a carried tensor (e.g. a non-zero momentum buffer). */
  set(name: string, data: Float32Array): void {
    const c = [...this.graph.params, ...this.graph.state].find((t) => t.name === name)!;
    this.carried.set(c.input, toOrtTensor(DataType.FLOAT, c.init.dims, data));
  }

  /** One update; returns all outputs and keeps the updated carried tensors. */
  async step(batch: Batch, lr: number, step: number): Promise<Outputs> {
    const inputs = this.graph.inputs;
    const feeds: Feeds = {
      [inputs.data[0]!]: batch.data,
      [inputs.labels]: batch.labels,
      [inputs.lr]: new ort.Tensor('float32', Float32Array.of(lr), []),
      [inputs.step]: new ort.Tensor('float32', Float32Array.of(step), []),
    };
    if (inputs.teacherLogits) feeds[inputs.teacherLogits] = batch.teacherLogits!;
    for (const [input, tensor] of this.carried) feeds[input] = tensor;
    const out = await run(this.session, feeds);
    for (const c of [...this.graph.params, ...this.graph.state]) this.carried.set(c.input, out[c.output]!);
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
