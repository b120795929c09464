//! Model 2: `cancel(parent)` racing the drop of a child (its unlink from the parent's
//! list): every entry is freed exactly once (checked by `model` after each execution),
//! and a sibling that stays is cancelled.
//!
//! Injected bug it caught: the cancel walk skipping `unlink_done` for an entry a remover
//! had already marked DELETED (assuming the remover finishes the unlink, which it cannot
//! once the list is closed): the dropped child was never freed ("live counts" failure).
//! The chain model also caught: finalizing a dead node without finalizing the dead entries
//! still marked in its own list (the grandchild leaked).
//!
//! Real bug it found on the earlier list design (fixed, then made impossible by the
//! mark-and-sweep redesign): `close_and_walk` dropped the owner count handed back by a
//! child it finalized, leaking the parent.
#![cfg(loom)]

use ctxcore::Context;
use ctxcore_loom_tests::model;
use loom::thread;

#[test]
fn child_drop_racing_parent_cancel_frees_once() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (stays, _stays_handle) = parent.with_cancel();
        let (goes, goes_handle) = parent.with_cancel();
        let t = thread::spawn(move || {
            goes_handle.disarm();
            drop(goes); // the last reference: unlinks the child from the parent's list
        });
        handle.cancel();
        assert!(stays.is_done());
        t.join().unwrap();
        drop(parent);
        vec![]
    });
}

/// A chain parent -> child -> grandchild whose two lower nodes are dropped (child first,
/// so the grandchild's release frees the child, whose finalization closes its own list)
/// while the parent is cancelled: every entry freed exactly once, a kept sibling done.
#[test]
fn chain_drop_racing_parent_cancel_frees_once() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (stays, _stays_handle) = parent.with_cancel();
        let (child, child_handle) = parent.with_cancel();
        let (grandchild, grandchild_handle) = child.with_cancel();
        let t = thread::spawn(move || {
            child_handle.disarm();
            drop(child);
            grandchild_handle.disarm();
            drop(grandchild); // the child's last count goes with the grandchild
        });
        handle.cancel();
        assert!(stays.is_done());
        t.join().unwrap();
        drop(parent);
        vec![]
    });
}
