/**
 * The teacher of a distillation run: a dense model's inference session, run on exactly the
 * (augmented) batch the student trains on, so the student matches the teacher's soft
 * targets for the same pixels.
 */
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { RegroupError } from '../../compiler/errors.js';
import type { Model } from '../../compiler/ir/model.js';
import { createSession, run, type SessionOptions } from '../session.js';

/** An inference session on the teacher, fed the student's input batches. */
export class Teacher {
  private constructor(
    readonly session: InferenceSession,
    readonly input: string,
    readonly output: string,
  ) {}

  /** A session on `model` (a Model or a file); `output` defaults to its first output. */
  static async create(model: Model | string, options: SessionOptions, output?: string): Promise<Teacher> {
    const session = await createSession(model, options);
    const input = session.inputNames[0];
    const chosen = output ?? session.outputNames[0];
    if (!input || !chosen || !session.outputNames.includes(chosen)) {
      await session.release();
      throw new RegroupError(
        'usage',
        `the teacher model has no output '${output}'; its outputs are ${session.outputNames.join(', ')}`,
      );
    }
    return new Teacher(session, input, chosen);
  }

  /** Teacher logits [N, classes] for an input batch. */
  async logits(data: OrtTensor): Promise<OrtTensor> {
    const out = await run(this.session, { [this.input]: data }, [this.output]);
    return out[this.output]!;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
