#!/usr/bin/env bash
# Runs device-infer's tests that cover its byte casts, alignment checks, model parsing and the
# portable kernels under Miri (nightly: `rustup component add miri --toolchain nightly`), to
# catch undefined behaviour Rust's checks cannot see. On x86 the SIMD kernels are not reached:
# under Miri no CPU feature is detected, so the dispatchers take the portable twins (the
# SIMD paths are checked against those twins by the normal tests instead). Slow (minutes);
# not part of CI. Property tests run fewer cases here.
#   scripts/miri.sh [TEST FILTER ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${PROPTEST_CASES:-16}"
# Isolation off: proptest reads the working directory and the environment.
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-strict-provenance -Zmiri-disable-isolation}"
export PROPTEST_DISABLE_FAILURE_PERSISTENCE=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_MIRI:-/var/tmp/lenet-miri-target}"
filters=("$@")
if [ ${#filters[@]} -eq 0 ]; then
  filters=(model:: quant:: kernels:: writer::)
fi
cargo +nightly miri test -p device-infer --features std --lib -- "${filters[@]}"
