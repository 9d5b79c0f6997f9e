#!/usr/bin/env bash
# Regenerates the golden set tests/golden/lenet5-like/: a LeNet5-like trained by host-train
# (seed 42, 2 epochs, Adam 3e-3 cosine, 2 threads), its ONNX export and parity sample, then
# `export golden generate`: the device model (model.lnq8), the int8 ONNX (model.int8.onnx) and
# golden.pb (the first 100 MNIST test digits with burn's logits and device-infer's outputs).
# Run from the repository root:
#   bash tests/golden/regenerate.sh [DATA_DIR]        (DATA_DIR defaults to ../shared/data)
# Only the last step (golden generate) is needed after a change to the quantizer or the device
# format:  target/release/export golden generate tests/golden/lenet5-like --data-dir DATA_DIR
# The build of the `lenet-tests` crate reads model.onnx through burn-onnx's importer.
set -euo pipefail
data="${1:-../shared/data}"
out=tests/golden/lenet5-like
tmp=$(mktemp -d)
cargo build --release -p host-train -p export
target/release/host-train train --model lenet5-like --dataset mnist --data-dir "$data" \
  --epochs 2 --lr 0.003 --schedule cosine --seed 42 --threads 2 --quiet --out "$tmp/run"
mkdir -p "$out/run"
cp "$tmp/run/config.json" "$tmp/run/model.bpk" "$tmp/run/metrics.csv" "$out/run/"
target/release/host-train export-onnx --run "$out/run" --out "$out/model.onnx" --data-dir "$data"
target/release/export golden generate "$out" --data-dir "$data"
rm -rf "$tmp"
echo "regenerated $out"
