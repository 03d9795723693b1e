/**
 * The contract between the reverse-mode walk (gradients.ts) and the per-op gradient rules.
 *
 * A rule sees one forward node (or one fused region, see GradientRegion) through a
 * RuleContext: the summed gradient flowing into each output, which inputs need a
 * gradient, and the inferred types of forward values. It emits backward nodes through the
 * context's Emitter and returns one gradient per input (undefined where none is needed).
 * Every returned gradient has exactly its input's shape; broadcasting rules reduce back.
 */
import type { DataType } from '../../ir/dtype.js';
import type { Dim, Node, Value } from '../../ir/node.js';
import type { Emitter } from '../emitter.js';

/** Choices between equivalent backward formulations. */
export interface GradientOptions {
  /**
   * ∂W of Conv (rules/conv.ts):
   * - 'auto' (default): 'shifted' where it applies and its intermediate tensors are smaller
   *   than the patches', else 'patches' — a rule on tensor sizes, the same on every machine,
   *   so a run's gradients (and a resumed run's) do not depend on a timing;
   * - 'patches': every kernel tap of x copied out (one-hot grouped Conv, k·k × x) + MatMul;
   * - 'shifted': x shifted along the width per kernel column and ∂y along the height per
   *   kernel row (k × x + k × ∂y), one MatMul giving every (row, column) pair; 2-D kernels
   *   with unit height stride only, others use patches;
   * - 'swapped': a Conv with batch and channels swapped (group 1 only, else patches), kept
   *   for comparison (DESIGN.md measured it 2–4× slower than patches);
   * - 'batch-grouped': for a 2-D depthwise Conv in a graph whose batch is static, one
   *   depthwise Conv over batch × channels with ∂y as its kernel (others as 'auto'); 'auto'
   *   takes it where `blockedLayout` says the blocked kernel will run it.
   */
  readonly convWeightGradient?: 'auto' | 'patches' | 'shifted' | 'swapped' | 'batch-grouped';
  /**
   * The graph's Convs will run in onnxruntime's blocked layout (compiler/autodiff/blocked-conv.ts):
   * 'auto' then takes forms that are fast there and slow in the plain layout.
   */
  readonly blockedLayout?: boolean;
  /**
   * ∂x of Conv: 'conv' (default) — where every stride is 1, a Conv of ∂y with the kernel
   * flipped and its in/out channels swapped per group, which the CPU provider runs in its
   * blocked layout; strided layers use ConvTranspose — or 'transpose': ConvTranspose always.
   */
  readonly convInputGradient?: 'conv' | 'transpose';
}

export interface RuleContext {
  /** The forward node (for a region, the node producing the region's output). */
  readonly node: Node;
  readonly e: Emitter;
  readonly options: GradientOptions;
  /** Inputs of the unit being differentiated (the node's inputs, or a region's). */
  readonly inputs: readonly (Value | undefined)[];
  /** Summed gradient of output `outputIndex`; undefined when that output does not reach the loss. */
  grad(outputIndex: number): Value | undefined;
  /** True when input `inputIndex` lies on a path from a differentiated value to the loss. */
  needs(inputIndex: number): boolean;
  /** Inferred shape of a forward value; throws RegroupError('unsupported') when unknown. */
  shape(value: Value): readonly Dim[];
  /** Inferred element type of a forward value. */
  dtype(value: Value): DataType;
  /** Throw RegroupError('unsupported') naming this node. */
  unsupported(reason: string): never;
}

/** A gradient rule: one gradient per input of the unit (undefined where not needed). */
export type GradientRule = (c: RuleContext) => readonly (Value | undefined)[];

/**
 * Several forward nodes differentiated as one unit, because a closed-form backward is
 * cheaper than the chain rule through each of them (training-mode BatchNormalization).
 * Values inside the region must not reach the loss except through `output`.
 */
export interface GradientRegion {
  readonly output: Value;
  readonly inputs: readonly Value[];
  readonly nodes: ReadonlySet<Node>;
  readonly rule: GradientRule;
}
