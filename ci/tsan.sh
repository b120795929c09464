#!/usr/bin/env bash
# ThreadSanitizer over the stress test (tests/stress.rs), std rebuilt with the sanitizer.
#
# Needs a nightly toolchain and its rust-src component (for -Zbuild-std). A machine without
# them gets a SKIPPED line and exit 0, never a pass. `--cfg crossbeam_sanitize` makes
# crossbeam-epoch reclaim eagerly so freed entries really are freed under the sanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
if ! rustc +nightly --version >/dev/null 2>&1; then
  echo "SKIPPED: no nightly toolchain here (\`rustc +nightly --version\` failed)."
  exit 0
fi
sysroot="$(rustc +nightly --print sysroot)"
if [ ! -d "$sysroot/lib/rustlib/src/rust/library" ]; then
  echo "SKIPPED: the nightly toolchain has no rust-src component ($sysroot/lib/rustlib/src" \
    "is missing), which -Zbuild-std needs. Install it with" \
    "\`rustup +nightly component add rust-src\` to run this step."
  exit 0
fi
target="$(rustc +nightly -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Zsanitizer=thread --cfg crossbeam_sanitize"
export RUSTDOCFLAGS="$RUSTFLAGS"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/tsan}"
export CTXCORE_STRESS_SECS="${CTXCORE_STRESS_SECS:-2}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1}"
echo "=== tsan: $(rustc +nightly --version), target $target, RUSTFLAGS=\"$RUSTFLAGS\""
echo "=== tsan: tests/stress.rs for ${CTXCORE_STRESS_SECS}s"
cargo +nightly test -Zbuild-std --target "$target" --test stress -- --nocapture
echo "=== tsan: done"
