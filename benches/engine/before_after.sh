#!/usr/bin/env bash
# The engine's hot paths before and after a change, in one run: the same criterion benches
# (child derive+cancel+drop, timeout child, is_done/check, the contended shared-root row,
# waking 1,000 futures, with_value + drop at depths 1, 8 and 64)
# built from two commits, run in interleaved rounds on this machine; prints the median
# ratio after/before per bench.
#
#   benches/engine/before_after.sh [BEFORE_REV] [ROUNDS]     # defaults: 8acaa13, 3
set -euo pipefail
cd "$(dirname "$0")/../.."
before="${1:-8acaa13}"
rounds="${2:-3}"
filter='^(child|timeout_child)/ctxcore$|^check(_done)?/ctxcore$|^contended.*ctxcore|^wake/futures1000/ctxcore$|^with_value(_mixed)?/ctxcore/'
old="target/before-tree"
rm -rf "$old"
git worktree add -f "$old" "$before" >/dev/null 2>&1
trap 'git worktree remove --force "$old" >/dev/null 2>&1 || true' EXIT
run() { # dir label round
  # A long bench name is printed on a line of its own, before its "time:" line: join them.
  (cd "$1" && CARGO_TARGET_DIR="$PWD/../../target/ba-$2" cargo bench -q --bench child \
      --bench check --bench contended --bench wake --bench values -- --warm-up-time 0.3 \
      --measurement-time 1.0 --noplot "$filter" 2>/dev/null) \
      | awk '/time:/ { if ($1 == "time:") print name " " $0; else print; next }
             /^[^ ]/ && !/^Benchmarking/ { name = $1 }' \
      | sed -n 's/^\([^ ]*\) *time: *\[[^ ]* [^ ]* \([^ ]*\) \([^ ]*\) .*/\1 \2 \3/p' \
      | sed "s/^/$2 $3 /"
}
for r in $(seq "$rounds"); do
  run "$old" before "$r"
  run . after "$r"
done > target/before_after.txt
python3 - <<'PY'
import collections, statistics
unit = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6}
t = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open("target/before_after.txt"):
    if len(line.split()) != 5:
        continue  # a bench whose name criterion printed on a line of its own
    label, _, name, val, u = line.split()
    t[name][label].append(float(val) * unit[u])
print(f"{'bench':40} {'before ns':>10} {'after ns':>10} {'after/before':>12}")
for name, d in sorted(t.items()):
    if d["before"] and d["after"]:
        b, a = statistics.median(d["before"]), statistics.median(d["after"])
        print(f"{name:40} {b:10.2f} {a:10.2f} {a / b:12.3f}")
PY
