#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time (default 60 s each), on nightly with
# cargo-fuzz (`cargo install cargo-fuzz`), each from its committed seeds plus a working corpus
# in $FUZZ_WORK (default /var/tmp/lenet-fuzz), built in $CARGO_TARGET_DIR_FUZZ (default
# /var/tmp/lenet-fuzz-target: sanitizer builds do not share the main target folder). A crash
# stops the run: copy the input libFuzzer names into fuzz/regressions/<target>/, fix the bug,
# and plain `cargo test` replays it.
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
work="${FUZZ_WORK:-/var/tmp/lenet-fuzz}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_FUZZ:-/var/tmp/lenet-fuzz-target}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
mkdir -p "$work"
# FUZZ_SANITIZER=none builds without AddressSanitizer (several times faster on the image
# decoders; Rust's own bounds checks stay), FUZZ_JOBS=N runs N processes on one corpus.
sanitizer="${FUZZ_SANITIZER:-address}"
jobs="${FUZZ_JOBS:-1}"
for t in "${targets[@]}"; do
  seeds="fuzz/seeds/${t%_sealed}"
  corpus="$work/corpus/$t"
  mkdir -p "$corpus" "$work/artifacts/$t"
  echo "== $t: $secs s, sanitizer $sanitizer, $jobs job(s)"
  cargo +nightly fuzz build -s "$sanitizer" "$t" > "$work/$t.build.log" 2>&1
  for j in $(seq "$jobs"); do
    cargo +nightly fuzz run -s "$sanitizer" "$t" "$corpus" "$seeds" "fuzz/regressions/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/$t/" \
      -print_final_stats=1 > "$work/$t.$j.log" 2>&1 &
  done
  wait || true
  total=0
  for j in $(seq "$jobs"); do
    n=$(grep -E "^stat::number_of_executed_units" "$work/$t.$j.log" | awk '{print $2}')
    total=$((total + ${n:-0}))
    grep -E "^stat::peak_rss_mb|SUMMARY" "$work/$t.$j.log" || true
    if grep -qE "panicked|ERROR: libFuzzer|SUMMARY: .*Sanitizer" "$work/$t.$j.log"; then
      echo "$t: CRASH, see $work/$t.$j.log and $work/artifacts/$t/" >&2
      exit 1
    fi
  done
  echo "stat::number_of_executed_units: $total"
done
