/**
 * Runs the autodiff step model (compiler/autodiff/types.ts) one update at a time:
 *
 *   step(data, labels[, teacherLogits], lr, step, params…, state…) → loss, logits, params'…, state'…
 *
 * The carried tensors (parameters, optimizer slots, BN running statistics) live as
 * onnxruntime tensors between steps: each step's outputs are fed straight into the next
 * step, and are copied into JS arrays only for checkpoints and the final model. Fed tensors
 * (TrainingSpec.fed) are inputs that no step changes; `setFed` replaces them between steps.
 *
 * `StepRunner.build` fixes the step's batch to the run's (TrainingBuildOptions.batch) where the
 * step runs in the blocked layout, which lets depthwise layers take their fast weight gradient
 * (and on the CPU provider takes BatchNormalization's batch statistics from its fused kernel);
 * a batch of another size (images that failed to decode, a forward pass on a probe) runs a
 * second step model built for any batch size, made on first need, on the same tensors.
 */
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import type { CarriedTensor, TrainingGraph, TrainingSpec } from '../../compiler/autodiff/types.js';
import { buildTrainingGraph } from '../../compiler/autodiff/training.js';
import type { Model } from '../../compiler/ir/model.js';
import { RegroupError } from '../../compiler/errors.js';
import { DataType, type TypedArray } from '../../compiler/ir/dtype.js';
import type { Tensor } from '../../compiler/ir/tensor.js';
import { createSession, ort, run, toOrtTensor, type Feeds, type SessionOptions } from '../session.js';
import { finishProfile, summariseProfile, type ProfileSummary } from '../profile.js';
import { blockConvs, type BlockedConvSummary } from '../../compiler/autodiff/blocked-conv.js';
import { trainLayout, type TrainLayout } from './blocked-layout.js';
import type { TrainedValue } from './checkpoint.js';
import type { SavedTensor, StateElementType } from './state.js';

export interface StepRunnerOptions extends SessionOptions {
  /**
   * 'blocked' (default on the CPU provider): forward and input-gradient convolutions in
   * onnxruntime's NCHWc kernels (compiler/autodiff/blocked-conv.ts); 'plain': as built.
   */
  layout?: TrainLayout;
  /** The same step built for any batch size, for batches other than the graph's fixed one (made on first need). */
  anyBatch?: () => TrainingGraph;
}

/** "training step: 17 of 28 convolutions in onnxruntime's blocked layout (8-float blocks); …". */
function blockedNote(summary: BlockedConvSummary, block: number): string {
  const total = summary.blocked + summary.kept.length;
  const reasons = [
    ...new Set(
      summary.kept.map((k) =>
        k.why === 'grouped'
          ? "grouped: the weight gradients' patch extraction or shifted copies, and grouped layers"
          : k.why.replace(/^\d+ /, 'N '),
      ),
    ),
  ];
  const rest = summary.kept.length > 0 ? `; the other ${summary.kept.length} plain (${reasons.join('; ')})` : '';
  return `training step: ${summary.blocked} of ${total} convolutions in onnxruntime's blocked layout (${block}-float blocks)${rest}; REGROUP_TRAIN_LAYOUT=plain turns it off`;
}

/** What one update fed: the batch and the scalars. */
export interface StepFeeds {
  data: OrtTensor;
  labels: OrtTensor;
  teacherLogits?: OrtTensor;
  lr: number;
  /** 1-based count of updates, this one included. */
  step: number;
}

/** What one update returned: the batch's mean loss and the student logits. */
export interface StepOutcome {
  loss: number;
  logits: OrtTensor;
  /** The step's monitored values (TrainingSpec.monitor) by name. */
  monitored: Map<string, number>;
}

const DTYPE_OF: Partial<Record<OrtTensor.Type, DataType>> = {
  float32: DataType.FLOAT,
  float64: DataType.DOUBLE,
  int64: DataType.INT64,
  int32: DataType.INT32,
};

/** One session on the step model plus the carried tensors it updates (see the header). */
export class StepRunner {
  readonly #carried = new Map<string, OrtTensor>();
  /** Fed tensors by step input name. */
  readonly #fed = new Map<string, OrtTensor>();
  readonly #fetches: string[];
  /** The profile prefix while profiling. */
  #profile: string | undefined;
  /** Builds the any-batch runner (StepRunnerOptions.anyBatch), and that runner once built. */
  #anyBatch: { build: () => Promise<StepRunner>; runner?: Promise<StepRunner> } | undefined;

  private constructor(
    readonly graph: TrainingGraph,
    readonly session: InferenceSession,
    /** One line on how the step's convolutions run (blocked or plain, and why). */
    readonly layoutNote: string,
  ) {
    this.#fetches = [
      graph.outputs.loss,
      graph.outputs.logits,
      ...this.all().map((c) => c.output),
      ...graph.outputs.monitored.values(),
    ];
    for (const c of this.all()) this.#carried.set(c.input, toOrtTensor(c.init.dtype, c.init.dims, c.init.data.slice()));
    for (const f of graph.fed) this.#fed.set(f.input, toOrtTensor(f.init.dtype, f.init.dims, f.init.data.slice()));
  }

  /**
   * Build the step model for `model` and open a runner on it: in the blocked layout for
   * batches of `batch` (see the header), else for any batch size.
   */
  static async build(
    model: Model,
    spec: TrainingSpec,
    batch: number,
    options: Omit<StepRunnerOptions, 'anyBatch'>,
  ): Promise<StepRunner> {
    const blocked = (await trainLayout(options)).layout === 'blocked';
    // onnxruntime's CPU kernel of training-mode BatchNormalization (compiler/autodiff/batchnorm-training.ts)
    const statistics = (options.ep ?? 'cpu') === 'cpu' ? 'fused' : 'reductions';
    const common = { blockedLayout: blocked, batchNormStatistics: statistics } as const;
    const anyBatch = () => buildTrainingGraph(model, spec, common);
    if (!blocked) return StepRunner.create(anyBatch(), options);
    return StepRunner.create(buildTrainingGraph(model, spec, { ...common, batch }), { ...options, anyBatch });
  }

  /** Open a session on the step model (all graph optimisations unless told otherwise). */
  static async create(graph: TrainingGraph, options: StepRunnerOptions): Promise<StepRunner> {
    if (graph.inputs.data.length !== 1)
      throw new RegroupError(
        'unsupported',
        `the model has ${graph.inputs.data.length} data inputs (${graph.inputs.data.join(', ')}); training feeds one image input`,
      );
    const choice = await trainLayout(options);
    let model = graph.model;
    let note: string;
    if (choice.layout === 'blocked') {
      model = model.clone().model;
      note = blockedNote(blockConvs(model, choice.block), choice.block);
    } else note = `training step: plain NCHW convolutions (${choice.why})`;
    const { layout: _, anyBatch, ...session } = options;
    const runner = new StepRunner(graph, await createSession(model, { optimization: 'all', ...session }), note);
    runner.#profile = options.profile;
    if (anyBatch && graph.batch !== undefined) {
      const { profile: __, ...unprofiled } = options;
      runner.#anyBatch = { build: () => StepRunner.create(anyBatch(), { ...unprofiled, anyBatch: undefined }) };
    }
    return runner;
  }

  /** The runner for a batch of `size`: this one, or the any-batch one (see the header). */
  async #runnerFor(size: number): Promise<StepRunner> {
    const fixed = this.graph.batch;
    if (fixed === undefined || size === fixed) return this;
    if (!this.#anyBatch)
      throw new RegroupError(
        'usage',
        `this step model takes batches of exactly ${fixed}; got ${size} (build it for any batch size to run others)`,
      );
    this.#anyBatch.runner ??= this.#anyBatch.build().then((other) => {
      const names = (r: StepRunner) => [...r.all(), ...r.graph.fed].map((c) => c.name).join('\n');
      if (names(other) !== names(this))
        throw new RegroupError('runtime', 'the any-batch step model carries other tensors than the fixed-batch one');
      return other;
    });
    return this.#anyBatch.runner;
  }

  /** Point this runner's carried and fed tensors at `from`'s (the same tensors, in the same order). */
  #adopt(from: StepRunner): void {
    const [mine, theirs] = [this.all(), from.all()];
    mine.forEach((c, k) => this.#carried.set(c.input, from.#carried.get(theirs[k]!.input)!));
    this.graph.fed.forEach((f, k) => this.#fed.set(f.input, from.#fed.get(from.graph.fed[k]!.input)!));
  }

  /** Run `work` on the runner for a batch of `size`, its tensors moved there and back. */
  async #on<T>(size: number, work: (runner: StepRunner) => Promise<T>): Promise<T> {
    const runner = await this.#runnerFor(size);
    if (runner === this) return work(this);
    runner.#adopt(this);
    const result = await work(runner);
    this.#adopt(runner);
    return result;
  }

  /** Parameters then state, in the training graph's order. */
  all(): readonly CarriedTensor[] {
    return [...this.graph.params, ...this.graph.state];
  }

  /** Replace a fed tensor (by inference initializer name) for the steps that follow; same shape and type. */
  setFed(name: string, tensor: Tensor): void {
    const fed = this.graph.fed.find((f) => f.name === name);
    if (!fed)
      throw new RegroupError(
        'usage',
        `'${name}' is not a fed tensor of this training graph (fed: ${this.graph.fed.map((f) => `'${f.name}'`).join(', ') || 'none'})`,
      );
    if (tensor.dims.join(',') !== fed.init.dims.join(',') || tensor.dtype !== fed.init.dtype) {
      throw new RegroupError(
        'usage',
        `fed tensor '${name}' must keep shape [${fed.init.dims.join(',')}] and its element type; got [${tensor.dims.join(',')}]`,
      );
    }
    this.#fed.set(fed.input, toOrtTensor(tensor.dtype, tensor.dims, tensor.data.slice()));
  }

  /** One update: feed the batch and the carried tensors, keep the updated ones. */
  async step(feeds: StepFeeds): Promise<StepOutcome> {
    return this.#on(feeds.data.dims[0]!, (runner) => runner.#step(feeds));
  }

  async #step(feeds: StepFeeds): Promise<StepOutcome> {
    const out = await run(this.session, this.#feeds(feeds), this.#fetches);
    for (const c of this.all()) this.#carried.set(c.input, out[c.output]!);
    const monitored = new Map(
      [...this.graph.outputs.monitored].map(([name, output]) => [name, scalar(out[output]!)] as const),
    );
    return { loss: scalar(out[this.graph.outputs.loss]!), logits: out[this.graph.outputs.logits]!, monitored };
  }

  /**
   * The step model's logits for a batch with the current tensors, changing nothing: the
   * update is computed with lr 0 and thrown away (BatchNormalization uses batch statistics,
   * as in training).
   */
  async forward(data: OrtTensor, labels: OrtTensor, teacherLogits?: OrtTensor): Promise<OrtTensor> {
    return this.#on(data.dims[0]!, async (runner) => {
      const out = await run(runner.session, runner.#feeds({ data, labels, teacherLogits, lr: 0, step: 1 }), [
        runner.graph.outputs.logits,
      ]);
      return out[runner.graph.outputs.logits]!;
    });
  }

  #feeds(f: StepFeeds): Feeds {
    const inputs = this.graph.inputs;
    const feeds: Feeds = {
      [inputs.data[0]!]: f.data,
      [inputs.labels]: f.labels,
      [inputs.lr]: new ort.Tensor('float32', Float32Array.of(f.lr), []),
      [inputs.step]: new ort.Tensor('float32', Float32Array.of(f.step), []),
    };
    if (inputs.teacherLogits) {
      if (!f.teacherLogits)
        throw new RegroupError(
          'usage',
          'the distillation loss needs teacher logits for every batch; pass a teacher model',
        );
      feeds[inputs.teacherLogits] = f.teacherLogits;
    }
    for (const [input, tensor] of this.#carried) feeds[input] = tensor;
    for (const [input, tensor] of this.#fed) feeds[input] = tensor;
    return feeds;
  }

  /** Copies of every carried tensor, then every fed one, for the resume file. */
  snapshot(): SavedTensor[] {
    const save = (input: string, name: string, t: OrtTensor): SavedTensor => ({
      input,
      name,
      type: stateType(t, name),
      dims: [...t.dims],
      data: (t.data as TypedArray).slice(),
    });
    return [
      ...this.all().map((c) => save(c.input, c.name, this.#carried.get(c.input)!)),
      ...this.graph.fed.map((f) => save(f.input, f.name, this.#fed.get(f.input)!)),
    ];
  }

  /** Load carried tensors saved by `snapshot`; names, types and shapes must match this graph. */
  restore(saved: readonly SavedTensor[], file: string): void {
    const byInput = new Map(saved.map((s) => [s.input, s]));
    for (const c of this.all()) {
      const s = byInput.get(c.input);
      if (!s)
        throw new RegroupError(
          'usage',
          `${file} holds no value for '${c.name}' (step input '${c.input}'); it was written for another model or training setup; train without --resume`,
        );
      if (s.dims.join(',') !== c.init.dims.join(','))
        throw new RegroupError(
          'usage',
          `${file}: '${c.name}' has shape [${s.dims.join(',')}] but the model's is [${c.init.dims.join(',')}]; it was written for another model; train without --resume`,
        );
      this.#carried.set(c.input, new ort.Tensor(s.type, s.data as never, s.dims));
    }
    for (const f of this.graph.fed) {
      const s = byInput.get(f.input);
      if (!s || s.dims.join(',') !== f.init.dims.join(','))
        throw new RegroupError(
          'usage',
          `${file} holds no value of shape [${f.init.dims.join(',')}] for the fed tensor '${f.name}'; it was written for another training setup; train without --resume`,
        );
      this.#fed.set(f.input, new ort.Tensor(s.type, s.data as never, s.dims));
    }
    const expected = this.all().length + this.graph.fed.length;
    if (saved.length !== expected)
      throw new RegroupError(
        'usage',
        `${file} holds ${saved.length} tensors but this training graph carries ${expected}; it was written for another setup; train without --resume`,
      );
  }

  /** Current values of carried and fed tensors that are initializers of the inference model (params, BN statistics, fed). */
  trainedValues(isInitializer: (name: string) => boolean): Map<string, TrainedValue> {
    const values = new Map<string, TrainedValue>();
    const entries = [
      ...this.all().map((c) => [c, this.#carried.get(c.input)!] as const),
      ...this.graph.fed.map((f) => [f, this.#fed.get(f.input)!] as const),
    ];
    for (const [c, t] of entries) {
      if (!isInitializer(c.name)) continue;
      values.set(c.name, { dtype: DTYPE_OF[t.type] ?? c.init.dtype, dims: t.dims, data: t.data as TypedArray });
    }
    return values;
  }

  /**
   * End the profile of a runner created with `options.profile` and summarise it
   * (runtime/profile.ts); undefined when it was not profiled.
   */
  finishProfile(): ProfileSummary | undefined {
    if (!this.#profile) return undefined;
    const events = finishProfile(this.session, this.#profile);
    this.#profile = undefined;
    return summariseProfile(events);
  }

  async release(): Promise<void> {
    await this.session.release();
    const other = await this.#anyBatch?.runner?.catch(() => undefined);
    await other?.release();
  }
}

function scalar(t: OrtTensor): number {
  const data = t.data as ArrayLike<number>;
  if (data.length !== 1)
    throw new RegroupError('runtime', `the step model's loss has ${data.length} elements; expected a scalar`);
  return Number(data[0]);
}

function stateType(t: OrtTensor, name: string): StateElementType {
  if (t.type === 'float32' || t.type === 'float64' || t.type === 'int64' || t.type === 'int32') return t.type;
  throw new RegroupError(
    'unsupported',
    `carried tensor '${name}' has element type ${t.type}; the training state stores float32, float64, int64 and int32`,
  );
}
