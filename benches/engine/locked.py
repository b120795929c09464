#!/usr/bin/env python3
"""Locked instructions executed, from a callgrind profile taken with --dump-instr=yes
--compress-pos=no --compress-strings=no: every address's execution count is matched
against the disassembly (objdump) of its object; an instruction with a `lock` prefix, an
`xchg` with a memory operand (implicitly locked) or an `mfence` counts."""
import re, subprocess, sys
from collections import defaultdict

def locked_addrs(obj):
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", obj], capture_output=True, text=True).stdout
    addrs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(.*)", line)
        if not m:
            continue
        ins = m.group(2).strip()
        if ins.startswith("lock ") or ins.startswith("mfence") or (ins.startswith("xchg") and "(" in ins):
            addrs[int(m.group(1), 16)] = ins
    return addrs

def main(path, per):
    counts = defaultdict(lambda: defaultdict(int))  # obj -> addr -> count
    fns = {}
    ob = fn = None
    skip = False
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("ob="):
            ob = line[3:]
        elif line.startswith("fn="):
            fn = line[3:]
        elif line.startswith("calls="):
            skip = True
        elif line.startswith("0x"):
            if skip:
                skip = False
                continue
            parts = line.split()
            a = int(parts[0], 16)
            counts[ob][a] += int(parts[-1])
            fns[(ob, a)] = fn
    total = 0
    rows = []
    for ob, m in counts.items():
        la = locked_addrs(ob)
        for a, c in m.items():
            if a in la and c:
                total += c
                rows.append((c, fns[(ob, a)], la[a]))
    rows.sort(reverse=True)
    print(f"locked instructions per operation: {total / per:.2f}")
    for c, f, ins in rows:
        if c / per >= 0.005:
            print(f"  {c / per:7.3f}  {f[:90]}  [{ins[:40]}]")

main(sys.argv[1], float(sys.argv[2]))
