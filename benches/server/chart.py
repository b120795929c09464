#!/usr/bin/env python3
"""Draws PERF.md's Servers chart from benches/server/run.sh's rounds (load.tsv).

    benches/server/chart.py target/server-bench/load.tsv docs/server.svg

One bar per variant: its median requests/s over the rounds, relative to the median of its
plain server (hyper or axum); one dot per round (that round's requests/s over the plain
median), so the spread of the rounds shows; a line at 0.97, behaviour 26's goal.
Standard library only.
"""
import statistics
import sys

ORDER = ["hyper", "hyper+tower", "hyper+ctx", "hyper+ctx-nodeadline",
         "axum", "axum+ctx", "axum+ctx-around"]


def load(path):
    rows = {}
    for line in open(path):
        _, variant, rps, _, _ = line.split()
        rows.setdefault(variant, []).append(float(rps))
    if not rows:
        sys.exit(f"{path}: no rounds")
    return rows


def svg(rows, title):
    med = {v: statistics.median(r) for v, r in rows.items()}
    lo, hi = 0.80, 1.05
    left, top, width, bar, gap = 190, 40, 420, 18, 10
    variants = [v for v in ORDER if v in rows]
    height = top + len(variants) * (bar + gap) + 40

    def x(ratio):
        ratio = min(max(ratio, lo), hi)
        return left + (ratio - lo) / (hi - lo) * width

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" '
         f'height="{height}" font-family="sans-serif" font-size="12">',
         f'<rect width="100%" height="100%" fill="white"/>',
         f'<text x="{left}" y="20" font-size="13">{title}</text>']
    for i, v in enumerate(variants):
        plain = med[v.split("+")[0]]
        y = top + i * (bar + gap)
        ratio = med[v] / plain
        colour = "#888" if "+" not in v or v == "hyper+tower" else "#3672b0"
        o.append(f'<text x="{left - 8}" y="{y + bar - 4}" text-anchor="end">{v}</text>')
        o.append(f'<rect x="{left}" y="{y}" width="{x(ratio) - left:.1f}" height="{bar}" '
                 f'fill="{colour}"/>')
        o.append(f'<text x="{x(ratio) + 4:.1f}" y="{y + bar - 4}">{ratio:.3f}</text>')
        for r in rows[v]:
            o.append(f'<circle cx="{x(r / plain):.1f}" cy="{y + bar / 2}" r="2.5" '
                     f'fill="black" fill-opacity="0.6"/>')
    base = top + len(variants) * (bar + gap)
    for t in (0.80, 0.85, 0.90, 0.95, 1.00, 1.05):
        o.append(f'<line x1="{x(t):.1f}" y1="{top - 6}" x2="{x(t):.1f}" y2="{base}" '
                 f'stroke="#ddd"/>')
        o.append(f'<text x="{x(t):.1f}" y="{base + 14}" text-anchor="middle">{t:.2f}</text>')
    o.append(f'<line x1="{x(0.97):.1f}" y1="{top - 6}" x2="{x(0.97):.1f}" y2="{base}" '
             f'stroke="#c33" stroke-dasharray="4 3"/>')
    o.append(f'<text x="{x(0.97):.1f}" y="{top - 10}" text-anchor="middle" fill="#c33">'
             f'goal 0.97</text>')
    o.append(f'<text x="{left}" y="{base + 30}">requests/s relative to the plain server '
             f'(bar: median; dots: rounds)</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = load(sys.argv[1])
    title = "hello-world servers under wrk: throughput with RequestContextLayer"
    with open(sys.argv[2], "w") as f:
        f.write(svg(rows, title))


if __name__ == "__main__":
    main()
