/**
 * Access to the third-party models and data in ../shared/fixtures. Under CI (CI=true) a
 * missing folder fails loudly; elsewhere the dependent tests are skipped with a printed reason.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SHARED_FIXTURES = path.resolve(PROJECT_ROOT, '../shared/fixtures');

export const haveShared = fs.existsSync(path.join(SHARED_FIXTURES, 'models'));

if (!haveShared) {
  if (process.env.CI === 'true')
    throw new Error(`../shared/fixtures is missing (looked in ${SHARED_FIXTURES}); CI needs it beside the project`);
  console.warn(`[regroup tests] skipping tests on real models: ${SHARED_FIXTURES} not found`);
}

/** Float models in ../shared/fixtures/models, relative path → absolute path. */
export const SHARED_MODELS: Record<string, string> = {
  resnet20: 'resnet20-cifar10-pytorch/resnet20.onnx',
  cifar10Cnn: 'cifar10-cnn-winml-pytorch/ImageClassifier.onnx',
  mnistCnn: 'mnist-cnn-pytorch/mnist_cnn.onnx',
  mnist8: 'mnist-8-cntk-winml/mnist.onnx',
  squeezenetFp16: 'squeezenet1.1-fp16-winml/SqueezeNet_fp16.onnx',
  ppocr: 'ppocr-textdir-cls-mobilenetv3/ch_ppocr_mobile_v2.0_cls_infer.onnx',
  resnet18: 'torchvision/resnet18-torchscript-op17.onnx',
  mobilenetV2: 'torchvision/mobilenet_v2-dynamo-op18.onnx',
  densenet121: 'torchvision/densenet121-torchscript-op13.onnx',
  shufflenetV2: 'torchvision/shufflenet_v2_x0_5-dynamo-op18.onnx',
  regnetX400: 'torchvision/regnet_x_400mf-torchscript-op17.onnx',
  efficientnetB0: 'torchvision/efficientnet_b0-dynamo-op18.onnx',
};

export function sharedModel(key: keyof typeof SHARED_MODELS | string): string {
  return path.join(SHARED_FIXTURES, 'models', SHARED_MODELS[key] ?? key);
}

/** Every model file under ../shared/fixtures/models (empty when the folder is missing). */
export function allSharedModels(): string[] {
  if (!haveShared) return [];
  const root = path.join(SHARED_FIXTURES, 'models');
  return fs
    .readdirSync(root, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.onnx'))
    .sort()
    .map((f) => path.join(root, f));
}
