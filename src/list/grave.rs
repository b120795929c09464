//! Batches dead entries before handing them to the epoch.
//!
//! crossbeam-epoch stores each deferred free in a per-thread bag and allocates a ~2 KiB
//! sealed bag every 64 of them; with one deferred free per context, that large allocation
//! (and the allocator consolidation it triggers) was the biggest single cost of a
//! create/cancel/drop. Here a thread chains its dead entries (through `refs`, which nobody
//! reads after finalization: `list.rs` invariant 4) and defers the whole chain with one closure per
//! [`BATCH`] entries. Deferring later than the finalization is always safe: the epoch
//! only frees after every thread pinned before the defer has unpinned. At most `BATCH - 1`
//! dead entries wait per thread; a thread's leftovers are deferred when it exits.
//!
//! crossbeam collects (advances the epoch and frees expired bags) on every 128th pin. A
//! departing context pins only when it sweeps or finalizes (`list/refs.rs`, "Pinning"),
//! about once in nine, so left to that, collection would come nine times less often and
//! dead entries would pile up past the thread's pool (`list/pool.rs`): the allocator's
//! slow path came back (callgrind: `_int_malloc` and `_int_free` in a child cycle's
//! profile). So every [`FLUSH_EVERY`] deferred chains (128 entries) the thread flushes its
//! bag to the global queue and collects: collection follows the garbage, not the pins, at
//! the price of one sealed bag (one allocation) per 128 entries.

use super::Entry;
#[cfg_attr(loom, allow(unused_imports))]
use crate::sync::epoch::{self, Guard, Shared};
#[cfg_attr(loom, allow(unused_imports))]
use crate::sync::Ordering;

/// Entries per deferred closure.
pub(super) const BATCH: usize = 32;
/// Deferred chains after which the thread flushes its epoch bag and collects.
const FLUSH_EVERY: usize = 4;
/// Entries buried between two flushes (a power of two).
const FLUSH_PERIOD: usize = BATCH * FLUSH_EVERY;
const _: () = assert!(FLUSH_PERIOD.is_power_of_two());

#[cfg(not(loom))]
struct Grave {
    head: std::cell::Cell<*const Entry>,
    /// Entries this thread has buried (wrapping); the last `buried % BATCH` of them are
    /// in `head`'s chain.
    buried: std::cell::Cell<usize>,
}

#[cfg(not(loom))]
impl Drop for Grave {
    fn drop(&mut self) {
        let head = self.head.replace(std::ptr::null());
        if !head.is_null() {
            let guard = &epoch::pin();
            // SAFETY: a chain of finalized entries, as in `bury`.
            unsafe { guard.defer_unchecked(move || free_chain(head)) };
        }
    }
}

#[cfg(not(loom))]
std::thread_local! {
    static GRAVE: Grave = const {
        Grave {
            head: std::cell::Cell::new(std::ptr::null()),
            buried: std::cell::Cell::new(0),
        }
    };
}

/// Hands the finalized entry `e` to the epoch, batched.
///
/// # Safety
///
/// `e` is finalized (invariant 4) and `guard` is pinned.
pub(super) unsafe fn bury(e: *const Entry, guard: &Guard) {
    #[cfg(not(loom))]
    {
        let buried = GRAVE.try_with(|g| {
            // SAFETY: `e` is finalized: only we write `refs` now (invariant 4).
            unsafe { &*e }
                .refs
                .store(g.head.get() as usize, Ordering::Relaxed);
            g.head.set(e);
            // Wraps at a multiple of FLUSH_PERIOD (a power of two), so the period holds.
            let n = g.buried.get().wrapping_add(1);
            g.buried.set(n);
            if n.is_multiple_of(BATCH) {
                let head = g.head.replace(std::ptr::null());
                // SAFETY: every entry in the chain is finalized; threads that may still
                // read them are pinned, and this defer frees only after they unpin.
                unsafe { guard.defer_unchecked(move || free_chain(head)) };
                if n.is_multiple_of(FLUSH_PERIOD) {
                    guard.flush();
                }
            }
        });
        if buried.is_ok() {
            return;
        }
    }
    // SAFETY: as in the contract; the loom build (and a thread past its thread-local
    // teardown) defers each entry on its own, so the models see every free.
    unsafe { guard.defer_destroy(Shared::from(e)) };
}

/// Frees a chain made by `bury`.
#[cfg(not(loom))]
fn free_chain(mut p: *const Entry) {
    while !p.is_null() {
        // SAFETY: the chain's entries are finalized and past their grace period; `refs`
        // holds the link written by `bury`; `alloc` made them with `Owned`.
        let next = unsafe { &*p }.refs.load(Ordering::Relaxed) as *const Entry;
        // SAFETY: as above: nobody holds `p`; its fields are dropped once, here, and its
        // memory (a `Box<Entry>` from `alloc`'s `Owned::new`) goes to this thread's pool.
        unsafe {
            std::ptr::drop_in_place(p as *mut Entry);
            super::pool::give(p as *mut Entry);
        }
        p = next;
    }
}
