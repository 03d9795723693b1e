/**
 * Data-aware importance shared by the self-grouping methods: the mean |x| of every input
 * channel of every Conv on 256 training images, which scales each filter's weight row
 * (SG-CNN's importance with calibration, passes/self-group.ts).
 */
import type { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';
import type { Measurements } from './method.js';

/** Images the activity is measured on. */
const ACTIVITY_SAMPLES = 256;

/** Mean |x| per input channel of every Conv fed by an intermediate value (values of `model`). */
export async function convInputActivity(model: Model, measure: Measurements): Promise<Map<Value, Float64Array>> {
  const convInputs = model.graph
    .nodeList()
    .filter((n) => n.opType === 'Conv')
    .map((n) => n.input(0));
  const values = [...new Set(convInputs)].filter((v) => !v.isGraphInput());
  return measure.channelMeanAbs(model, values, ACTIVITY_SAMPLES);
}
