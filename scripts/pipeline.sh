#!/usr/bin/env bash
# The whole path on the embedded default, in one command:
#   train a LeNet5-like on MNIST -> export ONNX -> check it -> quantize to int8 -> golden set
#   (burn, tract, int8 on the host, int8 in QEMU on a Cortex-M0, M4 and M7) -> deploy to
#   the Cortex-M4 under QEMU -> one report.
# Usage (from the repository root):
#   bash scripts/pipeline.sh [--data-dir DIR] [--out DIR] [--epochs N]
# Without --data-dir, MNIST is looked up as host-train does ($HOST_TRAIN_DATA_DIR, ./data) and
# downloaded (checksummed) when missing. Every step's full output is kept in OUT/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

data_args=()
out=runs/pipeline
epochs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) data_args=(--data-dir "$2"); shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

mkdir -p "$out/logs"
logs="$out/logs"
step() { printf '\n== %s\n' "$1"; }
# Runs a step, keeps its output in a log, shows it, and stops the pipeline if it fails.
run() {
  local name=$1; shift
  if ! "$@" 2>&1 | tee "$logs/$name.log"; then
    echo "pipeline: step '$name' failed (log: $logs/$name.log)" >&2
    exit 1
  fi
}

step "build (release)"
cargo build --release -p host-train -p export

step "train LeNet5-like on MNIST ($epochs epochs, Adam 3e-3 cosine, 1-pixel shifts, seed 42)"
rm -rf "$out/run"
run train target/release/host-train train --model lenet5-like --dataset mnist "${data_args[@]}" \
  --epochs "$epochs" --lr 0.003 --schedule cosine --augment-shift 1 --seed 42 --out "$out/run"

step "export ONNX"
run export-onnx target/release/host-train export-onnx --run "$out/run" --out "$out/model.onnx" \
  "${data_args[@]}"

step "check (target part: mps2-an386)"
run check target/release/export check "$out/model.onnx" --target mps2-an386

step "quantize to int8 (1,000 calibration images; int8 ONNX for an independent run)"
run quantize target/release/export quantize "$out/model.onnx" --calib mnist "${data_args[@]}" \
  --out "$out/model.lnq8" --onnx-out "$out/model.int8.onnx"

step "golden set: 100 test digits, every target"
run golden-generate target/release/export golden generate "$out" "${data_args[@]}"
run golden-verify target/release/export golden verify "$out"

step "deploy to the Cortex-M4F (mps2-an386) under QEMU"
run deploy target/release/export deploy --model "$out/model.lnq8" --board mps2-an386 \
  "${data_args[@]}"

pick() { grep -m1 "$1" "$logs/$2.log" | sed "s/^ *//" || true; }
step "report ($out)"
cat <<REPORT
float (burn):        $(pick 'test accuracy' train)
                     $(pick 'parity with burn' check)
                     $(pick '^float accuracy' quantize)
int8 (device-infer): $(pick '^int8 accuracy' quantize)
                     $(pick 'int8 and float agree' quantize)
                     $(pick 'int8 ONNX' quantize)
golden set:          $(pick '^golden \(passed\|FAILED\)' golden-verify)
$(grep -E '^  (burn|tract|host-int8|tract-int8|qemu-m0|qemu-m4|qemu-m7) ' "$logs/golden-verify.log" | sed 's/^  /                     /')
Cortex-M4 (QEMU):    $(pick 'identical to device-infer' deploy)
                     $(pick 'instructions per inference' deploy)
                     $(pick 'instructions per MAC' deploy)
                     $(pick '^flash without' deploy)
                     $(pick '^RAM:' deploy)
                     arena: $(pick '^arena:' quantize | sed 's/arena: //')
REPORT
