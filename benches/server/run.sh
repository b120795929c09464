#!/usr/bin/env bash
# HTTP load on 127.0.0.1: hello-world servers, hyper and axum, each plain and with
# `RequestContextLayer` (30 s default timeout: every request derives a context and arms a
# deadline), loaded by wrk (Debian's; installed here if missing) in interleaved rounds, the
# variant order rotating each round. hyper+ctx-nodeadline (the layer with no default
# timeout) tells the context's cost from the deadline's; hyper+tower (the tower stack and
# hyper adapter a tower layer needs, without the layer) tells the layer's cost from the
# adapter's; axum+ctx-around puts the layer around the whole router instead of on its
# routes (`Router::layer`). Then memory: RSS and
# `ctxcore::live` of the axum+ctx server before and after 1,000,000 requests, one in ten
# from a client that sends `GET /wait` and disconnects mid-request.
#
#   benches/server/run.sh [ROUNDS] [SECONDS] [CONNECTIONS] [CHURN]   # defaults 5 5 50 1000000
#
# The servers run on one runtime worker pinned to CPU 0, wrk (one thread) on CPU 1. Prints a
# table of medians (requests/s, p50, p99), each `+ctx` variant's ratio to its plain one (and
# draws them in docs/server.svg, benches/server/chart.py), and
# the memory figures; fails if a run did no work (no requests, or socket errors).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-5}"
secs="${2:-5}"
conns="${3:-50}"
churn="${4:-1000000}"
root="$PWD"
work="$root/target/server-bench"

if ! command -v wrk >/dev/null; then
  echo "=== installing wrk (apt-get install wrk)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk
fi

echo "=== building the servers (target/server-bench)"
mkdir -p "$work/src"
cat >"$work/Cargo.toml" <<EOF
[package]
name = "hello"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
ctxcore = { path = "$root", features = ["http", "axum", "tokio"] }
axum = { version = "0.8", default-features = false, features = ["http1", "tokio"] }
hyper = { version = "1", features = ["server", "http1"] }
hyper-util = { version = "0.1", features = ["tokio", "service"] }
http-body-util = "0.1"
tokio = { version = "1", features = ["rt-multi-thread", "net", "time", "macros"] }
tower = { version = "0.5", features = ["util"] }
[workspace]
EOF
cp benches/server/hello.rs "$work/src/main.rs"
[ -f "$work/Cargo.lock" ] || cp Cargo.lock "$work/Cargo.lock"
(cd "$work" && CARGO_TARGET_DIR="$work/target" cargo build -q --release)
bin="$work/target/release/hello"

cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "=== $(nproc) CPUs, $cpu; $(wrk --version 2>&1 | head -1)"

variants=(hyper hyper+tower hyper+ctx hyper+ctx-nodeadline axum axum+ctx axum+ctx-around)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
declare -A port
base=18180
for i in "${!variants[@]}"; do
  v="${variants[$i]}"
  port[$v]=$((base + i))
  taskset -c 0 "$bin" "$v" "${port[$v]}" >/dev/null &
  pids+=("$!")
done
for v in "${variants[@]}"; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:${port[$v]}/" >/dev/null 2>&1 && break
    sleep 0.05
  done
done

results="$work/load.tsv"
: >"$results"
for r in $(seq "$rounds"); do
  n=${#variants[@]}
  for k in $(seq 0 $((n - 1))); do
    v="${variants[$(((k + r) % n))]}"
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:${port[$v]}/")
    if grep -q "Socket errors\|Non-2xx" <<<"$out"; then
      echo "$out"
      echo "FAIL: $v had errors"
      exit 1
    fi
    rps=$(sed -n 's/^Requests\/sec: *//p' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$v" "$rps" "$p50" "$p99" >>"$results"
    printf 'round %s %-10s %10s req/s  p50 %-8s p99 %s\n' "$r" "$v" "$rps" "$p50" "$p99"
  done
done

python3 - "$results" <<'EOF'
import statistics, sys
def us(t):
    for unit, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if t.endswith(unit) and not (unit == "s" and t.endswith(("us", "ms"))):
            return float(t[: -len(unit)]) * f
    raise ValueError(t)
rows = {}
for line in open(sys.argv[1]):
    _, v, rps, p50, p99 = line.split()
    r = rows.setdefault(v, {"rps": [], "p50": [], "p99": []})
    r["rps"].append(float(rps)); r["p50"].append(us(p50)); r["p99"].append(us(p99))
    assert float(rps) > 0, f"{v}: no requests"
if not rows:
    sys.exit(0)  # ROUNDS=0: memory only
med = {v: {k: statistics.median(x) for k, x in r.items()} for v, r in rows.items()}
print("\n| variant | requests/s | p50 (us) | p99 (us) | throughput vs plain | p99 vs plain "
      "| throughput vs the same stack without the layer |")
print("| --- | --- | --- | --- | --- | --- | --- |")
# hyper needs a tower adapter to take a tower layer: hyper+tower is that stack, layer-less.
stack = {"hyper+ctx": "hyper+tower", "hyper+ctx-nodeadline": "hyper+tower", "axum+ctx": "axum",
         "axum+ctx-around": "axum"}
for v in ("hyper", "hyper+tower", "hyper+ctx", "hyper+ctx-nodeadline", "axum", "axum+ctx",
          "axum+ctx-around"):
    m = med[v]; plain = med[v.split("+")[0]]; same = med[stack.get(v, v)]
    print(f"| {v} | {m['rps']:.0f} | {m['p50']:.0f} | {m['p99']:.0f} | "
          f"{m['rps'] / plain['rps']:.3f} | {m['p99'] / plain['p99']:.3f} | "
          f"{m['rps'] / same['rps']:.3f} |")
EOF
if [ "$rounds" -gt 0 ]; then
  python3 benches/server/chart.py "$results" docs/server.svg && echo "chart: docs/server.svg"
fi

echo
echo "=== memory: axum+ctx, $churn requests, one in ten from a client that leaves mid-request"
addr="127.0.0.1:${port[axum+ctx]}"
"$bin" churn "$addr" 100000 >/dev/null
sleep 1
before=$("$bin" stats "$addr")
"$bin" churn "$addr" "$churn"
sleep 1
after=$("$bin" stats "$addr")
echo "after 100,000 warm-up requests: $before"
echo "after $churn more:              $after"
python3 - "$before" "$after" "$churn" <<'EOF'
import sys
b = dict(kv.split("=") for kv in sys.argv[1].split())
a = dict(kv.split("=") for kv in sys.argv[2].split())
n = int(sys.argv[3])
growth = int(a["rss"]) / int(b["rss"])
print(f"RSS {int(b['rss'])/2**20:.1f} MiB -> {int(a['rss'])/2**20:.1f} MiB: x{growth:.3f}")
gone = int(a["wait_gone"]) - int(b["wait_gone"])
started = int(a["wait_started"]) - int(b["wait_started"])
print(f"mid-request disconnects: {n // 10} sent, {started} reached the handler, "
      f"{gone} sub-tasks ended with ClientGone")
# What is left: the server's root and the `/stats` request's own context with its deadline
# (counted while it runs), nothing else.
left = {k: int(a[k]) for k in ("contexts", "timers", "waiters", "callbacks")}
print(f"live after the run (the root, and /stats itself with its timer): {left}")
ok = growth <= 1.05 and left == {"contexts": 2, "timers": 1, "waiters": 0, "callbacks": 0} \
    and gone == started and started >= 0.99 * (n // 10)
print("memory: ok" if ok else "memory: FAIL")
sys.exit(0 if ok else 1)
EOF
