#!/usr/bin/env bash
# Train the evaluators: these are the exact commands that produced them. With no argument, the
# ones shipped in src/gankit/metrics/weights/ (about 4.5 minutes for Fashion-MNIST and 1.5 for
# MNIST-10k on 2 shared CPU cores); `scripts/train_evaluators.sh emoji` retrains the emoji
# benchmark's (benchmarks/evaluators/, docs/evaluators.md; about 5 minutes of one core). Each run prints its
# held-out accuracy and the file's SHA-256; after retraining a shipped one, copy its hash into
# SHIPPED_SHA256 in src/gankit/metrics/evaluator.py, or loading refuses the file.
#
# One thread: faster than two on a busy 2-core machine, and part of the recipe (the files record
# torch_version and torch_threads), since float sums may round differently with other counts.
# The shipped "mnist" evaluator is trained on MNIST-10k (../shared/datasets/mnist-10k, the MNIST
# subset available offline), 20% of it held out; see evaluation_split in evaluator_training.py.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(fashion-mnist mnist)
for name in "${names[@]}"; do
  case "$name" in
    fashion-mnist) .venv/bin/gankit evaluator train --dataset fashion-mnist --out src/gankit/metrics/weights/fashion-mnist.safetensors --epochs 8 --seed 0 ;;
    mnist) .venv/bin/gankit evaluator train --dataset idx:../shared/datasets/mnist-10k --out src/gankit/metrics/weights/mnist.safetensors --epochs 15 --seed 0 ;;
    emoji) .venv/bin/gankit evaluator train --dataset folder:../shared/datasets/emoji-noto-64 --out benchmarks/evaluators/emoji-noto-64.safetensors --epochs 20 --seed 0 ;;
    *) echo "unknown evaluator '$name'; choose from fashion-mnist, mnist, emoji" >&2; exit 2 ;;
  esac
done
