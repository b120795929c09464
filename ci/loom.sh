#!/usr/bin/env bash
# Loom models of every race of the core (loom-tests/, one file per race).
#
# 1. Every model on the cheap epoch stand-in (src/sync/loom_epoch.rs) at preemption bound
#    $LOOM_BOUND (default 4).
# 2. Every model again on the real crossbeam-epoch (--cfg ctxcore_loom_real_epoch, with
#    crossbeam_sanitize so reclamation really happens inside a model) at bound
#    $LOOM_REAL_BOUND (default 2), and the list models (m01-m04) at bound 3.
#
# For each model file: its time and the executions loom explored per test in it.
# Budget: under 10 minutes on 2 cores, builds included (measured: see the closing note of
# the verification issue). Models run in release with debug assertions on (loom-tests/
# Cargo.toml), so the core's own consistency checks are part of every execution.
set -euo pipefail
cd "$(dirname "$0")/../loom-tests"
export CARGO_TERM_COLOR=never
STAND_IN_BOUND="${LOOM_BOUND:-4}"
REAL_BOUND="${LOOM_REAL_BOUND:-2}"
ROOT_TARGET="$(cd .. && pwd)/target"
start=$(date +%s)
models=$(ls tests/*.rs | xargs -n1 basename | sed 's/\.rs$//')

run_models() { # label rustflags target-dir bound models...
  local label="$1" flags="$2" dir="$3" bound="$4"
  shift 4
  echo "=== loom ($label): building (RUSTFLAGS=\"$flags\", CARGO_TARGET_DIR=$dir)"
  RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir" cargo test --release --locked --tests --no-run -q
  for m in "$@"; do
    local t0 t1 log rc=0
    log="$(mktemp)"
    t0=$(date +%s.%N)
    RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir" LOOM_MAX_PREEMPTIONS="$bound" \
      cargo test --release --locked -q --test "$m" -- --nocapture --test-threads=1 \
      >"$log" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    if [ "$rc" -ne 0 ]; then
      tail -n 60 "$log"
      echo "FAILED: $m ($label, LOOM_MAX_PREEMPTIONS=$bound)"
      exit 1
    fi
    printf '%-28s %-22s bound %s  %6.1f s  ' "$m" "$label" "$bound" "$(awk "BEGIN{print $t1 - $t0}")"
    grep -E "^loom:" "$log" | sed 's/ explored, preemption bound.*//; s/^loom: //' | paste -sd, -
    rm -f "$log"
  done
}

run_models "epoch stand-in" "--cfg loom --cfg crossbeam_loom" "$ROOT_TARGET/loom" \
  "$STAND_IN_BOUND" $models
run_models "real crossbeam-epoch" \
  "--cfg loom --cfg crossbeam_loom --cfg crossbeam_sanitize --cfg ctxcore_loom_real_epoch" \
  "$ROOT_TARGET/loom-real" "$REAL_BOUND" $models
run_models "real crossbeam-epoch" \
  "--cfg loom --cfg crossbeam_loom --cfg crossbeam_sanitize --cfg ctxcore_loom_real_epoch" \
  "$ROOT_TARGET/loom-real" 3 m01_derive_vs_cancel m02_drop_child_vs_cancel \
  m03_child_vs_parent_cancel m04_adjacent_unlinks
echo "=== loom: all models passed in $(( $(date +%s) - start )) s"
