#!/usr/bin/env bash
# Every test of the crate: unit, integration and example tests (nextest, one process per
# test, so process-wide leak counters and signal tests never see each other), then the
# doc tests (nextest does not run those).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest not found: installing it (cargo install cargo-nextest --locked)"
  cargo install cargo-nextest --locked
fi
cargo nextest run --all-features --all-targets --no-fail-fast
cargo test --all-features --doc
