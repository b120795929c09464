#!/usr/bin/env bash
# Instructions per derive+cancel+drop cycle before and after a change, counted by callgrind
# (exact and independent of machine load, unlike wall-clock time). The same small program,
# which uses only the public API, is built against two commits; each run does N cycles of
# `with_cancel` and N of `with_timeout(1 h)` under one cancellable root, and the script
# prints the instructions per cycle of each and the ratio after/before.
#
#   benches/engine/instructions.sh [BEFORE_REV] [CYCLES]    # defaults: 8acaa13, 200000
# Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/engine/program.sh
before="${1:-8acaa13}"
cycles="${2:-200000}"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
root="$PWD"
work="$root/target/instructions"
old="$work/before-tree"
rm -rf "$work"
mkdir -p "$work"
git worktree add -f "$old" "$before" >/dev/null 2>&1
trap 'git worktree remove --force "$old" >/dev/null 2>&1 || true' EXIT

# prog DIR CRATE_PATH: a binary crate at DIR depending on ctxcore at CRATE_PATH.
prog() {
  program "$1" "$2" cycles <<'EOF'
use std::hint::black_box;
use std::time::Duration;
fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().expect("kind: none, child or timeout");
    let n: usize = args.next().and_then(|s| s.parse().ok()).expect("cycle count");
    let (root, _root_cancel) = ctxcore::Context::background().with_cancel();
    let mut done = 0usize;
    for _ in 0..n {
        match kind.as_str() {
            "none" => done += black_box(&root).is_done() as usize,
            "child" => {
                let (c, h) = black_box(&root).with_cancel();
                h.cancel();
                done += c.is_done() as usize;
            }
            _ => {
                let (c, h) = black_box(&root).with_timeout(Duration::from_secs(3600));
                h.cancel();
                done += c.is_done() as usize;
            }
        }
    }
    // The work happened: every derived context was done after its cancel.
    let expect = if kind == "none" { 0 } else { n };
    assert_eq!(done, expect, "{kind}: {done} of {n} cycles ended done");
}
EOF
}

# count BIN KIND N: total instructions of one run.
count() {
  local out="$work/cg.$RANDOM"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$1" "$2" "$3" >/dev/null 2>&1
  sed -n 's/^summary: *//p' "$out"
}

prog "$work/before" "$old"
prog "$work/after" "$root"
printf '%-8s %14s %14s %12s\n' cycle "before instr" "after instr" after/before
for kind in child timeout; do
  row=()
  for side in before after; do
    bin="$work/$side/target/release/cycles"
    base=$(count "$bin" none "$cycles")
    full=$(count "$bin" "$kind" "$cycles")
    row+=("$(( (full - base) / cycles ))")
  done
  python3 -c "import sys; b,a=map(int,sys.argv[2:]); print(f'{sys.argv[1]:8} {b:14} {a:14} {a/b:12.3f}')" \
    "$kind" "${row[0]}" "${row[1]}"
done
