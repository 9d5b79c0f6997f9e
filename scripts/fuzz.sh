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
for t in "${targets[@]}"; do
  seeds="fuzz/seeds/${t%_sealed}"
  corpus="$work/corpus/$t"
  mkdir -p "$corpus" "$work/artifacts/$t"
  echo "== $t: $secs s"
  cargo +nightly fuzz run "$t" "$corpus" "$seeds" "fuzz/regressions/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/$t/" \
    -print_final_stats=1 > "$work/$t.log" 2>&1 || true
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+ +DONE|SUMMARY" "$work/$t.log" || true
  if grep -qE "panicked|ERROR: libFuzzer|SUMMARY: .*Sanitizer" "$work/$t.log"; then
    echo "$t: CRASH, see $work/$t.log and $work/artifacts/$t/" >&2
    exit 1
  fi
done
