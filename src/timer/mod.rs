//! Deadlines: one timer driver for the process.
//!
//! - [`entry`]: a timer entry and its state machine (ARMED -> FIRED or ARMED -> CANCELLED,
//!   one CAS decides), shared by the arming node and the driver.
//! - [`wheel`]: the hashed timing wheel the driver owns (1 ms ticks, O(1) insert and
//!   remove, a bitmap to find the next due slot).
//! - [`shard`]: each thread's armed deadlines that the driver has not taken yet. A thread
//!   arms and disarms in O(1) under its own shard's lock, touching no line another thread
//!   writes unless the driver is sweeping that shard at the moment.
//! - [`recycle`]: the memory of entries the driver released, reused by the next arms.
//! - [`driver`]: the lazily started background thread. It sweeps the shards into its wheel
//!   at least as often as it promised, reads "disarm" messages for the entries it took, and
//!   sleeps until the next deadline or its promise; an arm due before the promise wakes it.
//!
//! This driver serves the system clock; a manual or tokio clock fires its entries through
//! its own queue (`clock/queue.rs`), with the same entry and the same state machine.
//!
//! A node with a deadline of its own holds one timer entry (the second allocation of
//! `with_timeout`). Disarming (any cancel of the node) unlinks an entry still in its shard
//! and frees it at once; for one the driver took it sends a message so the driver drops the
//! entry from the wheel at its next turn; while it holds entries the driver turns at least
//! every [`driver::MAX_SLEEP`], so memory follows live timers, not timers ever armed.

pub(crate) mod entry;
pub(crate) mod wheel;

#[cfg(not(loom))]
pub(crate) mod driver;
pub(crate) mod recycle;
pub(crate) mod shard;

pub(crate) use entry::{disarm, disarm_last, release, TimerEntry};

use crate::list::Entry;

/// Arms `t` for node `node`: the timer now holds the count on `node` it was given.
///
/// # Safety
///
/// `t` is a fresh entry from [`TimerEntry::new`], not yet armed; `node` is live and one of
/// its counts is handed to the timer.
pub(crate) unsafe fn arm(t: *const TimerEntry, node: *const Entry) {
    // SAFETY: per the contract, `t` is unpublished, so this write races with nothing.
    unsafe { (*(t as *mut TimerEntry)).set_node(node) };
    // SAFETY: `t` is live (its counts are held by the node and the driver side).
    if let Some(q) = unsafe { &(*t).queue } {
        // SAFETY: `t` is fresh, armed once, here.
        unsafe { q.arm(t) };
        return;
    }
    #[cfg(not(loom))]
    driver::submit_arm(t);
    // Under loom there is no driver thread: the model plays it (`crate::__loom`), with or
    // without a shard.
    #[cfg(loom)]
    crate::__loom::record_armed(t);
}
