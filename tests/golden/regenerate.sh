#!/usr/bin/env bash
# Regenerates a golden set under tests/golden/: the training run (host-train, seed 42), its
# ONNX export, then `export golden generate`: the device model (model.lnq8), the int8 ONNX
# (model.int8.onnx) and golden.pb (the first 100 test images with burn's logits and
# device-infer's outputs). Run from the repository root:
#   bash tests/golden/regenerate.sh [DATA_DIR] [CASE]     (DATA_DIR defaults to ../shared/data)
# CASE (default lenet5-like):
#   lenet5-like          MNIST, 2 epochs, Adam 3e-3 cosine, 2 threads (about 30 s)
#   lenet5-like-cifar10  CIFAR-10, --filters 32,64, 40 epochs, Adam 2e-3 cosine, crop-flip pad 2
#                        (about 10 min on 2 cores)
#   cmsis-cifar10        CIFAR-10, the CMSIS-NN paper's net with batch norm (folded at export),
#                        90 epochs, SGD momentum 0.05 cosine, weight decay 5e-4, crop-flip pad 4
#                        (about 50 min on 2 idle Zen 5 cores; kept in CASE/base), then a warm
#                        restart from those weights: 12 epochs, momentum 0.005 cosine, the same
#                        decay, crop-flip pad 2 (CASE/run; 27 min on a 2-core Zen 1).
#                        KEEP_BASE=1 reuses the committed CASE/base and runs only the restart.
# Only the last step (golden generate) is needed after a change to the quantizer or the device
# format:  target/release/export golden generate tests/golden/CASE --data-dir DATA_DIR
# The build of the `lenet-tests` crate reads lenet5-like/model.onnx through burn-onnx's importer.
set -euo pipefail
data="${1:-../shared/data}"
case="${2:-lenet5-like}"
out=tests/golden/$case
tmp=$(mktemp -d)
cargo build --release -p host-train -p export
train=(target/release/host-train train --seed 42 --threads 2 --quiet --data-dir "$data")
case "$case" in
  lenet5-like)
    "${train[@]}" --out "$tmp/run" --model lenet5-like --dataset mnist --epochs 2 --lr 0.003 \
      --schedule cosine ;;
  lenet5-like-cifar10)
    "${train[@]}" --out "$tmp/run" --model lenet5-like --filters 32,64 --dataset cifar10 \
      --epochs 40 --lr 0.002 --schedule cosine --augment crop-flip --augment-pad 2 ;;
  cmsis-cifar10)
    cifar=(--model cmsis-cifar10-bn --dataset cifar10 --optimizer momentum --weight-decay 0.0005
      --schedule cosine --augment crop-flip)
    if [ "${KEEP_BASE:-}" = 1 ] && [ -f "$out/base/model.bpk" ]; then
      echo "reusing $out/base"
    else
      "${train[@]}" --out "$tmp/base" "${cifar[@]}" --epochs 90 --lr 0.05 --augment-pad 4
      mkdir -p "$out/base"
      cp "$tmp/base/config.json" "$tmp/base/model.bpk" "$tmp/base/metrics.csv" "$out/base/"
    fi
    "${train[@]}" --out "$tmp/run" "${cifar[@]}" --epochs 12 --lr 0.005 --augment-pad 2 \
      --init-from "$out/base" ;;
  *) echo "unknown case $case (lenet5-like, lenet5-like-cifar10, cmsis-cifar10)" >&2; exit 2 ;;
esac
mkdir -p "$out/run"
cp "$tmp/run/config.json" "$tmp/run/model.bpk" "$tmp/run/metrics.csv" "$out/run/"
target/release/host-train export-onnx --run "$out/run" --out "$out/model.onnx" --data-dir "$data"
# The parity sample of `export check` is kept for the MNIST fixture only (the CLI tests use it).
[ "$case" = lenet5-like ] || rm -f "$out/model.sample.pb"
target/release/export golden generate "$out" --data-dir "$data"
rm -rf "$tmp"
echo "regenerated $out"
