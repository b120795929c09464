#!/usr/bin/env bash
# ThreadSanitizer over the multi-thread tests: tests/stress.rs (the shared-tree stress, the
# unlink race, the single-thread and 8-thread models of the public API) and tests/retention.rs
# (the three-level cancel duel, the disarm/stop/cancel retention races). Fails on any report.
#
# Two ways to build, the better one first:
#
# 1. A nightly toolchain with rust-src: `-Zbuild-std` rebuilds std with the sanitizer, so
#    TSan sees everything, std's locks and Arc included. No suppressions are used.
# 2. Otherwise the stable toolchain, which ships the TSan runtime (librustc-*_rt.tsan.a):
#    - RUSTC_BOOTSTRAP=1 lets stable rustc take `-Zsanitizer=thread` (an unstable flag);
#    - `-Cunsafe-allow-abi-mismatch=sanitizer` links our instrumented crates against the
#      precompiled, uninstrumented std (rustc refuses the mix without it).
#    The cost: std, alloc and libtest are not instrumented. TSan sees neither their accesses
#    nor the happens-before edges of their synchronization (futex Mutex/Condvar/Once,
#    channels, park/unpark) nor Arc's `fence(Acquire)` (TSan does not model fences). So the
#    tests hand off through tests/common/spin.rs (atomics compiled in the crate graph), the
#    engine publishes its own edges on its own atomics (the timer driver's start, for one),
#    and ci/tsan.supp lists the three std/libtest artifacts left, each with its reason.
#
# `--cfg ctxcore_tsan` swaps the one std lock of the crate (a manual or tokio clock's queue,
# src/clock/queue.rs) for a spin lock on an atomic (src/sync/visible_lock.rs), so TSan sees
# the edges of that lock too; the code it guards is the same. Without it the 8-thread model
# on a manual clock gave 108 reports, every one an access under that lock.
#
# `--cfg crossbeam_sanitize` makes crossbeam-epoch reclaim eagerly, so retired entries really
# are freed while other threads run. Each binary runs its tests one at a time (libtest's
# own parallel harness adds nothing but artifacts).
#
# Checked that it can fail (2026-12-04, stable 1.95, AMD EPYC): with `State::load` in
# src/state.rs weakened from Acquire to Relaxed, this script exits 101 with 10 data races in
# tests/stress.rs: `Context::cause` / `State::cause_of` reading a cause whose DONE word was
# seen without the Acquire (the cause's allocation races with the canceller's write), and
# `node::derive` under `with_cancel` / `with_timeout` reading a parent's word the same way.
# Unmutated, the same build and run reports nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/tsan}"
export CTXCORE_STRESS_SECS="${CTXCORE_STRESS_SECS:-2}"
tests=(--test stress --test retention)
common_opts="halt_on_error=0 exitcode=66 second_deadlock_stack=1 print_suppressions=1"

sysroot="$(rustc +nightly --print sysroot 2>/dev/null || true)"
if [ -n "$sysroot" ] && [ -d "$sysroot/lib/rustlib/src/rust/library" ]; then
  target="$(rustc +nightly -vV | sed -n 's/^host: //p')"
  export RUSTFLAGS="-Zsanitizer=thread --cfg crossbeam_sanitize --cfg ctxcore_tsan"
  export TSAN_OPTIONS="${TSAN_OPTIONS:-$common_opts}"
  echo "=== tsan: $(rustc +nightly --version), -Zbuild-std, target $target"
  cargo +nightly test -Zbuild-std --release --target "$target" --no-fail-fast "${tests[@]}" \
    -- --test-threads=1
else
  target="$(rustc -vV | sed -n 's/^host: //p')"
  export RUSTC_BOOTSTRAP=1
  export RUSTFLAGS="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer --cfg crossbeam_sanitize --cfg ctxcore_tsan"
  export TSAN_OPTIONS="${TSAN_OPTIONS:-$common_opts suppressions=$PWD/ci/tsan.supp}"
  echo "=== tsan: $(rustc --version) with RUSTC_BOOTSTRAP=1 (no nightly rust-src here)," \
    "std not instrumented, suppressions ci/tsan.supp, target $target"
  cargo test --release --target "$target" --no-fail-fast "${tests[@]}" -- --test-threads=1
fi
echo "=== tsan: no report (stress ${CTXCORE_STRESS_SECS}s per timed test)"
