#!/usr/bin/env bash
# Train the evaluators shipped in src/gankit/metrics/weights/: these are the exact commands that
# produced them (about 4.5 minutes for Fashion-MNIST and 1.5 for MNIST-10k on 2 shared CPU cores).
# Each run prints its held-out accuracy and the file's SHA-256; after retraining, copy the
# hashes into SHIPPED_SHA256 in src/gankit/metrics/evaluator.py, or loading refuses the files.
#
# One thread: faster than two on a busy 2-core machine, and part of the recipe (the files record
# torch_version and torch_threads), since float sums may round differently with other counts.
# The shipped "mnist" evaluator is trained on MNIST-10k (../shared/datasets/mnist-10k, the MNIST
# subset available offline), 20% of it held out; see evaluation_split in evaluator_training.py.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
.venv/bin/gankit evaluator train --dataset fashion-mnist --out src/gankit/metrics/weights/fashion-mnist.safetensors --epochs 8 --seed 0
.venv/bin/gankit evaluator train --dataset idx:../shared/datasets/mnist-10k --out src/gankit/metrics/weights/mnist.safetensors --epochs 15 --seed 0
