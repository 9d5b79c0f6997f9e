#!/usr/bin/env bash
# The GPU check: host-train on the GPU beside PyTorch eager, the same models, batch and data
# (bench/gpu_check.py says what runs and how it is timed). Sized for 10 minutes on one H200.
#
# On the GPU machine (after `bash scripts/gpu-bundle.sh` here), through the device tool:
#   run(command="bash scripts/gpu-check.sh", carry=[".gpu"], timeout_s=600)
# Its table comes back as $OUT/gpu-check.md (with gpu-check.json and the log).
#
# CPU dry run here (the same script, tiny: flex backend, PyTorch on the CPU, 64x64 flowers):
#   bash scripts/gpu-check.sh --device flex --tiny [--python /tmp/torch-venv/bin/python]
# Other options go to bench/gpu_check.py (--steps, --models, --limit, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu-check-out}"
mkdir -p "$out"
args=()
tiny=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) tiny=1 ;;
    *) args+=("$1") ;;
  esac
  shift
done
if [ -e .gpu/host-train.xz ]; then
  # The bundle of scripts/gpu-bundle.sh: unpack the binary and MNIST; the flowers stay JPEGs.
  ht=/tmp/host-train-gpu
  xz -dc .gpu/host-train.xz > "$ht"
  chmod +x "$ht"
  data=/tmp/gpu-check-data
  mkdir -p "$data/mnist"
  for f in .gpu/data/mnist/*.xz; do
    xz -dc "$f" > "$data/mnist/$(basename "${f%.xz}")"
  done
  ln -sfn "$PWD/.gpu/data/oxflower17" "$data/oxflower17"
else
  ht="${CARGO_TARGET_DIR:-target}/release/host-train"
  data=../shared/data
fi
# cudarc loads libcuda at run time; this matches the GPU machine's CUDA 13 driver.
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
export CUDA_PATH="${CUDA_PATH:-/usr/local/cuda}"
export RUST_BACKTRACE=0 PYTHONUNBUFFERED=1
{
  date -u
  command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "no nvidia-smi"
  ls "$CUDA_PATH"/nvvm/libdevice 2>/dev/null || echo "no libdevice under $CUDA_PATH/nvvm/libdevice"
  "$ht" --version
} 2>&1 | tee "$out/gpu-check.log"
if [ "$tiny" = 1 ]; then
  args=(--lenet-steps 200 --steps 12 --batch 16 --image-size 64 --limit 600 "${args[@]}")
fi
python3 bench/gpu_check.py --host-train "$ht" --data-dir "$data" --out "$out" "${args[@]}" \
  2>&1 | tee -a "$out/gpu-check.log"
