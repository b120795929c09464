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
//! # Invariants
//!
//! 1. Memory in a pool is dead: the entry's fields were dropped, nobody holds its address,
//!    and it was allocated as a `Box<Entry>` (crossbeam-epoch's `Owned::new`), so it is
//!    given back with `Entry`'s layout.
//! 2. A pool is its thread's alone (thread-local): no atomics. It is freed when the thread
//!    exits; memory given after that goes to the allocator.

use super::Entry;
use std::alloc::{dealloc, Layout};
use std::cell::Cell;
use std::ptr;

/// At most this many spare entries a thread keeps: one sealed bag of the epoch.
const POOL_MAX: usize = 2048;

/// The first word of a spare entry: the next spare.
#[repr(C)]
struct Spare {
    next: *mut Spare,
}

const _: () = assert!(std::mem::size_of::<Spare>() <= std::mem::size_of::<Entry>());
const _: () = assert!(std::mem::align_of::<Spare>() <= std::mem::align_of::<Entry>());

struct Pool {
    head: Cell<*mut Spare>,
    len: Cell<usize>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut p = self.head.replace(ptr::null_mut());
        while !p.is_null() {
            // SAFETY: a spare is dead memory of `Entry`'s layout, ours alone (invariant 1).
            unsafe {
                let next = (*p).next;
                dealloc(p as *mut u8, Layout::new::<Entry>());
                p = next;
            }
        }
    }
}

std::thread_local! {
    static POOL: Pool = const {
        Pool {
            head: Cell::new(ptr::null_mut()),
            len: Cell::new(0),
        }
    };
}

/// Memory for one entry, if this thread has a spare: write an `Entry` into it.
#[inline]
pub(super) fn take() -> Option<*mut Entry> {
    POOL.try_with(|pool| {
        let p = pool.head.get();
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` is a spare of this thread's pool (invariant 1).
        pool.head.set(unsafe { (*p).next });
        pool.len.set(pool.len.get() - 1);
        Some(p as *mut Entry)
    })
    .ok()
    .flatten()
}

/// Takes the memory of a dead entry: kept as a spare, or given back to the allocator when
/// the pool is full or gone.
///
/// # Safety
///
/// `p` was allocated as a `Box<Entry>`, its fields have been dropped, and nobody else holds
/// it; it is given here once.
pub(super) unsafe fn give(p: *mut Entry) {
    let kept = POOL
        .try_with(|pool| {
            if pool.len.get() >= POOL_MAX {
                return false;
            }
            let s = p as *mut Spare;
            // SAFETY: `p` is dead memory that fits a `Spare` (asserts above), ours alone.
            unsafe {
                s.write(Spare {
                    next: pool.head.get(),
                })
            };
            pool.head.set(s);
            pool.len.set(pool.len.get() + 1);
            true
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: per the contract, a `Box<Entry>` allocation whose contents are dropped.
        unsafe { dealloc(p as *mut u8, Layout::new::<Entry>()) };
    }
}
