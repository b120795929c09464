//! A loom-only stand-in for the subset of crossbeam-epoch the crate uses.
//!
//! Pinning is a no-op and nothing retired is freed until the loom model ends the execution
//! (see [`collect`], called by the `__loom` hooks): every pointer a thread could still hold
//! therefore stays valid, which is exactly the guarantee the real epoch gives, at none of
//! its cost in explored states. What it adds for the models:
//!
//! - every allocation made through [`Owned`] is counted, so a model can check at the end
//!   that each entry was freed exactly once (neither leaked nor retired twice);
//! - a pointer retired twice is reported by [`collect`] instead of being freed twice.
//!
//! Link words live in loom atomics, so loom sees every load, CAS and tag change of the
//! lists exactly as it would with crossbeam's `Atomic`. The real epoch still runs under loom
//! with `--cfg ctxcore_loom_real_epoch` (slower; `ci/loom.sh` runs a few models that way).
//!
//! Bookkeeping lives in a std (not loom) thread-local: loom runs all threads of a model on
//! the one OS thread of its test, so this is per model run, and it is not part of the
//! modelled state.

use crate::sync::{AtomicUsize, Ordering};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;

/// A retired pointer and the function that frees it.
type Retired = (usize, unsafe fn(usize));

std::thread_local! {
    static RETIRED: RefCell<Vec<Retired>> = const { RefCell::new(Vec::new()) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

/// What [`collect`] found at the end of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Collected {
    /// Entries freed now (each retired exactly once).
    pub(crate) freed: usize,
    /// Addresses retired more than once (each freed once only, so the run can go on).
    pub(crate) retired_twice: Vec<usize>,
    /// Allocations still not freed after this collection (a leak if the model dropped
    /// everything).
    pub(crate) still_allocated: i64,
}

/// Frees everything retired so far and reports it. Call only when no thread of the model
/// can hold a pointer to a retired entry any more (the end of the execution).
pub(crate) fn collect() -> Collected {
    let mut retired = RETIRED.with(|r| std::mem::take(&mut *r.borrow_mut()));
    retired.sort_by_key(|&(p, _)| p);
    let mut retired_twice = Vec::new();
    let mut freed = 0;
    let mut last = None;
    for (p, free) in retired {
        if last == Some(p) {
            retired_twice.push(p);
            continue;
        }
        last = Some(p);
        // SAFETY: `p` was retired by `defer_destroy` with `free` matching its type, once
        // (duplicates are skipped above), and the caller guarantees no thread still uses it.
        unsafe { free(p) };
        freed += 1;
    }
    Collected {
        freed,
        retired_twice,
        still_allocated: LIVE.with(Cell::get),
    }
}

/// Forgets all bookkeeping (start of an execution). Anything left by a failed earlier
/// execution is leaked rather than freed.
pub(crate) fn reset() {
    RETIRED.with(|r| r.borrow_mut().clear());
    LIVE.with(|l| l.set(0));
}

fn live_add(delta: i64) {
    LIVE.with(|l| l.set(l.get() + delta));
}

/// A pin. Holding one is what makes dereferencing a `Shared` sound, as with crossbeam.
#[derive(Debug)]
pub(crate) struct Guard(());

static UNPROTECTED: Guard = Guard(());

/// Pins the current thread (a no-op here: nothing is freed before the execution ends).
pub(crate) fn pin() -> Guard {
    Guard(())
}

/// A guard that protects nothing.
///
/// # Safety
///
/// As with crossbeam: only for pointers no other thread can free meanwhile.
pub(crate) unsafe fn unprotected() -> &'static Guard {
    &UNPROTECTED
}

impl Guard {
    /// Retires `ptr`: it is freed when the execution ends ([`collect`]).
    ///
    /// # Safety
    ///
    /// `ptr` came from [`Owned`], is unreachable for new readers, and is retired once.
    pub(crate) unsafe fn defer_destroy<T>(&self, ptr: Shared<'_, T>) {
        /// # Safety
        /// `p` is a `Box<T>` pointer no one uses any more.
        unsafe fn free_box<T>(p: usize) {
            // SAFETY: per the contract `p` came from `Box::into_raw` in `Owned` and is unused.
            drop(unsafe { Box::from_raw(p as *mut T) });
            live_add(-1);
        }
        let p = ptr.as_raw() as usize;
        RETIRED.with(|r| r.borrow_mut().push((p, free_box::<T>)));
    }
}

fn low_bits<T>() -> usize {
    std::mem::align_of::<T>() - 1
}

/// A shared pointer with tag bits in its low (alignment) bits.
pub(crate) struct Shared<'g, T> {
    data: usize,
    _marker: PhantomData<(&'g (), *const T)>,
}

impl<T> Clone for Shared<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Shared<'_, T> {}

impl<T> PartialEq for Shared<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
    }
}

impl<T> fmt::Debug for Shared<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shared({:#x})", self.data)
    }
}

impl<'g, T> Shared<'g, T> {
    fn from_data(data: usize) -> Self {
        Shared {
            data,
            _marker: PhantomData,
        }
    }

    /// The null pointer, tag 0.
    pub(crate) fn null() -> Self {
        Self::from_data(0)
    }

    /// The same pointer with `tag` (masked to the alignment bits).
    pub(crate) fn with_tag(self, tag: usize) -> Self {
        Self::from_data((self.data & !low_bits::<T>()) | (tag & low_bits::<T>()))
    }

    /// The tag bits.
    pub(crate) fn tag(&self) -> usize {
        self.data & low_bits::<T>()
    }

    /// True if the pointer part is null.
    pub(crate) fn is_null(&self) -> bool {
        self.as_raw().is_null()
    }

    /// The pointer part.
    pub(crate) fn as_raw(&self) -> *const T {
        (self.data & !low_bits::<T>()) as *const T
    }

    /// Dereferences the pointer part.
    ///
    /// # Safety
    ///
    /// Non-null and alive for `'g`, as with crossbeam.
    pub(crate) unsafe fn deref(&self) -> &'g T {
        // SAFETY: per the contract.
        unsafe { &*self.as_raw() }
    }
}

impl<T> From<*const T> for Shared<'_, T> {
    fn from(p: *const T) -> Self {
        debug_assert_eq!(p as usize & low_bits::<T>(), 0, "unaligned pointer");
        Self::from_data(p as usize)
    }
}

/// The error of a failed compare-exchange: what the word held.
#[derive(Debug)]
pub(crate) struct CompareExchangeError<'g, T> {
    pub(crate) current: Shared<'g, T>,
}

/// An atomic tagged pointer, on a loom atomic.
pub(crate) struct Atomic<T> {
    data: AtomicUsize,
    _marker: PhantomData<*mut T>,
}

// SAFETY: like crossbeam's `Atomic`, it only hands out `Shared` pointers under a guard; the
// word itself is atomic.
unsafe impl<T: Send + Sync> Send for Atomic<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Atomic<T> {}

impl<T> fmt::Debug for Atomic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No load here: a Debug print must not add a modelled operation.
        f.write_str("Atomic { .. }")
    }
}

impl<T> Atomic<T> {
    /// A null pointer, tag 0.
    pub(crate) fn null() -> Self {
        Atomic {
            data: AtomicUsize::new(0),
            _marker: PhantomData,
        }
    }

    pub(crate) fn load<'g>(&self, ord: Ordering, _: &'g Guard) -> Shared<'g, T> {
        Shared::from_data(self.data.load(ord))
    }

    pub(crate) fn store(&self, new: Shared<'_, T>, ord: Ordering) {
        self.data.store(new.data, ord);
    }

    pub(crate) fn swap<'g>(
        &self,
        new: Shared<'_, T>,
        ord: Ordering,
        _: &'g Guard,
    ) -> Shared<'g, T> {
        Shared::from_data(self.data.swap(new.data, ord))
    }

    pub(crate) fn fetch_or<'g>(&self, tag: usize, ord: Ordering, _: &'g Guard) -> Shared<'g, T> {
        Shared::from_data(self.data.fetch_or(tag & low_bits::<T>(), ord))
    }

    pub(crate) fn compare_exchange<'g>(
        &self,
        current: Shared<'_, T>,
        new: Shared<'_, T>,
        success: Ordering,
        failure: Ordering,
        _: &'g Guard,
    ) -> Result<Shared<'g, T>, CompareExchangeError<'g, T>> {
        match self
            .data
            .compare_exchange(current.data, new.data, success, failure)
        {
            Ok(v) => Ok(Shared::from_data(v)),
            Err(v) => Err(CompareExchangeError {
                current: Shared::from_data(v),
            }),
        }
    }
}

/// An owned heap allocation, counted while alive.
pub(crate) struct Owned<T>(ManuallyDrop<Box<T>>);

impl<T> Owned<T> {
    pub(crate) fn new(value: T) -> Self {
        live_add(1);
        Owned(ManuallyDrop::new(Box::new(value)))
    }

    /// Takes back an allocation made by [`Owned::new`].
    ///
    /// # Safety
    ///
    /// `p` came from `Owned::new(..).into_shared(..)` and nobody else uses it.
    pub(crate) unsafe fn from_raw(p: *mut T) -> Self {
        // SAFETY: per the contract `p` is a `Box<T>` pointer we now own.
        Owned(ManuallyDrop::new(unsafe { Box::from_raw(p) }))
    }

    /// Hands the allocation over to shared pointers (it stays counted until freed).
    pub(crate) fn into_shared<'g>(self, _: &'g Guard) -> Shared<'g, T> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the box is taken exactly once.
        let b = unsafe { ManuallyDrop::take(&mut this.0) };
        Shared::from(Box::into_raw(b) as *const T)
    }
}

impl<T> std::ops::Deref for Owned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and the field is not used afterwards.
        drop(unsafe { ManuallyDrop::take(&mut self.0) });
        live_add(-1);
    }
}
