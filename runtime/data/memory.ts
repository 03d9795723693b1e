/** Datasets held in memory: equally sized 8-bit images stored back to back (IDX, MNIST packages). */
import { RegroupError } from '../../compiler/errors.js';
import type { Dataset, LabeledImage, RawImage } from './types.js';

/** `index` when it is a valid sample index, else a 'usage' error naming the dataset. */
export function checkIndex(index: number, size: number, name: string): number {
  if (!Number.isInteger(index) || index < 0 || index >= size)
    throw new RegroupError('usage', `${name}: sample index ${index} is out of range 0..${size - 1}`);
  return index;
}

/** An in-memory dataset of equally sized images, stored back to back. */
export function memoryDataset(
  name: string,
  shape: { width: number; height: number; channels: 1 | 3 },
  pixels: Uint8Array,
  labels: ArrayLike<number>,
  classes: readonly string[] | undefined,
  sourcePrefix: string,
): Dataset {
  const { width, height, channels } = shape;
  const stride = width * height * channels;
  const size = labels.length;
  if (pixels.length !== size * stride)
    throw new RegroupError(
      'bad-data',
      `${name}: ${pixels.length} pixel bytes do not hold ${size} images of ${width}×${height}×${channels}`,
    );
  return {
    name,
    size,
    classes,
    async get(index: number): Promise<LabeledImage> {
      checkIndex(index, size, name);
      const image: RawImage = { width, height, channels, data: pixels.subarray(index * stride, (index + 1) * stride) };
      return { image, label: labels[index]!, source: `${sourcePrefix}#${index}` };
    },
  };
}
