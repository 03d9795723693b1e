/**
 * The command line of the method registry: `--method` parsed against the registry, every
 * method's own flags added once (with their parsers and choices), and the chosen method's
 * options read back, refusing a flag that belongs to other methods.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { RegroupError } from '../compiler/errors.js';
import { methodFlags, methodNamed } from '../passes/methods/index.js';
import type { FlagKind, MethodFlag } from '../passes/methods/method.js';
import { fraction, nonNegativeInt, positiveInt } from './args.js';

const PARSERS: Partial<Record<FlagKind, (text: string) => unknown>> = {
  'positive-int': positiveInt,
  'non-negative-int': nonNegativeInt,
  fraction,
  percentiles: (text) => text.split(',').map((part) => Number(part.trim())),
};

/**
 * A method flag's value given as JSON (a batch job spec): a boolean flag takes true or false,
 * every other kind goes through the command line's parser and choices. Throws Error with the
 * parser's message.
 */
export function methodFlagValue(flag: MethodFlag, value: unknown): unknown {
  if (flag.kind === 'boolean') {
    if (typeof value !== 'boolean') throw new Error('must be true or false');
    return value;
  }
  if (typeof value !== 'number' && typeof value !== 'string') throw new Error('must be a number or a string');
  const text = String(value);
  if (flag.choices && !flag.choices.includes(text)) throw new Error(`must be one of ${flag.choices.join(', ')}`);
  const parse = PARSERS[flag.kind];
  return parse ? parse(text) : text;
}

/** `--method`'s parser: a registered name, or commander's usage error listing the registry. */
export function methodName(text: string): string {
  try {
    return methodNamed(text).name;
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** Every method's flags, each once. */
export function addMethodFlags(command: Command): void {
  for (const { flag } of methodFlags()) {
    const option = new Option(flag.flags, flag.description);
    if (flag.choices) option.choices([...flag.choices]);
    const parse = PARSERS[flag.kind];
    command.addOption(parse ? option.argParser(parse) : option);
  }
}

/** The chosen method's flags; a flag of another method is a usage error naming its methods. */
export function methodOptionsOf(flags: { method: string } & Record<string, unknown>): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const { flag, methods } of methodFlags()) {
    if (flags[flag.key] === undefined) continue;
    if (!methods.includes(flags.method)) {
      const [name] = flag.flags.split(' ');
      throw new RegroupError('usage', `${name} applies to --method ${methods.join(' or ')}, not to ${flags.method}`);
    }
    options[flag.key] = flags[flag.key];
  }
  return options;
}
