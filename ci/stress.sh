#!/usr/bin/env bash
# The stress test (tests/stress.rs) in release for a bounded time, the retention tests in
# release, then the stress binary under valgrind's memcheck, failing on definite leaks and
# on memory errors.
#
#   CTXCORE_STRESS_SECS          length of the release run (default 10)
#   CTXCORE_VALGRIND_STRESS_SECS length of the run under valgrind (default 1: valgrind
#                                serialises the threads and runs ~50x slower)
# Without valgrind installed the memcheck part prints a SKIPPED line (the release run still
# counts).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
secs="${CTXCORE_STRESS_SECS:-10}"
vg_secs="${CTXCORE_VALGRIND_STRESS_SECS:-1}"
echo "=== stress: tests/stress.rs in release for ${secs}s"
CTXCORE_STRESS_SECS="$secs" cargo test --release --test stress -- --nocapture
# The retention tests in release too: at full speed contexts come and go fastest, so their
# memory bounds (behaviour 14) are tightest here. Exact counts need one test per process
# (nextest) or one test at a time with CTXCORE_LEAK_CHECK=1.
echo "=== stress: tests/retention.rs in release"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --test retention --no-fail-fast
else
  CTXCORE_LEAK_CHECK=1 cargo test --release --test retention -- --test-threads=1
fi
bin="$(cargo test --release --test stress --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "could not find the stress test binary"
  exit 1
fi
if ! command -v valgrind >/dev/null 2>&1; then
  echo "SKIPPED: valgrind is not installed (apt-get install valgrind), memcheck not run."
  exit 0
fi
echo "=== stress: valgrind memcheck over $bin for ${vg_secs}s ($(valgrind --version))"
CTXCORE_STRESS_SECS="$vg_secs" valgrind --quiet --error-exitcode=1 --leak-check=full \
  --show-leak-kinds=definite --errors-for-leak-kinds=definite \
  "$bin" --test-threads=1 --nocapture
echo "=== stress: memcheck clean (no memory errors, no definite leaks)"
