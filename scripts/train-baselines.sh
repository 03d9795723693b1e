#!/usr/bin/env bash
# Trains regroup's Fashion-MNIST baselines from scratch with `regroup train` and writes
# fixtures/models/fmnist-<name>.onnx plus its JSON report (recipe, per-epoch history, loss
# curve). The recipe is the same for all three: SGD with Nesterov momentum 0.9, weight decay
# 5e-4, batch 128, cosine learning rate from 0.05 with one warm-up epoch, random crop
# (pad 2) and horizontal flip, seed 0, on the 60,000-image train split; test top-1 on the
# 10,000-image test split. Usage: scripts/train-baselines.sh [name…] (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
node dist/fixtures/build.js --baselines "$work" >/dev/null
declare -A EPOCHS=([resnet]=8 [vgg]=6 [mobilenet]=6)
for name in "${@:-resnet vgg mobilenet}"; do
  for n in $name; do
    node bin/regroup.js train "$work/fmnist-$n.onnx" --data fashion-mnist --epochs "${EPOCHS[$n]}" \
      --lr 0.05 --batch 128 --optimizer sgd --schedule cosine --warmup 1 --seed 0 \
      -o "fixtures/models/fmnist-$n.onnx" --report "fixtures/models/fmnist-$n.json" --force
    rm -f "fixtures/models/fmnist-$n.onnx.train-state"
  done
done
