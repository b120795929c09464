//! Model 11: `cancel(A)` racing `cancel(B)` one level down, on background → A → B → C
//! (C's handle disarmed): when either `cancel()` returns, C is done (behaviour 2).
//!
//! Bug it catches (seen on 8acaa13, and the injected mutant: `cancel::walk` skipping a
//! child found done without waiting for its WALKED): A's walk met B already done by the
//! other thread, skipped its subtree and returned while C was still live.
#![cfg(loom)]

use ctxcore::Context;
use ctxcore_loom_tests::model;
use loom::thread;

#[test]
fn cancel_returns_after_a_grandchild_walked_elsewhere() {
    model(|| {
        let (a, ha) = Context::background().with_cancel();
        let (b, hb) = a.with_cancel();
        let (c, hc) = b.with_cancel();
        hc.disarm();
        let c2 = c.clone();
        let t = thread::spawn(move || {
            hb.cancel();
            assert!(c2.is_done(), "B's cancel returned before C was done");
        });
        ha.cancel();
        assert!(c.is_done(), "A's cancel returned before C was done");
        t.join().unwrap();
        drop((a, b, c));
        vec![]
    });
}
