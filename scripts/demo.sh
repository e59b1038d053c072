#!/usr/bin/env bash
# The main job: set up, then train the reference GAN on Fashion-MNIST (about 5 minutes on
# 2 CPU cores) and print where the samples, loss plot and run folder are.
# Extra arguments go to `gankit train`, e.g. scripts/demo.sh train.epochs=1 --out runs/quick
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --fashion-mnist
exec .venv/bin/gankit train --config configs/reference-fashion.yaml "$@"
