//! Each thread's spare entry memory, so that making and dropping contexts in a loop does
//! not go through the allocator for every entry.
//!
//! Dead entries reach the allocator in bursts: [`super::grave`] defers them to the epoch
//! [`super::grave::BATCH`] at a time, and the epoch runs a whole sealed bag of deferred
//! chains at once (up to 64 of them: 2,048 entries). A burst that large overflows the
//! allocator's per-thread cache and spills into its shared bins, and the next allocations
//! take its slow path (`_int_malloc` and `_int_free` were a fifth of a derive + cancel +
//! drop in a profile on an Intel Xeon). Here the thread that frees a burst keeps up to
//! [`POOL_MAX`] entries' memory (144 KiB), and [`super::Entry::alloc`] takes from it first.
//! Measured on the child bench (Intel Xeon, 2 vCPU): a pool of 128 entries changed
//! nothing (a burst spilled past it); 2,048 took the child from about 101 to 91 ns and
//! the timeout child from 188 to 161 ns.
//!
//! The memory is a [`Spares`] stack in a thread-local (`spare.rs`: a dead block, the
//! thread's alone, freed when the thread exits; memory given after that goes to the
//! allocator).

use super::Entry;
use crate::spare::Spares;
use std::alloc::{dealloc, Layout};

/// At most this many spare entries a thread keeps: one sealed bag of the epoch.
const POOL_MAX: usize = 2048;

std::thread_local! {
    static POOL: Spares<Entry> = const { Spares::new() };
}

/// Memory for one entry, if this thread has a spare: write an `Entry` into it.
#[inline]
pub(super) fn take() -> Option<*mut Entry> {
    POOL.try_with(Spares::pop).ok().flatten()
}

/// Takes the memory of a dead entry: kept as a spare, or given back to the allocator when
/// the pool is full or gone.
///
/// # Safety
///
/// `p` was allocated as a `Box<Entry>`, its fields have been dropped, and nobody else holds
/// it; it is given here once.
pub(super) unsafe fn give(p: *mut Entry) {
    // SAFETY: per the contract `p` is a dead `Box<Entry>` block, ours alone and given once
    // (`spare.rs` invariant 1).
    let kept = POOL
        .try_with(|pool| unsafe { pool.push(p, POOL_MAX) })
        .unwrap_or(false);
    if !kept {
        // SAFETY: per the contract, a `Box<Entry>` allocation whose contents are dropped.
        unsafe { dealloc(p as *mut u8, Layout::new::<Entry>()) };
    }
}
