#!/usr/bin/env bash
# The seed's optimizer and learning-rate experiments on the real data, as committed under
# docs/figures/grid-*/: each grid trains into RUNS/<name>/ (a run folder per cell; rerunning
# skips finished cells and resumes an interrupted one) and its summary and figures are copied
# to docs/figures/grid-<name>/.
# Usage (from the repository root):
#   bash scripts/seed-grids.sh [--data-dir DIR] [--runs DIR] [--threads N] [NAME ...]
# NAMEs: mnist cifar10 flowers mnist-seeds (default: all). Measured on the 2-core machine here,
# with other work sharing the cores (sum of the cells' wall times): mnist 11 min, cifar10 9 min,
# flowers 43 min, mnist-seeds 2 min.
set -euo pipefail
cd "$(dirname "$0")/.."

data=../shared/data
runs=runs/grids
threads=()
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) data="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --threads) threads=(--threads "$2"); shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(mnist cifar10 flowers mnist-seeds)

cargo build --release -p host-train
ht=target/release/host-train
lenets=(--models fc,lenet5,lenet5-like --optimizers sgd,momentum,adagrad,adam,rmsprop
        --lrs 0.001,0.01,0.1 --iterations 3000 --eval-every 150)
for name in "${names[@]}"; do
  case "$name" in
    mnist) args=(--dataset mnist "${lenets[@]}") ;;
    cifar10) args=(--dataset cifar10 "${lenets[@]}") ;;
    flowers) args=(--dataset oxflower17 --models alexnet --optimizers rmsprop,adam,momentum,sgd
                   --lrs 0.0001,0.00005,0.00001 --image-size 128 --augment resized-crop-flip
                   --batch-size 32 --iterations 320 --eval-every 32) ;;
    mnist-seeds) args=(--dataset mnist --models fc,lenet5-like --optimizers sgd,adam
                       --lrs 0.001,0.01,0.1 --seeds 3 --iterations 1500 --eval-every 75) ;;
    *) echo "unknown grid: $name (mnist cifar10 flowers mnist-seeds)" >&2; exit 2 ;;
  esac
  echo "== grid $name"
  "$ht" compare "${args[@]}" "${threads[@]}" --data-dir "$data" --out "$runs/$name"
  dest=docs/figures/grid-$name
  mkdir -p "$dest"
  cp "$runs/$name"/{grid.toml,summary.csv,summary.md,*.png,*.svg} "$dest/"
  echo "copied the summary and figures to $dest"
done
