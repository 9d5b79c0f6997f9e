#!/usr/bin/env bash
# Builds here what scripts/gpu-check.sh needs on the GPU machine, into .gpu/ (git-ignored). The
# device tool carries at most 64 MiB together with the working tree (about 10 MB), and that
# machine reaches no network and has no ../shared, so everything is compressed hard:
#   .gpu/host-train.xz        host-train with `cuda` and `wgpu`, stripped, xz (150 -> 31 MB)
#   .gpu/data/mnist/*.xz      the four MNIST IDX files, xz instead of gzip (11.4 -> 9.2 MB)
#   .gpu/data/oxflower17/     the flowers resized to 224x224 as JPEG quality 60 (`host-train
#                             dump --format jpeg`: the same names, so the same split; 14 MB)
# Usage: bash scripts/gpu-bundle.sh [DATA_DIR]     (default ../shared/data)
# Then, through the device tool: run `bash scripts/gpu-check.sh` with carry [".gpu"].
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data}"
quality="${GPU_BUNDLE_JPEG_QUALITY:-60}"
bash scripts/setup-gpu.sh
cargo build --release -p host-train --features cuda,wgpu
bin="${CARGO_TARGET_DIR:-target}/release/host-train"
rm -rf .gpu
mkdir -p .gpu/data/mnist
strip -o .gpu/host-train "$bin"
xz -T0 -9 .gpu/host-train
for f in "$data"/mnist/*-ubyte.gz; do
  gzip -dc "$f" | xz -T0 -9e > ".gpu/data/mnist/$(basename "${f%.gz}").xz"
done
"$bin" dump --dataset oxflower17 --data-dir "$data" --format jpeg --quality "$quality" \
  --out .gpu/data/oxflower17
# The cuda build replaced target/release/host-train; put the CPU one back for the tests.
cargo build --release -p host-train
du -sh .gpu/host-train.xz .gpu/data/* | sed 's/^/  /'
tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
extra=$(git ls-files -z --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1)
total=$(( tree + extra + $(du -sb .gpu | cut -f1) ))
echo "working tree + .gpu: $(( total / 1048576 )) MiB of the 64 MiB the device tool carries"
if [ "$total" -gt $(( 64 * 1048576 )) ]; then
  echo "too large: lower GPU_BUNDLE_JPEG_QUALITY (now $quality) or remove untracked files" >&2
  exit 1
fi
