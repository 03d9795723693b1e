/**
 * Models whose correct preprocessing no preset offers, made from models whose preprocessing we
 * know: a new input `image` takes the tensor the new recipe makes, and per channel c
 *   model input = image · multiplier[c] + offset[c]
 * (after a Transpose NHWC → NCHW for a TensorFlow-style input) turns it into the tensor the
 * original recipe would have made from the same pixels. Choosing
 *   multiplier[c] = σ_new[c]/σ_old[c],   offset[c] = (μ_new[c] − μ_old[c])/σ_old[c]
 * (means and stds in 0..1 units) undoes the new Normalize and applies the old one, so the
 * wrapped model fed with the new recipe scores what the original scores with the old one.
 */
import { attr } from '../../compiler/ir/attribute.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import { Tensor } from '../../compiler/ir/tensor.js';
import { loadModel, saveModel } from '../../compiler/onnx/io.js';

export interface Renormalise {
  /** The recipe the wrapped model takes: x/255 normalised by these (one value or per channel). */
  mean: readonly number[];
  std: readonly number[];
  /** The recipe the original model takes, likewise. */
  fromMean: readonly number[];
  fromStd: readonly number[];
  /** The wrapped model takes [N,H,W,C] (tf2onnx-style) instead of [N,C,H,W]. */
  nhwc?: boolean;
}

/** Load `source`, wrap its first fed input (see the header) and write the result to `target`. */
export function writeRenormalised(source: string, target: string, r: Renormalise): Model {
  const model = loadModel(source);
  renormalise(model, r);
  saveModel(model, target, { force: true });
  return model;
}

export function renormalise(model: Model, r: Renormalise): void {
  const g = model.graph;
  const original = g.inputs.find((v) => !v.isInitializer())!;
  const [batch, channels, height, width] = original.type!.shape!;
  const C = channels as number;
  const at = (values: readonly number[], c: number) => values[values.length === 1 ? 0 : c]!;
  const multiplier = Array.from({ length: C }, (_, c) => at(r.std, c) / at(r.fromStd, c));
  const offset = Array.from({ length: C }, (_, c) => (at(r.mean, c) - at(r.fromMean, c)) / at(r.fromStd, c));
  const image = g.addInput('image', {
    dtype: DataType.FLOAT,
    shape: r.nhwc ? [batch!, height!, width!, channels!] : [batch!, channels!, height!, width!],
  });
  const first = g.nodeList()[0]!;
  let x = image;
  if (r.nhwc) {
    const transpose = g.createNode('Transpose', [x], { attributes: [attr.ints('perm', [0, 3, 1, 2])] });
    g.insertBefore(first, transpose);
    x = transpose.outputs[0]!;
  }
  const mul = g.createNode('Mul', [x, g.addInitializer('image_multiplier', Tensor.float32([1, C, 1, 1], multiplier))]);
  const add = g.createNode('Add', [
    mul.outputs[0]!,
    g.addInitializer('image_offset', Tensor.float32([1, C, 1, 1], offset)),
  ]);
  g.insertBefore(first, mul);
  g.insertBefore(first, add);
  original.replaceAllUsesWith(add.outputs[0]!);
  g.inputs.splice(g.inputs.indexOf(original), 1);
  g.inputs.unshift(g.inputs.splice(g.inputs.indexOf(image), 1)[0]!);
  g.verify();
}
