/**
 * The method registry: every compression method `compress --method NAME` can run, in the
 * order `--help` lists them. Adding a method is one file in this folder plus its line here;
 * nothing else in regroup dispatches on a method's name.
 */
import { RegroupError } from '../../compiler/errors.js';
import { dcff } from './dcff.js';
import { dgconv } from './dgconv.js';
import { l1, l1Uniform } from './l1.js';
import { msgc } from './msgc.js';
import type { AnyMethod, MethodFlag } from './method.js';
import { sgBalanced } from './sg-balanced.js';
import { sgCnn } from './sg-cnn.js';
import { sgExec } from './sg-exec.js';
import { uniform } from './uniform.js';
import { wsp } from './wsp.js';

export const METHODS: readonly AnyMethod[] = [
  sgCnn,
  sgBalanced,
  sgExec,
  uniform,
  l1,
  l1Uniform,
  wsp,
  dcff,
  dgconv,
  msgc,
];

/**
 * The method `compress` runs when none is named: WSP, whose output is an ordinary narrower
 * model that runs at its MACs on the CPU provider (0.92–0.96 of the promised speed-up on
 * ResNet-18) and which kept the most accuracy of the channel-pruning methods at equal MACs on
 * the ResNets (README, Performance). SG-CNN as published stays masked dense when lowered
 * (fewer parameters, not less latency) and is `--method sg-cnn`.
 */
export const DEFAULT_METHOD = 'wsp';

/**
 * The default method's options when the user named no method: its paper criterion with data,
 * the official code's weight proxy without (named explicitly, `--method wsp` without data is
 * refused, so that nobody gets the proxy believing they asked for the paper).
 */
export function defaultMethodOptions(hasData: boolean): Record<string, unknown> {
  return hasData ? {} : { criterion: 'weight-proxy' };
}

/** The method called `name`, or a usage error that lists the registry. */
export function methodNamed(name: string): AnyMethod {
  const method = METHODS.find((m) => m.name === name);
  if (!method)
    throw new RegroupError(
      'usage',
      `unknown --method '${name}'; choose one of: ${METHODS.map((m) => m.name).join(', ')}`,
    );
  return method;
}

/** Every method flag once, with the methods that take it (for the CLI's options and its refusals). */
export function methodFlags(): { flag: MethodFlag; methods: string[] }[] {
  const byKey = new Map<string, { flag: MethodFlag; methods: string[] }>();
  for (const method of METHODS) {
    for (const flag of method.flags) {
      const entry = byKey.get(flag.key);
      if (entry) entry.methods.push(method.name);
      else byKey.set(flag.key, { flag, methods: [method.name] });
    }
  }
  return [...byKey.values()];
}

export type {
  AnyMethod,
  Method,
  MethodFlag,
  Structured,
  StructureContext,
  TrainingHooks,
  Measurements,
  CommonOptions,
  LayerLatency,
  Step,
} from './method.js';
