//! A cancellable node: its state word, its listener list, its deadline, and how a child is
//! derived from a parent.
//!
//! A node is the `Node` variant of a list [`Entry`]: one allocation is at once the child's
//! state and its element in the parent's listener list (intrusive), which is how
//! `with_cancel` stays at one allocation.
//!
//! Who holds a count on a node (see `list.rs` invariant 5): every `Context` clone and the
//! `CancelHandle`, each child node linked under it, each pending `after_func` callback, and
//! each waiting future or thread (through its `Context`). An armed timer holds only the
//! TIMER claim (invariant 7), so a deadline alone keeps nothing. When the count reaches zero
//! the node disarms its timer, leaves its parent's list and gives back its count on the
//! parent; a chain of any depth unwinds in `list::release`'s loop.
//!
//! What can still cancel a node, its *sources* (`inert.rs`): its armed handle, its pending
//! timer, and a parent that can itself still be done. When the last goes, the node can
//! never be done and behaves as `background()` (behaviour 14).

use crate::cancel::cancel;
use crate::clock::Queue;
use crate::error::Error;
use crate::inert;
use crate::list::{self, Entry, Kind, Listeners};
use crate::sleep::Sleepers;
use crate::state::{self, State};
use crate::sync::{AtomicU8, Ordering};
use crate::timer::{self, TimerEntry};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Instant;

/// The cancellation part of a context.
#[derive(Debug)]
pub(crate) struct Node {
    /// The state word, which is also the head of the listener list (`state.rs`).
    pub(crate) state: State,
    /// Sweep bookkeeping of the list of children, waiters and callbacks (`list.rs`);
    /// the list's head is the state word.
    pub(crate) listeners: Listeners,
    /// The effective deadline: the earlier of the parent's and the node's own.
    pub(crate) deadline: Option<Instant>,
    /// The node's armed timer, or null. Set before the node is shared, never changed.
    pub(crate) timer: *const TimerEntry,
    /// What can still cancel the node besides its timer (`inert::HANDLE`,
    /// `inert::PARENT`); a node with a timer never becomes inert while live.
    pub(crate) sources: AtomicU8,
    /// Threads blocked in `wait()` on this node (`sleep.rs`); fits in the padding after
    /// `sources`, so the node does not grow.
    pub(crate) sleepers: Sleepers,
}

// The memory target of a cancellable child is 96 bytes; its entry is 72.
#[cfg(all(target_os = "linux", target_pointer_width = "64", not(loom)))]
const _: () = assert!(std::mem::size_of::<Entry>() == 72);

impl Node {
    /// A live node with no timer, cancelled by its handle alone.
    pub(crate) fn root_child(deadline: Option<Instant>) -> Node {
        Node {
            state: State::new(),
            listeners: Listeners::new(),
            deadline,
            timer: std::ptr::null(),
            sources: AtomicU8::new(inert::HANDLE),
            sleepers: Sleepers::new(),
        }
    }

    /// A node born done with `word` (owned by the node from now on).
    fn born_done(word: usize, deadline: Option<Instant>) -> Node {
        Node {
            state: State::born(word),
            listeners: Listeners::new(),
            deadline,
            timer: std::ptr::null(),
            sources: AtomicU8::new(0),
            sleepers: Sleepers::new(),
        }
    }

    /// True once the node is done: one Acquire load.
    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        state::is_done(self.state.load())
    }
}

impl Node {
    /// Gives back the node's count on its timer entry. Called once, when the node is
    /// finalized (not when the epoch frees its memory, which may be much later): after
    /// finalization nobody cancels the node, so nobody reads `timer` again.
    #[inline]
    pub(crate) fn release_timer(&self) {
        if !self.timer.is_null() {
            // SAFETY: the node owns one count of its timer entry, given back exactly here.
            unsafe { timer::release(self.timer) };
        }
    }
}

/// One counted reference to a node entry.
#[derive(Debug)]
pub(crate) struct NodeRef(NonNull<Entry>);

// SAFETY: a node is only accessed through atomics and fields that never change after it is
// shared; its count is atomic. Sending or sharing the reference across threads is sound.
unsafe impl Send for NodeRef {}
// SAFETY: as above: `&NodeRef` only reaches atomics and immutable fields.
unsafe impl Sync for NodeRef {}

impl NodeRef {
    /// Wraps one counted reference.
    ///
    /// # Safety
    ///
    /// `e` is a live node entry and the caller hands over one count it owns.
    pub(crate) unsafe fn from_raw(e: *const Entry) -> NodeRef {
        // SAFETY: the caller guarantees `e` is a live entry, hence non-null.
        NodeRef(unsafe { NonNull::new_unchecked(e as *mut Entry) })
    }

    /// The entry's address.
    #[inline]
    pub(crate) fn as_ptr(&self) -> *const Entry {
        self.0.as_ptr()
    }

    /// The entry.
    #[inline]
    pub(crate) fn entry(&self) -> &Entry {
        // SAFETY: our count keeps the entry alive (list.rs invariant 4).
        unsafe { self.0.as_ref() }
    }

    /// The node.
    #[inline]
    pub(crate) fn node(&self) -> &Node {
        self.entry().node()
    }

    /// Cancels the node with `reason` and `cause`; false if it was already done.
    pub(crate) fn cancel(&self, reason: Error, cause: Option<crate::error::Cause>) -> bool {
        // Done and walked already (a second cancel, or a handle dropped after its cancel):
        // nothing to win and nothing to wait for. The Acquire load pairs with the winner's
        // `mark_walked`, so every descendant's DONE is visible when we return (behaviour
        // 2), as after `cancel`'s own wait.
        if state::is_walked_done(self.node().state.load()) {
            return false;
        }
        cancel(self.as_ptr(), state::done_word(reason, cause))
    }
}

impl Clone for NodeRef {
    #[inline]
    fn clone(&self) -> Self {
        self.entry().acquire();
        NodeRef(self.0)
    }
}

impl Drop for NodeRef {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own one count and give it up; the entry is live until then.
        unsafe { list::release(self.as_ptr()) }
    }
}

/// Derives a cancellable node under `parent` (`None`: a parent that can never be done, so
/// the node registers nowhere), with its own deadline `own` if any. Returns two counted
/// references: one for the `Context`, one for the `CancelHandle`.
///
/// `clock` measures and fires the node's own deadline (`None`: the system clock); `now` is
/// its time if the caller has read it already (`with_timeout`), so it is read once.
pub(crate) fn derive(
    parent: Option<&NodeRef>,
    own: Option<Instant>,
    clock: Option<&Arc<Queue>>,
    now: Option<Instant>,
) -> (NodeRef, NodeRef) {
    let e = derive_entry(parent, own, clock, now, true);
    // SAFETY: `e` is live and its two counts are these two references.
    unsafe { (NodeRef::from_raw(e), NodeRef::from_raw(e)) }
}

/// Derives a *stripe* of `parent` (`stripe.rs`): a node with no handle, no deadline of its
/// own and one count, cancelled only through its parent. Its only source is PARENT, so it
/// becomes never-done with its parent.
pub(crate) fn derive_stripe(parent: &NodeRef) -> NodeRef {
    let e = derive_entry(Some(parent), None, None, None, false);
    // SAFETY: `e` is live and holds one count, this reference.
    unsafe { NodeRef::from_raw(e) }
}

/// The node entry of [`derive`] (`handle`: two counts and the HANDLE source) or of
/// [`derive_stripe`] (one count, no HANDLE).
fn derive_entry(
    parent: Option<&NodeRef>,
    own: Option<Instant>,
    clock: Option<&Arc<Queue>>,
    now: Option<Instant>,
    handle: bool,
) -> *const Entry {
    let count = if handle { 2 } else { 1 };
    let mut parent_word = 0;
    // A parent that can never be done is no parent at all: register nowhere (behaviour 14).
    let parent = parent.filter(|p| {
        parent_word = p.node().state.load();
        state::is_open(parent_word) || state::is_done(parent_word)
    });
    let parent_deadline = parent.and_then(|p| p.node().deadline);
    // A child whose parent's deadline comes first arms nothing.
    let (deadline, arm) = match (parent_deadline, own) {
        (Some(p), Some(d)) if p <= d => (Some(p), None),
        (_, Some(d)) => (Some(d), Some(d)),
        (p, None) => (p, None),
    };
    if parent.is_some() && state::is_done(parent_word) {
        // Behaviour 3: born done with the parent's error and cause.
        return born(
            Node::born_done(state::inherit(parent_word), deadline),
            count,
        );
    }
    if let Some(d) = arm {
        if d <= now.unwrap_or_else(|| crate::clock::now_on(clock)) {
            // Behaviour 5: a deadline already past, no timer armed.
            return born(
                Node::born_done(state::done_word(Error::DeadlineExceeded, None), deadline),
                count,
            );
        }
    }
    if !handle && parent.is_none() {
        // A stripe of a parent that can never be done has no source at all: never-done
        // from birth (behaviour 14).
        return born(Node::born_done(state::NEVER, deadline), count);
    }
    let owner = parent.map_or(std::ptr::null(), NodeRef::as_ptr);
    let sources = match (handle, parent.is_some()) {
        (true, true) => inert::HANDLE | inert::PARENT,
        (true, false) => inert::HANDLE,
        (false, _) => inert::PARENT,
    };
    let mut node = Node {
        sources: AtomicU8::new(sources),
        ..Node::root_child(deadline)
    };
    let timer = arm.map(|d| TimerEntry::new(d, clock.cloned()));
    if let Some(t) = timer {
        node.timer = t;
    }
    // Two counts (the context and the handle; a stripe has one); a timer gives the entry
    // TIMER instead.
    let e = Entry::alloc(Kind::Node(node), count, owner);
    if let Some(t) = timer {
        // Arming before the node enters its parent's list keeps "arm" before any "disarm"
        // in the driver's inbox.
        // SAFETY: `t` is fresh and unpublished; `e` is live and holds `t`.
        unsafe { timer::arm(t, e) };
    }
    if let Some(p) = parent {
        // Invariant 5 of list.rs: a linked child holds a count on its parent.
        p.entry().acquire();
        // SAFETY: `e` is live, owned by `p`, in no list yet.
        if let Err(word) = unsafe { p.node().push(e) } {
            // SAFETY: `e` is live: we hold its two counts.
            let child = unsafe { &*e }.node();
            if state::is_done(word) {
                // The parent was cancelled between our check and the push: born done
                // after all.
                cancel(e, state::inherit(word));
            } else if handle {
                // The parent became never-done meanwhile: it is no source of ours. Nobody
                // has seen `sources` yet (the timer driver does not read it).
                child.sources.fetch_and(!inert::PARENT, Ordering::Relaxed);
            } else {
                // A stripe whose parent became never-done: PARENT was its only source.
                // SAFETY: we hold its count, and PARENT is set and ours to clear.
                unsafe { inert::remove_source(e, inert::PARENT) };
            }
            // SAFETY: `e` holds LINKED but is in no list; we hold its counts, so this does
            // not finalize it. It keeps its count on the parent until it dies (invariant 5).
            unsafe { list::unlink_unpushed(e) };
        }
    }
    e
}

/// A node entry born closed (done or never-done), with `count` references.
fn born(node: Node, count: usize) -> *const Entry {
    Entry::alloc(Kind::Node(node), count, std::ptr::null())
}
