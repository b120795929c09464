#!/usr/bin/env bash
# Locked instructions per operation, counted exactly: a small program (public API only)
# runs each operation many times under callgrind (--dump-instr=yes, collection switched
# on only inside the measured function), and `locked.py` matches every executed address
# against the disassembly: a `lock`-prefixed instruction, an `xchg` with memory or an
# `mfence` counts. Prints the count per operation and where each comes from.
#
#   benches/engine/locked.sh [REV]      # REV: also count that commit (a worktree), before
#
# Operations: child (with_cancel + cancel + drop, 200,000 times), timeout (with_timeout
# 1 h + cancel + drop, 200,000 times), wake (1,000 pending done() futures woken by one
# cancel, 20 times; per future). Needs valgrind (apt-get install valgrind).
#
# Under callgrind one thread runs at a time: in some runs the timer thread seldom gets to
# sweep, so every arm finds it idle and unparks it (one more `xchg` per timeout cycle, in
# `submit_arm`); in others 3% of the arms do. Natively it is rare: `strace -f -c -e
# trace=futex` of 1,000,000 timeout cycles counted 70 futex calls.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/engine/program.sh
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
root="$PWD"
work="$root/target/locked"
rm -rf "$work"
mkdir -p "$work"

# prog DIR CRATE_PATH: the counting program at DIR, on ctxcore at CRATE_PATH.
prog() {
  program "$1" "$2" locked <<'RUST'
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::time::Duration;

struct Counting(AtomicUsize);
impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[inline(never)]
fn measured_cycle(root: &ctxcore::Context, timeout: bool) -> bool {
    let (c, h) = if timeout {
        root.with_timeout(Duration::from_secs(3600))
    } else {
        root.with_cancel()
    };
    h.cancel();
    c.is_done()
}

#[inline(never)]
fn measured_cancel(h: &ctxcore::CancelHandle) {
    h.cancel();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().expect("kind: child, timeout or wake");
    let n: usize = args.next().and_then(|s| s.parse().ok()).expect("count");
    let (root, _root_cancel) = ctxcore::Context::background().with_cancel();
    match kind.as_str() {
        "child" | "timeout" => {
            let done = (0..n)
                .filter(|_| measured_cycle(black_box(&root), kind == "timeout"))
                .count();
            assert_eq!(done, n, "every derived context is done after its cancel");
        }
        "wake" => {
            let counter = Arc::new(Counting(AtomicUsize::new(0)));
            let waker = Waker::from(counter.clone());
            let mut cx = std::task::Context::from_waker(&waker);
            for round in 0..n {
                let (ctx, h) = root.with_cancel();
                let mut futs: Vec<Pin<Box<_>>> = (0..1000).map(|_| Box::pin(ctx.done())).collect();
                for f in &mut futs {
                    assert!(f.as_mut().poll(&mut cx).is_pending());
                }
                measured_cancel(&h);
                assert_eq!(counter.0.load(Ordering::SeqCst), 1000 * (round + 1));
                for f in &mut futs {
                    assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(()));
                }
            }
        }
        _ => panic!("kind: child, timeout or wake"),
    }
}
RUST
}

# count LABEL BIN: every operation's locked instructions.
count() {
  for spec in "child 200000 measured_cycle 200000" "timeout 200000 measured_cycle 200000" \
              "wake 20 measured_cancel 20000"; do
    set -- $spec "$@"
    local kind=$1 n=$2 fn=$3 per=$4 label=$5 bin=$6
    shift 4
    local out="$work/cg.$label.$kind"
    valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no \
      --toggle-collect="*$fn*" --callgrind-out-file="$out" "$bin" "$kind" "$n" >/dev/null 2>&1
    echo "== $label: $kind (per $([ "$kind" = wake ] && echo future || echo cycle))"
    python3 benches/engine/locked.py "$out" "$per"
  done
}

if [ $# -ge 1 ]; then
  old="$work/before-tree"
  git worktree add -f "$old" "$1" >/dev/null 2>&1
  trap 'git worktree remove --force "$old" >/dev/null 2>&1 || true' EXIT
  prog "$work/before" "$old"
  count "before ($1)" "$work/before/target/release/locked"
fi
prog "$work/after" "$root"
count "this tree" "$work/after/target/release/locked"
