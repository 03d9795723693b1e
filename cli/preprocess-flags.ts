/**
 * The preprocessing flags every command that reads images shares (eval, train, finetune,
 * compress): `--preset`, the field flags and `--preprocess FILE`, added as one group so the
 * commands stay alike, and read back as the library's PreprocessOptions. Values are parsed by
 * runtime/data/preprocess-spec.ts, the same parsers a JSON spec goes through; precedence and
 * resolution against the model are runtime/data/preprocess.ts's.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { RegroupError } from '../compiler/errors.js';
import {
  parseChannelOrder,
  parseCrop,
  parseLayout,
  parseNumbers,
  parseResize,
  parseScale,
  PRESETS,
  type Preprocessing,
  type PreprocessOptions,
} from '../runtime/data/preprocess-spec.js';

/** The flags as commander hands them over. */
export interface PreprocessFlags {
  preset?: string;
  mean?: number[];
  std?: number[];
  scale?: number;
  resize?: number | null;
  crop?: { height: number; width: number };
  channels?: 'RGB' | 'BGR';
  layout?: 'NCHW' | 'NHWC';
  preprocess?: string;
}

/** A value parser for commander: a bad value becomes its usage error (exit 2) with our message. */
function parsed<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (err) {
      if (err instanceof RegroupError) throw new InvalidArgumentError(err.message);
      throw err;
    }
  };
}

/** Add the preprocessing flags to a command. */
export function addPreprocessFlags(command: Command): Command {
  return command
    .option(
      '--preset <name>',
      `preprocessing preset: ${Object.keys(PRESETS).join(', ')} (default: the model's metadata, else chosen from the input shape); the flags below override its fields`,
    )
    .option(
      '--mean <values>',
      "mean subtracted after --scale, one value or one per channel in the model's channel order: 0.2860 or 0.485,0.456,0.406",
      parsed((text) => parseNumbers(text, 'mean')),
    )
    .option(
      '--std <values>',
      'standard deviation divided by, one value or one per channel: 0.3530 or 0.229,0.224,0.225',
      parsed((text) => parseNumbers(text, 'std')),
    )
    .option(
      '--scale <range>',
      'pixel range before mean and std: 0-1 (x/255) or 0-255 (raw); without a --preset, a stated --scale/--mean/--std replaces the guessed normalisation and unstated parts are 0-1, mean 0, std 1',
      parsed(parseScale),
    )
    .option('--resize <pixels>', 'resize the shorter side to this before the center crop, or none', parsed(parseResize))
    .option(
      '--crop <size>',
      "center crop, N or HxW (default: the model's input size); without a resize it crops larger images as they are",
      parsed(parseCrop),
    )
    .option('--channels <order>', 'channel order the model takes: rgb or bgr', parsed(parseChannelOrder))
    .option(
      '--layout <layout>',
      'input layout: nchw (PyTorch) or nhwc (TensorFlow/Keras; default: from the input shape)',
      parsed(parseLayout),
    )
    .option(
      '--preprocess <file>',
      'a JSON preprocessing spec with the same fields ({"preset", "scale", "mean", "std", "resize", "crop", "channels", "layout"}); the flags override it, it overrides the model\'s metadata',
    );
}

/** The library options of the flags given. */
export function preprocessOptionsOf(flags: PreprocessFlags): PreprocessOptions {
  const fields: Omit<Preprocessing, 'preset'> = {
    scale: flags.scale,
    mean: flags.mean,
    std: flags.std,
    resize: flags.resize,
    crop: flags.crop,
    channelOrder: flags.channels,
    layout: flags.layout,
  };
  return { preset: flags.preset, fields, file: flags.preprocess };
}
