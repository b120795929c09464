#!/usr/bin/env bash
# Loom models of every race of the core (loom-tests/, one file per race).
#
# 1. Every model on the cheap epoch stand-in (src/sync/loom_epoch.rs) at preemption bound
#    $LOOM_BOUND (default 5).
# 2. Every model again on the real crossbeam-epoch (--cfg ctxcore_loom_real_epoch, with
#    crossbeam_sanitize so reclamation really happens inside a model) at bound
#    $LOOM_REAL_BOUND (default 3), except the one three-thread list model (see below).
#
# For each model file: its time and the executions loom explored per test in it.
# Budget: under 10 minutes on 2 cores, builds included (about 3 minutes measured from a
# cold target directory). Models run in release with debug assertions on (loom-tests/
# Cargo.toml), so the core's own consistency checks are part of every execution.
# No --locked: loom-tests/Cargo.lock pins what it has, and a dependency the root crate
# gains later is added to it rather than failing the run.
set -euo pipefail
cd "$(dirname "$0")/../loom-tests"
export CARGO_TERM_COLOR=never
STAND_IN_BOUND="${LOOM_BOUND:-5}"
REAL_BOUND="${LOOM_REAL_BOUND:-3}"
ROOT_TARGET="$(cd .. && pwd)/target"
start=$(date +%s)
models=$(ls tests/*.rs | xargs -n1 basename | sed 's/\.rs$//')

run_models() { # label rustflags target-dir bound skip models...
  local label="$1" flags="$2" dir="$3" bound="$4" skip="$5"
  shift 5
  echo "=== loom ($label): building (RUSTFLAGS=\"$flags\", CARGO_TARGET_DIR=$dir)"
  RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir" cargo test --release --tests --no-run -q
  for m in "$@"; do
    local t0 t1 log rc=0
    log="$(mktemp)"
    t0=$(date +%s.%N)
    RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir" LOOM_MAX_PREEMPTIONS="$bound" \
      cargo test --release -q --test "$m" -- --nocapture --test-threads=1 \
      ${skip:+--skip "$skip"} >"$log" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    if [ "$rc" -ne 0 ]; then
      tail -n 60 "$log"
      echo "FAILED: $m ($label, LOOM_MAX_PREEMPTIONS=$bound)"
      exit 1
    fi
    printf '%-28s %-22s bound %s  %6.1f s  ' "$m" "$label" "$bound" "$(awk "BEGIN{print $t1 - $t0}")"
    grep -oE "loom: [0-9]+ executions" "$log" | sed "s/^loom: //" | paste -sd, -
    rm -f "$log"
  done
}

run_models "epoch stand-in" "--cfg loom --cfg crossbeam_loom" "$ROOT_TARGET/loom" \
  "$STAND_IN_BOUND" "" $models
# The real epoch multiplies the states of every pin, so the one three-thread model
# (adjacent_unlinks_racing_cancel: >10 minutes at bound 2) runs on the stand-in only.
REAL_SKIP=adjacent_unlinks_racing_cancel
echo "note: on the real epoch, $REAL_SKIP is skipped (three threads: stand-in only)"
run_models "real crossbeam-epoch" \
  "--cfg loom --cfg crossbeam_loom --cfg crossbeam_sanitize --cfg ctxcore_loom_real_epoch" \
  "$ROOT_TARGET/loom-real" "$REAL_BOUND" "$REAL_SKIP" $models
echo "=== loom: all models passed in $(( $(date +%s) - start )) s"
