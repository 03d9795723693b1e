/**
 * Checkpoints: the trained network as a plain inference model — the original graph, its
 * BatchNormalization nodes still in inference mode, every trained initializer (weights,
 * biases, BN scale/bias and running mean/var) replaced by its current value — written
 * atomically, so an interrupted write never leaves a half model behind.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RegroupError } from '../../compiler/errors.js';
import type { DataType, TypedArray } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { saveModel, type SaveResult } from '../../compiler/onnx/io.js';

/** A value to write into an initializer: element type, dims and elements. */
export interface TrainedValue {
  readonly dtype: DataType;
  readonly dims: readonly number[];
  readonly data: TypedArray;
}

/**
 * A copy of a model whose input fixes the batch at `fixed`, with that dim made symbolic
 * (input, outputs whose first dim is `fixed`; declared intermediate types dropped, since they
 * would pin the old batch), so that it can train on larger batches. Shape-computing graphs
 * (Shape → Gather → Reshape) follow; a Reshape to a constant batch-1 shape fails in onnxruntime.
 */
export function relaxBatch(model: Model, fixed: number): Model {
  const copy = model.clone().model;
  const graph = copy.graph;
  const fed = graph.inputs.filter((v) => !v.isInitializer());
  for (const v of [...fed, ...graph.outputs]) {
    const shape = v.type?.shape;
    if (shape && shape[0] === fixed) v.type = { ...v.type!, shape: ['N', ...shape.slice(1)] };
  }
  for (const v of graph.valueInfo) if (!graph.outputs.includes(v) && !fed.includes(v)) v.type = undefined;
  graph.valueInfo.length = 0;
  return copy;
}

/**
 * Replace initializers of `model` in place by trained values (keyed by initializer name).
 * Elements are copied, so later steps cannot change a written checkpoint. A name that is not
 * an initializer, or a value whose shape differs, is an error: it would mean the training
 * graph and the model disagree.
 */
export function setTrainedValues(model: Model, values: ReadonlyMap<string, TrainedValue>): void {
  const graph = model.graph;
  for (const [name, value] of values) {
    const init = graph.initializers.get(name);
    if (!init?.constValue)
      throw new RegroupError(
        'invalid-ir',
        `trained value '${name}' is not an initializer of the model; the training graph and the model disagree`,
      );
    const old = init.constValue;
    if (old.dims.join(',') !== value.dims.join(',') || old.dtype !== value.dtype) {
      throw new RegroupError(
        'invalid-ir',
        `trained value '${name}' has shape [${value.dims.join(',')}] but the initializer has [${old.dims.join(',')}]`,
      );
    }
    graph.setInitializer(
      init,
      Tensor.fromArray(value.dtype, value.dims, value.data.slice(), {
        name,
        docString: old.docString,
        metadataProps: old.metadataProps,
      }),
    );
  }
}

/** Save a checkpoint model atomically, refusing to overwrite `protect` (the inputs). */
export function saveCheckpoint(model: Model, file: string, protect: readonly string[] = []): SaveResult {
  return saveModel(model, file, { protect });
}

/**
 * Fail early, before any training, when `file` cannot be written: its folder is missing or
 * read-only, it is a folder, or it is one of the inputs.
 */
export function checkWritable(file: string, protect: readonly string[] = []): void {
  const target = path.resolve(file);
  const dir = path.dirname(target);
  if (!fs.existsSync(dir))
    throw new RegroupError('io', `cannot write ${file}: folder ${dir} does not exist; create it or choose another -o`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new RegroupError('io', `cannot write ${file}: folder ${dir} is not writable; choose another -o`);
  }
  if (fs.existsSync(target) && fs.statSync(target).isDirectory())
    throw new RegroupError(
      'usage',
      `output ${file} is a folder; pass a file name such as ${path.join(file, 'model.onnx')}`,
    );
  for (const p of protect) {
    if (path.resolve(p) === target)
      throw new RegroupError('usage', `refusing to overwrite the input ${p}; choose another output path`);
  }
}
