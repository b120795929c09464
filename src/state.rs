//! The state word: one `AtomicUsize` per cancellable node that is at once its cancellation
//! state and the head of its listener list.
//!
//! ```text
//!  live word:  address of the first list entry (8-aligned), or 0 for an empty list;
//!              bits 0..3 are clear
//!
//!  never word: exactly NEVER (bit 2 alone): the context can never be done any more
//!              (every source of a cancel is gone: behaviour 14); its list is closed
//!
//!  done word:  bit(s)  name       meaning
//!              0       DONE       the context is done; never cleared
//!              1       DEADLINE   the reason: set = DeadlineExceeded, clear = Canceled
//!              2       WALKED     the winning canceller has made every descendant done
//!              3..     CAUSE      address of an `Arc<Cause>` (8-aligned), or 0 for "the
//!                                 reason itself"
//! ```
//!
//! Allowed transitions, and nothing else:
//!
//! ```text
//!  live h --CAS by a pusher (list.rs)--> live h'                   (any number of times)
//!  live h --CAS by the first canceller--> DONE | reason | cause    (exactly once)
//!  DONE | ... --store by that canceller--> DONE | ... | WALKED     (exactly once)
//!  live h --CAS by the remover of the last source (inert.rs)--> NEVER   (at most once,
//!                                                      and never together with DONE)
//! ```
//!
//! DONE and NEVER exclude each other: a node goes NEVER only when nothing can cancel it
//! any more (no armed handle, no pending timer, no parent that can be done: `inert.rs`),
//! so no canceller is left to race the CAS; and a done node is never live again. Both
//! close the list: a word is *open* (a list head) only while [`is_open`] holds.
//!
//! Making a node done and closing its list are one and the same CAS: it publishes the
//! reason and cause, and it detaches the whole list for the winner to walk (a push that
//! comes later sees DONE and fails). So a reader that sees DONE sees the cause, a cancel is
//! one locked instruction, and no push can slip in between "done" and "closed". This is
//! also why the crate needs no arc-swap for the cause.
//!
//! Orderings: the winning CAS is `AcqRel` (Release publishes the cause's contents and what
//! the canceller wrote before; Acquire makes the detached entries, pushed with Release,
//! visible to the walk). Every observer loads with `Acquire`.
//!
//! A done word owns one strong count of the cause `Arc`; `Drop` gives it back.

use crate::error::{Cause, Error};
use crate::sync::{backoff, AtomicUsize, Ordering};
use std::sync::Arc;

/// The context is done.
pub(crate) const DONE: usize = 1;
/// The reason is `DeadlineExceeded` (with DONE).
pub(crate) const DEADLINE: usize = 1 << 1;
/// The winning canceller finished propagating to every descendant (with DONE).
pub(crate) const WALKED: usize = 1 << 2;
/// The flag bits; the rest of the word is the cause pointer.
const FLAGS: usize = DONE | DEADLINE | WALKED;
/// The word of a node that can never be done (WALKED's bit without DONE: no list head is
/// 4 modulo 8, and no done word lacks DONE).
pub(crate) const NEVER: usize = WALKED;

/// A done word for `reason` carrying `cause` (`None`: the reason is its own cause).
///
/// The returned word owns the cause's strong count: give it to [`State::try_finish`] or
/// release it with [`drop_word`].
pub(crate) fn done_word(reason: Error, cause: Option<Cause>) -> usize {
    let flags = match reason {
        Error::Canceled => DONE,
        Error::DeadlineExceeded => DONE | DEADLINE,
    };
    let ptr = match cause {
        Some(c) => Arc::into_raw(Arc::new(c)) as usize,
        None => 0,
    };
    debug_assert_eq!(ptr & FLAGS, 0, "Arc<Cause> is at least 8-aligned");
    flags | ptr
}

/// True if `word` says done.
#[inline]
pub(crate) fn is_done(word: usize) -> bool {
    word & DONE != 0
}

/// True if `word` says done and walked: the winning canceller has made every descendant
/// done (a never-done word has WALKED's bit without DONE, and is not this).
#[inline]
pub(crate) fn is_walked_done(word: usize) -> bool {
    word & (DONE | WALKED) == DONE | WALKED
}

/// True if `word` is a list head: the node is neither done nor never-done.
#[inline]
pub(crate) fn is_open(word: usize) -> bool {
    word & (DONE | NEVER) == 0
}

/// The error a done `word` stands for.
#[inline]
pub(crate) fn reason(word: usize) -> Error {
    if word & DEADLINE != 0 {
        Error::DeadlineExceeded
    } else {
        Error::Canceled
    }
}

/// The error a context with state `word` reports: `None` until done.
#[inline]
pub(crate) fn error(word: usize) -> Option<Error> {
    is_done(word).then(|| reason(word))
}

/// A copy of a done `word` for a descendant: same reason, same cause, one more strong count
/// of the cause, WALKED cleared.
pub(crate) fn inherit(word: usize) -> usize {
    let ptr = word & !FLAGS;
    if ptr != 0 {
        // SAFETY: `ptr` came from `Arc::into_raw` in `done_word` and `word` still owns a
        // strong count (the caller holds a word it read from a live node or owns), so the
        // Arc is alive; we add one count that the returned word owns.
        unsafe { Arc::increment_strong_count(ptr as *const Cause) };
    }
    word & (DONE | DEADLINE) | ptr
}

/// Gives back the cause count owned by a word that was never stored.
pub(crate) fn drop_word(word: usize) {
    let ptr = word & !FLAGS;
    if ptr != 0 {
        // SAFETY: the word owns one strong count (see `done_word` / `inherit`) and it is
        // not stored anywhere else, so this releases exactly that count.
        unsafe { Arc::decrement_strong_count(ptr as *const Cause) };
    }
}

/// The state word of one cancellable node.
#[derive(Debug)]
pub(crate) struct State(AtomicUsize);

impl State {
    /// A live state with an empty list.
    pub(crate) fn new() -> Self {
        State(AtomicUsize::new(0))
    }

    /// A state born done with `word` (which it takes ownership of). A node born done has no
    /// descendants to walk, so WALKED is set from the start.
    pub(crate) fn born(word: usize) -> Self {
        debug_assert!(is_done(word));
        State(AtomicUsize::new(word | WALKED))
    }

    /// The current word; `Acquire` pairs with the `Release` half of [`State::try_finish`].
    #[inline]
    pub(crate) fn load(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// The current word, `SeqCst`: a sleeper's read after counting itself (`sleep.rs`).
    #[inline]
    pub(crate) fn load_seqcst(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// The word as the head of the listener list (for `list.rs`).
    #[inline]
    pub(crate) fn head(&self) -> &AtomicUsize {
        &self.0
    }

    /// Makes the node done with `word` if it is still live, detaching its list: returns the
    /// live word it replaced (the first entry of the detached chain, or 0). On failure the
    /// word is given back (its cause released) and the current word is returned: a done
    /// word, or [`NEVER`] (nothing can cancel such a node, so only a defensive caller sees
    /// it).
    pub(crate) fn try_finish(&self, word: usize) -> Result<usize, usize> {
        debug_assert!(is_done(word));
        // A done node never goes back: a done word answers from the load alone (a handle
        // dropped after `cancel()` takes this path).
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            if !is_open(current) {
                drop_word(word);
                return Err(current);
            }
            // AcqRel: see the module docs; SeqCst (no dearer on x86) because the winner
            // then reads the node's sleeper count (`sleep.rs`). A failure (a push moved the
            // head) retries.
            match self
                .0
                .compare_exchange(current, word, Ordering::SeqCst, Ordering::Acquire)
            {
                Ok(chain) => return Ok(chain),
                Err(now) => current = now,
            }
        }
    }

    /// The detached chain of a node that died without being cancelled, for its finalizer
    /// (nobody else touches a dead node's list: `list.rs` invariant 6). A done or never
    /// node's list was detached by its cancel or its inert walk: nothing to take.
    pub(crate) fn take_chain(&self) -> usize {
        let w = self.0.load(Ordering::Acquire);
        if !is_open(w) {
            0
        } else {
            self.0.store(0, Ordering::Relaxed);
            w
        }
    }

    /// Sets WALKED: every descendant is done. Release pairs with [`State::wait_walked`].
    ///
    /// Only the winner of [`State::try_finish`] calls this, once, and after that CAS no
    /// other transition exists (see the table), so a plain store of `won | WALKED` is the
    /// same as a `fetch_or` and costs no locked instruction.
    pub(crate) fn mark_walked(&self, won: usize) {
        debug_assert_eq!(self.0.load(Ordering::Relaxed), won);
        self.0.store(won | WALKED, Ordering::Release);
    }

    /// Waits until the winning canceller has set WALKED.
    pub(crate) fn wait_walked(&self) {
        let mut round = 0;
        // Acquire pairs with `mark_walked`: after it, every descendant's DONE is visible.
        while self.0.load(Ordering::Acquire) & WALKED == 0 {
            backoff(round);
            round = round.saturating_add(1);
        }
    }

    /// Makes a live node never-done (`inert.rs`), detaching its list: returns the chain for
    /// the caller to walk, or `None` if the node is done (or never-done) already.
    pub(crate) fn try_never(&self) -> Option<usize> {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            if !is_open(current) {
                return None;
            }
            // AcqRel, as for `try_finish`: Acquire makes the detached entries visible to
            // the walk; Release pairs with a pusher's Acquire failure load, so a pusher
            // that sees NEVER sees everything this thread did before.
            match self
                .0
                .compare_exchange(current, NEVER, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(chain) => return Some(chain),
                Err(now) => current = now,
            }
        }
    }

    /// The cause of a done word (`None` if live).
    pub(crate) fn cause_of(word: usize) -> Option<Cause> {
        if !is_done(word) {
            return None;
        }
        let ptr = word & !FLAGS;
        if ptr == 0 {
            return Some(reason(word).as_cause());
        }
        // SAFETY: a stored done word never changes its cause bits and owns one strong count
        // until the node drops; the caller read `word` from a node it keeps alive, so the
        // `Arc<Cause>` behind `ptr` is alive while we clone the inner `Cause`.
        let outer = unsafe { &*(ptr as *const Cause) };
        Some(outer.clone())
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let w = self.0.load(Ordering::Relaxed);
        if is_done(w) {
            drop_word(w & !WALKED);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Boom;
    impl std::fmt::Display for Boom {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("boom")
        }
    }
    impl std::error::Error for Boom {}

    #[test]
    fn words_encode_reason_and_cause() {
        let w = done_word(Error::DeadlineExceeded, None);
        assert!(is_done(w));
        assert_eq!(reason(w), Error::DeadlineExceeded);
        assert_eq!(reason(done_word(Error::Canceled, None)), Error::Canceled);
        assert!(!is_done(0));
    }

    #[test]
    fn first_finish_wins_and_keeps_its_cause() {
        let s = State::new();
        assert!(s
            .try_finish(done_word(Error::Canceled, Some(Arc::new(Boom))))
            .is_ok());
        let lost = s.try_finish(done_word(Error::DeadlineExceeded, None));
        assert!(lost.is_err());
        let w = s.load();
        assert_eq!(reason(w), Error::Canceled);
        let c = State::cause_of(w).unwrap();
        assert!(c.downcast_ref::<Boom>().is_some());
    }

    #[test]
    fn inherit_shares_the_cause() {
        let cause: Cause = Arc::new(Boom);
        let w = done_word(Error::Canceled, Some(cause.clone()));
        let child = State::born(inherit(w));
        let parent = State::born(w);
        let a = State::cause_of(parent.load()).unwrap();
        let b = State::cause_of(child.load()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        drop((parent, child, a, b));
        assert_eq!(Arc::strong_count(&cause), 1, "every count given back");
    }

    #[test]
    fn never_closes_the_list_and_excludes_done() {
        let s = State::new();
        assert!(is_open(s.load()));
        assert_eq!(s.try_never(), Some(0));
        let w = s.load();
        assert!(!is_open(w) && !is_done(w));
        assert_eq!(s.try_never(), None);
        assert_eq!(s.try_finish(done_word(Error::Canceled, None)), Err(NEVER));
        assert_eq!(s.take_chain(), 0);
        assert!(State::cause_of(s.load()).is_none());
    }

    #[test]
    fn walked_is_a_separate_step() {
        let s = State::new();
        let w = done_word(Error::Canceled, None);
        s.try_finish(w).unwrap();
        assert_eq!(s.load() & WALKED, 0);
        s.mark_walked(w);
        s.wait_walked();
        assert!(is_done(s.load()));
    }
}
