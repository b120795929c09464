#!/usr/bin/env bash
# Runs every workload against ctxcore and its peers (mutex baseline, tokio-util, Go's
# context) in one go and prints the comparison table of PERF.md; writes docs/perf.svg.
# About 6-8 minutes on 2 cores (build included when warm); tune with the variables below.
#
#   WARMUP=0.5 MEASURE=1.5 SAMPLES=20 benches/compare.sh        # the defaults
#   QUICK=1 benches/compare.sh                                   # a ~2 minute smoke run
#
# Outputs under target/perf/: criterion.log, allocs.txt, go.txt, rust.txt (the Rust medians
# in the Go side's line format) and table.md (what is printed).
set -euo pipefail
cd "$(dirname "$0")/.."

WARMUP=${WARMUP:-0.5}
MEASURE=${MEASURE:-1.5}
SAMPLES=${SAMPLES:-20}
if [[ -n "${QUICK:-}" ]]; then WARMUP=0.1; MEASURE=0.2; SAMPLES=10; fi
OUT=target/perf
mkdir -p "$OUT" docs

if ! command -v go >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "compare.sh: installing Go (golang-go) for the Go peer" >&2
        apt-get install -y -q golang-go >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q golang-go >/dev/null; }
    else
        echo "compare.sh: no Go toolchain: the Go column will be empty" >&2
    fi
fi

start=$(date +%s)
echo "== build" >&2
cargo bench --no-run -q 2>&1 | grep -v '^ *Executable' >&2 || true

# Fresh results only: stale medians from an earlier run must not leak into the table.
rm -rf target/criterion
ARGS=(--warm-up-time "$WARMUP" --measurement-time "$MEASURE" --sample-size "$SAMPLES" --noplot --nresamples 20000)
: > "$OUT/criterion.log"
for b in check child values tree request contended wake clock; do
    echo "== cargo bench --bench $b -- ${ARGS[*]}" >&2
    cargo bench -q --bench "$b" -- "${ARGS[@]}" >> "$OUT/criterion.log" 2>&1
done
echo "== cargo bench --bench allocs" >&2
cargo bench -q --bench allocs > "$OUT/allocs.txt"

GO_OUT=()
if command -v go >/dev/null; then
    echo "== Go peer ($(go version))" >&2
    (cd benches/go && go build -o ../../target/perf/ctxbench .)
    "$OUT/ctxbench" -warmup "${WARMUP}s" -time "${MEASURE}s" -samples "$SAMPLES" > "$OUT/go.txt"
    GO_OUT=(--go "$OUT/go.txt")
fi

echo "== cargo test --release --test memory" >&2
: > "$OUT/memory.txt"
# One process per test (see tests/memory.rs).
for t in $(cargo test -q --release --test memory -- --list 2>/dev/null | sed -n 's/: test$//p'); do
    cargo test -q --release --test memory -- --nocapture --exact "$t" 2>/dev/null \
        | grep -E ': [0-9.]+ B$' >> "$OUT/memory.txt" || true
done

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n1)
CPU="$CPU, $(nproc) CPUs"
python3 benches/report.py --criterion target/criterion "${GO_OUT[@]}" --allocs "$OUT/allocs.txt" \
    --memory "$OUT/memory.txt" --cpu "$CPU" \
    --svg docs/perf.svg --rust-out "$OUT/rust.txt" | tee "$OUT/table.md"
echo "compare.sh: done in $(( $(date +%s) - start )) s; table in $OUT/table.md, chart in docs/perf.svg" >&2
