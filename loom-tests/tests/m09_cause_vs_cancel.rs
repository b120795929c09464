//! Model 9: `cancel_with_cause` racing `cancel`, with a third thread reading: `err()` and
//! `cause()` agree with the winner and never change once seen (a reader that sees done sees
//! the final cause), a child inherits the same cause, and each cause is dropped once.
//!
//! Injected bug it caught: publishing the cause with a second atomic step after DONE
//! (CAS the flags, then `fetch_or` the cause pointer): a reader saw `Canceled` as the cause
//! and then the given cause.
#![cfg(loom)]

use ctxcore::{Context, Error};
use ctxcore_loom_tests::{cause_name, dropped, model, Drops, Named};
use loom::thread;
use std::sync::Arc;

#[test]
fn cause_racing_cancel_agrees_with_the_winner() {
    model(|| {
        let drops = Drops::default();
        let (ctx, handle) = Context::background().with_cancel();
        let (child, _child_handle) = ctx.with_cancel();
        let handle = Arc::new(handle);
        let h = handle.clone();
        let token = drops.token();
        let with_cause = thread::spawn(move || h.cancel_with_cause(Named("given", token)));
        let c = ctx.clone();
        // The reader reads the cause first, then err (two loads): a cause seen implies done.
        let reader = thread::spawn(move || {
            let first = cause_name(&c);
            let first = (c.err(), first);
            let second = cause_name(&c);
            let second = (c.err(), second);
            (first, second)
        });
        handle.cancel();
        with_cause.join().unwrap();
        let (first, second) = reader.join().unwrap();

        let end = (ctx.err(), cause_name(&ctx));
        assert_eq!(end.0, Some(Error::Canceled));
        assert!(matches!(
            end.1.as_deref(),
            Some("given" | "context canceled")
        ));
        for seen in [first, second] {
            if seen.1.is_some() {
                assert_eq!(
                    seen, end,
                    "a reader saw another cause (or not done after it)"
                );
            }
        }
        assert_eq!(
            cause_name(&child),
            end.1,
            "the child inherits the winner's cause"
        );
        drop((ctx, child, _child_handle, handle));
        vec![dropped(&drops, 1, "the given cause")]
    });
}
