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
# xz, or Python's lzma where the machine has no xz.
unxz_to() { if command -v xz >/dev/null; then xz -dc "$1" > "$2"; else
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi; }
if [ -e .gpu/host-train.xz ]; then
  # The bundle of scripts/gpu-bundle.sh: unpack the binary and MNIST; the flowers stay JPEGs.
  ht=/tmp/host-train-gpu
  unxz_to .gpu/host-train.xz "$ht"
  chmod +x "$ht"
  data=/tmp/gpu-check-data
  mkdir -p "$data/mnist"
  for f in .gpu/data/mnist/*.xz; do
    unxz_to "$f" "$data/mnist/$(basename "${f%.xz}")"
  done
  ln -sfn "$PWD/.gpu/data/oxflower17" "$data/oxflower17"
else
  ht="${CARGO_TARGET_DIR:-target}/release/host-train"
  data=../shared/data
fi
# cudarc loads libcuda at run time; this matches the GPU machine's CUDA 13 driver.
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
# cubecl links libdevice.10.bc (CUDA's math library) from $CUDA_PATH/nvvm/libdevice: find it.
if [ -z "${CUDA_PATH:-}" ]; then
  found="$(find /usr/local /opt /usr/lib -name libdevice.10.bc -path '*nvvm/libdevice/*' 2>/dev/null | head -1)"
  if [ -n "$found" ]; then export CUDA_PATH="${found%/nvvm/libdevice/libdevice.10.bc}"; fi
fi
export RUST_BACKTRACE=0 PYTHONUNBUFFERED=1
{
  date -u
  command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "no nvidia-smi"
  echo "CUDA_PATH=${CUDA_PATH:-} (libdevice: $(ls "${CUDA_PATH:-/nonexistent}"/nvvm/libdevice 2>/dev/null || echo none))"
  "$ht" --version
} 2>&1 | tee "$out/gpu-check.log"
if [ "$tiny" = 1 ]; then
  args=(--lenet-steps 200 --steps 12 --batch 16 --image-size 64 --limit 600 --torch-limit 600 "${args[@]}")
fi
python3 bench/gpu_check.py --host-train "$ht" --data-dir "$data" --out "$out" "${args[@]}" \
  2>&1 | tee -a "$out/gpu-check.log"
