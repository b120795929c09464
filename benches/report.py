#!/usr/bin/env python3
"""Collects one benchmark run and prints the comparison table of PERF.md.

Inputs: criterion's results (target/criterion/**/new/{benchmark,estimates}.json: the median
of the per-iteration sample times), the Go peer's output (benches/go, `RESULT` and `ALLOC`
lines) and the allocation counter's output (`cargo bench --bench allocs`, `ALLOC` lines).

Prints, in markdown: the time table (workload x peer, with ctxcore/peer ratios), the issue's
targets as met/missed, and the allocation table. Writes the Rust medians in the Go side's
line format (`RESULT <workload> <peer> <ns>`) with --rust-out, and a hand-written SVG chart
with --svg. Standard library only.
"""

import argparse
import json
import math
import os
import re
import sys

PEERS = ["ctxcore", "mutex", "tokio-util", "go"]
PEER_TITLES = {
    "ctxcore": "ctxcore",
    "mutex": "mutex baseline",
    "tokio-util": "tokio-util",
    "go": "Go context",
}
# Peer names that can appear as a component of a criterion id.
RUST_PEERS = {"ctxcore", "mutex", "tokio-util", "atomicbool"}
TREE_NODES = {"flat1000": 1000, "fanout10x3": 1110}

# (workload id, title, unit divisor, unit label)
ROWS = [
    ("check", "check: `is_done()` on a live context", 1, "ns"),
    ("check_hoisted", "check in a hot loop (context made opaque once)", 1, "ns"),
    ("check_done", "check on a cancelled context", 1, "ns"),
    ("child", "child: derive + cancel + drop", 1, "ns"),
    ("child_churn1000", "child under a parent with 1,000 live children, oldest first", 1, "ns"),
    ("timeout_child", "timeout child (30 s): derive + cancel + drop", 1, "ns"),
    ("value_lookup/1", "value lookup, depth 1", 1, "ns"),
    ("value_lookup/8", "value lookup, depth 8", 1, "ns"),
    ("value_lookup/64", "value lookup, depth 64", 1, "ns"),
    ("value_lookup_mixed/1", "value lookup, mixed chain depth 1", 1, "ns"),
    ("value_lookup_mixed/8", "value lookup, mixed chain depth 8", 1, "ns"),
    ("value_lookup_mixed/64", "value lookup, mixed chain depth 64", 1, "ns"),
    ("with_value/1", "with_value + drop on depth 1", 1, "ns"),
    ("with_value/8", "with_value + drop on depth 8", 1, "ns"),
    ("with_value/64", "with_value + drop on depth 64", 1, "ns"),
    ("with_value_mixed/1", "with_value + drop on mixed depth 1", 1, "ns"),
    ("with_value_mixed/8", "with_value + drop on mixed depth 8", 1, "ns"),
    ("with_value_mixed/64", "with_value + drop on mixed depth 64", 1, "ns"),
    ("tree_cancel/flat1000", "cancel tree 1 x 1,000, per node", 1000, "ns"),
    ("tree_cancel/fanout10x3", "cancel tree 10 x 10 x 10, per node", 1110, "ns"),
    ("tree_full/flat1000", "build + cancel + drop 1 x 1,000, per node", 1000, "ns"),
    ("tree_full/fanout10x3", "build + cancel + drop 10 x 10 x 10, per node", 1110, "ns"),
    ("request", "request (timeout, 2 values, 3 sub-tasks x 10 checks)", 1, "ns"),
    ("contended", "contended: 2 threads, 1 op each (wall)", 1, "ns"),
    ("contended_shared", "contended, ctxcore's root made with `with_cancel_shared` (wall)", 1, "ns"),
    ("contended_separate", "2 threads, each under a root of its own (nothing shared) (wall)", 1, "ns"),
    ("wake/threads64", "wake 64 blocked threads (Go: goroutines)", 1000, "µs"),
    ("wake/futures1000", "wake 1,000 pending futures (Go: goroutines)", 1000, "µs"),
    ("advance_1ms", "manual clock: advance 1 ms, nothing due", 1, "ns"),
    ("advance_1year", "manual clock: advance a year, nothing due", 1, "ns"),
    ("advance_1ms_100k_pending", "manual clock: advance 1 ms, 100,000 deadlines pending", 1, "ns"),
    ("advance_fire_one", "manual clock: 1 ms deadline + the advance that fires it + drop", 1, "ns"),
]


def split_id(full_id):
    """'value_lookup/ctxcore/8' -> ('value_lookup/8', 'ctxcore')."""
    parts = full_id.split("/")
    peers = [p for p in parts if p in RUST_PEERS]
    if len(peers) != 1:
        return None
    rest = [p for p in parts if p not in RUST_PEERS]
    return "/".join(rest), peers[0]


def load_criterion(root):
    res = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        key = split_id(bench["full_id"])
        if key is None:
            continue
        res[key] = est["median"]["point_estimate"]
    return res


def load_lines(path, results, allocs):
    if not path or not os.path.exists(path):
        return None
    version = None
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "RESULT" and len(parts) == 4:
                results[(parts[1], parts[2])] = float(parts[3])
            elif parts[0] == "ALLOC" and len(parts) >= 4:
                fields = dict(p.split("=", 1) for p in parts[3:] if "=" in p)
                allocs[(parts[1], parts[2])] = fields
            elif parts[0] == "GOVERSION":
                version = parts[1]
    return version


def fmt(v):
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}x"


def value(results, wid, peer, div=1):
    v = results.get((wid, peer))
    return None if v is None else v / div


def targets(results, allocs, memory):
    """The performance goals (round 2): (workload, target, measured, met)."""
    out = []

    def t(name, text, measured, ok):
        out.append((name, text, measured, ok))

    c = lambda w, p, d=1: value(results, w, p, d)  # noqa: E731
    floor = c("check", "atomicbool")
    r1 = ratio(c("check", "ctxcore"), floor)
    t("check", "≤ 1.5x the AtomicBool floor", fmt_ratio(r1), r1 is not None and r1 <= 1.5)
    r2 = ratio(c("check", "ctxcore"), c("check", "go"))
    t("check", "≤ 0.2x Go (`select` on `Done()`)", fmt_ratio(r2), r2 is not None and r2 <= 0.2)

    for peer in ("mutex", "tokio-util", "go"):
        r = ratio(c("wake/threads64", "ctxcore"), c("wake/threads64", peer))
        t("wake 64 threads", f"faster than {PEER_TITLES[peer]}", fmt_ratio(r),
          r is not None and r < 1)
    for peer in ("mutex", "tokio-util", "go"):
        r = ratio(c("wake/futures1000", "ctxcore"), c("wake/futures1000", peer))
        t("wake 1,000 futures", f"≤ {PEER_TITLES[peer]}", fmt_ratio(r),
          r is not None and r <= 1)

    ours = c("contended_shared", "ctxcore") or c("contended", "ctxcore")
    r = ratio(ours, c("child", "ctxcore"))
    t("shared root, 2 threads (`with_cancel_shared`)", "≤ 1.3x the one-thread child",
      fmt_ratio(r), r is not None and r <= 1.3)
    r = ratio(ours, c("contended_separate", "ctxcore"))
    t("shared root, 2 threads (`with_cancel_shared`)",
      "≤ 1.3x two threads under roots of their own (nothing shared: this machine's floor)",
      fmt_ratio(r), r is not None and r <= 1.3)
    for peer in ("mutex", "tokio-util", "go"):
        r = ratio(ours, c("contended", peer))
        t("shared root, 2 threads (`with_cancel_shared`)", f"ahead of {PEER_TITLES[peer]}",
          fmt_ratio(r), r is not None and r < 1)

    for peer, lim in (("tokio-util", 0.8), ("go", 0.4)):
        r = ratio(c("child", "ctxcore"), c("child", peer))
        t("child", f"≤ {lim}x {PEER_TITLES[peer]}", fmt_ratio(r), r is not None and r <= lim)
    r = ratio(c("timeout_child", "ctxcore"), c("timeout_child", "go"))
    t("timeout child", "≤ 0.3x Go", fmt_ratio(r), r is not None and r <= 0.3)
    a = allocs.get(("timeout_child", "ctxcore"))
    child = allocs.get(("child", "ctxcore"))
    if a:
        # One allocation: a mean of one per operation, no more bytes than the plain child
        # (its node), and no larger maximum than the plain child's (whose rare second
        # allocation is crossbeam-epoch's sealed bag, one per 2,048 entries retired).
        ok = (float(a["thread_mean"]) <= 1.005
              and child is not None
              and float(a["bytes_mean"]) <= float(child["bytes_mean"]) + 1
              and int(a["thread_max"]) <= int(child["thread_max"]))
        t("timeout child", "1 allocation", f"mean {a['thread_mean']} ({a['thread_min']}.."
          f"{a['thread_max']}; the plain child: {child['thread_min'] if child else '?'}.."
          f"{child['thread_max'] if child else '?'}), {a['bytes_mean']} B", ok)

    for shape, title in (("", "64 distinct types"), ("_mixed", "mixed chain")):
        w = f"value_lookup{shape}"
        r1 = ratio(c(f"{w}/64", "ctxcore"), c(f"{w}/1", "ctxcore"))
        t(f"values ({title})", "lookup at depth 64 ≤ 1.5x depth 1", fmt_ratio(r1),
          r1 is not None and r1 <= 1.5)
        rs = [ratio(c(f"with_value{shape}/{d}", "ctxcore"), c(f"with_value{shape}/{d}", "go"))
              for d in (1, 8, 64)]
        shown = ", ".join(fmt_ratio(r) for r in rs)
        t(f"values ({title})", "with_value + drop ≤ Go at depth 1, 8, 64", shown,
          all(r is not None and r <= 1 for r in rs))

    for key, title, lim in (("cancellable child", "cancellable child", 96),
                            ("deadline child", "child with a deadline", 160),
                            ("with_value with 4 types visible", "with_value, 4 types visible", 96),
                            ("request", "request: deadline + 2 values", 400)):
        b = memory.get(key)
        t(f"memory: {title}", f"≤ {lim} B per live context",
          "not measured" if b is None else f"{b:.1f} B", b is not None and b <= lim)
    return out


def print_tables(results, allocs, memory, go_version, cpu, out):
    w = out.write
    w(f"CPU: {cpu or 'not given'}. Medians of one run; time per operation (trees: per node; contended: wall time of one "
      "operation on each of 2 threads; wake: cancel to last waiter running, µs). "
      "Ratios are ctxcore / peer: below 1 means ctxcore is faster.\n\n")
    w("| workload | ctxcore | mutex baseline | tokio-util | Go | ctxcore/mutex "
      "| ctxcore/tokio-util | ctxcore/Go |\n")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    for wid, title, div, unit in ROWS:
        vals = [value(results, wid, p, div) for p in PEERS]
        if all(v is None for v in vals):
            continue
        cells = [fmt(v) for v in vals]
        ratios = [fmt_ratio(ratio(vals[0], vals[i])) for i in (1, 2, 3)]
        w(f"| {title} ({unit}) | " + " | ".join(cells + ratios) + " |\n")
    floor = value(results, "check", "atomicbool")
    gofloor = value(results, "check_atomic", "go")
    goerr = value(results, "check_err", "go")
    w("\nFloors and variants: Rust `AtomicBool::load(Acquire)` "
      f"{fmt(floor)} ns (through an opaque reference per call, as *check*), "
      f"{fmt(value(results, 'check_hoisted', 'atomicbool'))} ns (in the *hot loop* shape); Go `atomic.LoadInt32` {fmt(gofloor)} ns; Go `ctx.Err() != nil` "
      f"{fmt(goerr)} ns (the Go column of *check* is `select {{ case <-ctx.Done(): default: }}`, "
      "Go's faster check). tokio-util has no deadlines and no values: its cells for those "
      f"workloads are empty. Go: {go_version or 'not run'}.\n\n")

    w("### Targets\n\n| workload | target | measured | verdict |\n| --- | --- | --- | --- |\n")
    for name, text, measured, ok in targets(results, allocs, memory):
        w(f"| {name} | {text} | {measured} | {'met' if ok else '**missed**'} |\n")

    w("\n### Allocations per operation\n\n"
      "Calling thread: mean (min..max over single operations); process-wide mean; bytes "
      "requested per operation. Go: `runtime.MemStats.Mallocs`, process-wide.\n\n")
    w("| workload | ctxcore | mutex baseline | tokio-util | Go |\n| --- | --- | --- | --- | --- |\n")
    for wid in ("check", "child", "timeout_child", "with_value", "request"):
        cells = []
        for p in PEERS:
            a = allocs.get((wid, p))
            if not a:
                cells.append("—")
            elif p == "go":
                cells.append(f"{float(a['global_mean']):.2f} ({float(a['bytes_mean']):.0f} B)")
            else:
                cells.append(
                    f"{float(a['thread_mean']):.2f} ({a['thread_min']}..{a['thread_max']}); "
                    f"global {float(a['global_mean']):.2f}; {float(a['bytes_mean']):.0f} B")
        w(f"| {wid} | " + " | ".join(cells) + " |\n")


COLORS = {"ctxcore": "#1b9e77", "mutex": "#7570b3", "tokio-util": "#d95f02", "go": "#4c8dbd"}


def svg_chart(results, path):
    """Grouped horizontal bars: each peer's time relative to Go's (log scale)."""
    rows = []
    for wid, title, div, unit in ROWS:
        ref = value(results, wid, "go", div)
        if ref is None:
            continue
        bars = [(p, value(results, wid, p, div)) for p in PEERS]
        bars = [(p, v) for p, v in bars if v is not None]
        rows.append((title, unit, ref, bars))
    lo, hi = -2.0, 2.0  # log10 range of relative time: 0.01x .. 100x
    left, width, bar_h, gap, top = 330, 520, 9, 10, 60
    height = top + sum(len(b) * bar_h + gap for _, _, _, b in rows) + 60
    x = lambda r: left + (min(max(math.log10(r), lo), hi) - lo) / (hi - lo) * width  # noqa
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace("`", "")  # noqa
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" '
         f'height="{height}" font-family="sans-serif" font-size="11">',
         '<rect width="100%" height="100%" fill="white"/>',
         f'<text x="10" y="20" font-size="14" font-weight="bold">ctxcore and peers: time '
         f'relative to Go\'s context (log scale, lower is better)</text>']
    lx = 10
    for p in PEERS:
        o.append(f'<rect x="{lx}" y="32" width="12" height="10" fill="{COLORS[p]}"/>'
                 f'<text x="{lx + 16}" y="41">{esc(PEER_TITLES[p])}</text>')
        lx += 130
    for k in range(int(lo), int(hi) + 1):
        gx = x(10.0 ** k)
        o.append(f'<line x1="{gx:.1f}" y1="{top - 6}" x2="{gx:.1f}" y2="{height - 45}" '
                 f'stroke="#ccc"/><text x="{gx:.1f}" y="{height - 32}" text-anchor="middle">'
                 f'{10.0 ** k:g}x</text>')
    y = top
    for title, unit, ref, bars in rows:
        mid = y + len(bars) * bar_h / 2
        o.append(f'<text x="{left - 6}" y="{mid + 4:.1f}" text-anchor="end">{esc(title)}</text>')
        for p, v in bars:
            r = v / ref
            o.append(f'<rect x="{left}" y="{y}" width="{max(x(r) - left, 1):.1f}" '
                     f'height="{bar_h - 1}" fill="{COLORS[p]}"/>'
                     f'<text x="{max(x(r), left) + 3:.1f}" y="{y + bar_h - 1}" font-size="8">'
                     f'{fmt(v)} {unit}</text>')
            y += bar_h
        y += gap
    o.append(f'<text x="{left}" y="{height - 12}" fill="#555">Go = 1x. Bars are medians of '
             'one run of benches/compare.sh; workloads Go does not run are left out.</text>')
    o.append("</svg>")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--criterion", default="target/criterion")
    ap.add_argument("--go", help="output of the Go peer")
    ap.add_argument("--allocs", help="output of `cargo bench --bench allocs`")
    ap.add_argument("--memory", help="output of `cargo test --release --test memory -- --nocapture`")
    ap.add_argument("--cpu", help="the CPU model, printed with the table")
    ap.add_argument("--svg", help="write the chart here")
    ap.add_argument("--rust-out", help="write the Rust medians as RESULT lines here")
    args = ap.parse_args()

    results = load_criterion(args.criterion)
    allocs = {}
    if args.rust_out:
        with open(args.rust_out, "w") as f:
            for (wid, peer), ns in sorted(results.items()):
                f.write(f"RESULT {wid} {peer} {ns:.3f}\n")
    load_lines(args.allocs, {}, allocs)
    go_version = load_lines(args.go, results, allocs)
    if not results:
        sys.exit("no criterion results under " + args.criterion)
    memory = {}
    if args.memory:
        for line in open(args.memory):
            m = re.match(r"^\.*(.*): ([0-9.]+) B$", line.strip())
            if m:
                memory[m.group(1)] = float(m.group(2))
    print_tables(results, allocs, memory, go_version, args.cpu, sys.stdout)
    if memory:
        print("\n### Heap bytes per live context (tests/memory.rs, 100,000 kept alive)\n")
        print("| context | bytes |\n| --- | ---: |")
        for k, v in memory.items():
            print(f"| {k} | {v:.1f} |")
    if args.svg:
        svg_chart(results, args.svg)


if __name__ == "__main__":
    main()
