/**
 * Small 1×28×28 → 10 classifiers for the trainer tests (the fixtures' CNNs take 3×16×16,
 * except resnet-tiny, which is used for the real training run).
 */
import { attr } from '../../compiler/ir/attribute.js';
import { GraphBuilder } from '../../compiler/ir/builder.js';
import { DataType } from '../../compiler/ir/dtype.js';
import type { Model } from '../../compiler/ir/model.js';
import type { Value } from '../../compiler/ir/node.js';
import { Tensor } from '../../compiler/ir/tensor.js';

const CONV3 = { kernel_shape: [3, 3], pads: [1, 1, 1, 1] };

function conv(b: GraphBuilder, x: Value, name: string, inChannels: number, outChannels: number, bias: boolean): Value {
  const w = b.weight(`${name}.weight`, [outChannels, inChannels, 3, 3]);
  const inputs = bias
    ? [x, w, b.initializer(`${name}.bias`, Tensor.float32([outChannels], b.random.normals(outChannels, 0.05)))]
    : [x, w];
  return b.op('Conv', inputs, CONV3, name);
}

function bn(b: GraphBuilder, x: Value, name: string, channels: number): Value {
  const ones = b.constant(`${name}.weight`, [channels], 1);
  const zeros = b.constant(`${name}.bias`, [channels], 0);
  const mean = b.constant(`${name}.running_mean`, [channels], 0);
  const variance = b.constant(`${name}.running_var`, [channels], 1);
  return b.op('BatchNormalization', [x, ones, zeros, mean, variance], { epsilon: { float: 1e-5 } }, name);
}

function head(b: GraphBuilder, x: Value, features: number, batch: number | 'N' = 'N'): Model {
  const flat = b.op('Flatten', [x], { axis: 1 }, 'head.flatten');
  const w = b.weight('head.fc.weight', [10, features], Math.sqrt(1 / features));
  const bias = b.initializer('head.fc.bias', Tensor.float32([10], new Float32Array(10)));
  const logits = b.graph
    .addNode('Gemm', [flat, w, bias], { name: 'head.fc', outputs: ['logits'], attributes: [attr.int('transB', 1)] })
    .output(0);
  b.output(logits, { dtype: DataType.FLOAT, shape: [batch, 10] });
  return b.model;
}

/** Conv(6)-ReLU-MaxPool → Conv(8)-ReLU-MaxPool → Flatten → Gemm(10); no BatchNormalization. `batch` fixes the batch dim. */
export function plainCnn(seed = 11, batch: number | 'N' = 'N'): Model {
  const b = new GraphBuilder({ seed, opset: 17 });
  let x = b.input('input', [batch, 1, 28, 28]);
  x = b.op(
    'MaxPool',
    [b.op('Relu', [conv(b, x, 'conv1', 1, 6, true)], {}, 'relu1')],
    { kernel_shape: [2, 2], strides: [2, 2] },
    'pool1',
  );
  x = b.op(
    'MaxPool',
    [b.op('Relu', [conv(b, x, 'conv2', 6, 8, true)], {}, 'relu2')],
    { kernel_shape: [2, 2], strides: [2, 2] },
    'pool2',
  );
  return head(b, x, 8 * 7 * 7, batch);
}

/** Conv(6)-BN-ReLU-MaxPool → Conv(8)-BN-ReLU-MaxPool → Flatten → Gemm(10). */
export function bnCnn(seed = 12): Model {
  const b = new GraphBuilder({ seed, opset: 17 });
  let x = b.input('input', ['N', 1, 28, 28]);
  x = b.op(
    'MaxPool',
    [b.op('Relu', [bn(b, conv(b, x, 'conv1', 1, 6, false), 'bn1', 6)], {}, 'relu1')],
    { kernel_shape: [2, 2], strides: [2, 2] },
    'pool1',
  );
  x = b.op(
    'MaxPool',
    [b.op('Relu', [bn(b, conv(b, x, 'conv2', 6, 8, false), 'bn2', 8)], {}, 'relu2')],
    { kernel_shape: [2, 2], strides: [2, 2] },
    'pool2',
  );
  return head(b, x, 8 * 7 * 7);
}
