//! Model 1: `cancel(parent)` racing `with_cancel(parent)`: the new child always ends done,
//! with the parent's error and cause.
//!
//! Injected bug it caught: `Node::push` without the closed (DONE head word) check: the
//! push overwrote the done word and the new child stayed live.
//!
//! Real bug it found (fixed on the earlier list design, where the head was a separate
//! atomic): `push` read the head Relaxed (first load and CAS failure), so a deriving thread
//! that found the list closed did not synchronize with the close, its next load of the
//! parent's state could still read 0, and the child was "cancelled" with word 0 and stayed
//! live. Now the head is the state word itself, so that load reads the same location and
//! sees DONE.
#![cfg(loom)]

use ctxcore::{Context, Error};
use ctxcore_loom_tests::{cause_name, dropped, model, Drops, Named};
use loom::thread;

#[test]
fn derive_racing_parent_cancel_gives_a_done_child() {
    model(|| {
        let drops = Drops::default();
        let (parent, handle) = Context::background().with_cancel();
        let p = parent.clone();
        let t = thread::spawn(move || {
            let (child, child_handle) = p.with_cancel();
            (child, child_handle)
        });
        handle.cancel_with_cause(Named("parent", drops.token()));
        let (child, child_handle) = t.join().unwrap();
        assert!(
            child.is_done(),
            "the child derived during the cancel stayed live"
        );
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(cause_name(&child).as_deref(), Some("parent"));
        drop((child, child_handle, parent, handle));
        vec![dropped(&drops, 1, "the cause")]
    });
}

/// A grandchild derived while the root of its chain is cancelled: it ends done, and so
/// does every node between.
#[test]
fn grandchild_derive_racing_root_cancel() {
    model(|| {
        let (root, handle) = Context::background().with_cancel();
        let (mid, _mid_handle) = root.with_cancel();
        let t = thread::spawn(move || {
            let (leaf, leaf_handle) = mid.with_cancel();
            (mid, leaf, leaf_handle)
        });
        handle.cancel();
        let (mid, leaf, leaf_handle) = t.join().unwrap();
        assert!(mid.is_done() && leaf.is_done(), "a descendant stayed live");
        assert_eq!(leaf.err(), Some(Error::Canceled));
        drop((leaf, leaf_handle, mid, root));
        vec![]
    });
}
