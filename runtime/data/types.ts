/**
 * The data contract between datasets, preprocessing, calibration and evaluation.
 * A dataset yields decoded images (8-bit, height × width × channels, interleaved) with
 * integer labels; preprocessing turns a batch of them into the tensor a model expects.
 */

/** A decoded 8-bit image, rows top to bottom, channels interleaved (HWC). */
export interface RawImage {
  readonly width: number;
  readonly height: number;
  /** 1 (gray), 3 (RGB) or 4 (RGBA). */
  readonly channels: 1 | 3 | 4;
  readonly data: Uint8Array;
}

export interface LabeledImage {
  readonly image: RawImage;
  /** Class index (ImageFolder: position of the class folder in sorted order). */
  readonly label: number;
  /** Where the sample came from (file path, or `mnist#123`), for error messages. */
  readonly source: string;
}

export interface Dataset {
  /** Short description: folder path, `mnist (test split)`, … */
  readonly name: string;
  readonly size: number;
  /** Class names by index, when known. */
  readonly classes?: readonly string[];
  /** Decode sample `index` (0 ≤ index < size); rejects with a RegroupError naming the file on bad data. */
  get(index: number): Promise<LabeledImage>;
  /** Release workers or file handles. */
  close?(): Promise<void>;
  /**
   * Loaders' default for unreadable images: true throws on the first one, false (default)
   * skips and counts them. `get` itself always rejects on bad data.
   */
  readonly strict?: boolean;
}

/** How raw images become a model input tensor. */
export interface InputSpec {
  /** Input name of the model. */
  readonly name: string;
  readonly layout: 'NCHW' | 'NHWC';
  readonly channels: 1 | 3;
  readonly height: number;
  readonly width: number;
  readonly dtype: 'float32' | 'float16';
  /**
   * Resize so the shorter side has this length, then center-crop to height × width (resizing
   * further when the result would still be smaller than the crop). Undefined: no resize, and
   * images must already be height × width.
   */
  readonly resizeShorter?: number;
  /**
   * Without resizeShorter: center-crop images larger than height × width (torchvision's
   * CenterCrop alone) instead of refusing them. Smaller images are still refused.
   */
  readonly centerCrop?: boolean;
  /** Multiply 8-bit values by this first (1/255 for [0,1] inputs, 1 for raw 0..255). */
  readonly scale: number;
  /** Per-channel mean and std, in the model's channel order, applied after scale. */
  readonly mean: readonly number[];
  readonly std: readonly number[];
  readonly channelOrder: 'RGB' | 'BGR';
}
