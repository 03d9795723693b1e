/**
 * Training batches: a seeded subset of a dataset (`--limit`), and a batch of decoded images
 * → the model's input tensor (fit to the input size, augmented, normalised) plus int64 labels.
 * Augmentation runs on the fitted 8-bit image, so crops and flips act at the model's
 * resolution and padding is raw zero, as in torchvision.
 */
import type { Tensor as OrtTensor } from 'onnxruntime-node';
import { RegroupError } from '../../compiler/errors.js';
import { Random } from '../../compiler/util/random.js';
import { fitImage, toTensor } from '../data/preprocess.js';
import type { Dataset, InputSpec, LabeledImage } from '../data/types.js';
import { ort } from '../session.js';
import { augmentImage, type AugmentSpec } from './augment.js';

/**
 * The first `count` samples of `Random(seed).shuffle` of the dataset's indices, as a dataset:
 * a fixed, roughly class-balanced subset (the first N of a class-sorted folder would be one class).
 */
export function subsetDataset(dataset: Dataset, count: number, seed: number): Dataset {
  if (!Number.isInteger(count) || count <= 0)
    throw new RegroupError('usage', `--limit ${count} is not a positive whole number`);
  if (count >= dataset.size) return dataset;
  const chosen = new Random(seed).shuffle(Array.from({ length: dataset.size }, (_, i) => i)).slice(0, count);
  return {
    name: `${dataset.name}, ${count} of ${dataset.size} samples`,
    size: count,
    classes: dataset.classes,
    strict: dataset.strict,
    get: (index: number) => {
      if (!Number.isInteger(index) || index < 0 || index >= count)
        return Promise.reject(
          new RegroupError('usage', `${dataset.name}: sample index ${index} is out of range 0..${count - 1}`),
        );
      return dataset.get(chosen[index]!);
    },
  };
}

/** Fit each image to the spec's size, augment it when asked, and normalise into one tensor. */
export function trainingTensor(
  images: readonly LabeledImage[],
  spec: InputSpec,
  augment?: AugmentSpec,
  random?: Random,
): OrtTensor {
  if (!augment) return toTensor(images, spec);
  if (!random) throw new RegroupError('usage', 'augmentation needs a seeded generator');
  const fitted = images.map((s) => ({ ...s, image: augmentImage(fitImage(s.image, spec, s.source), augment, random) }));
  // The images now have the spec's size: no second resize.
  return toTensor(fitted, { ...spec, resizeShorter: undefined });
}

/** Class labels as the int64 [N] tensor the step model takes. */
export function labelTensor(labels: ArrayLike<number>): OrtTensor {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from(Array.from(labels), (v) => BigInt(v)),
    [labels.length],
  );
}
