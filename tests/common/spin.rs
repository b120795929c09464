//! Test-side hand-offs that ThreadSanitizer can see: a spin lock and a spin barrier built on
//! atomics compiled in this crate graph.
//!
//! Under `ci/tsan.sh` the standard library is precompiled without instrumentation, so the
//! happens-before edges of `std::sync::Mutex`, `Condvar` and `Barrier` (futex based) are
//! invisible to the sanitizer, and every access a test orders through them is reported as a
//! race. These two replace them in the multi-thread tests: their Acquire/Release pairs are on
//! instrumented atomics, so the edges they create are the ones the sanitizer sees. They spin
//! with `yield_now`, which is fine for test bookkeeping held for a few instructions.

#![allow(dead_code)] // each test binary uses the part it needs

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A mutual-exclusion lock on one `AtomicBool`.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time (Acquire on taking it, Release
// on giving it back), so sharing the lock moves `T` between threads like a `Mutex` does.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock holding `value`.
    pub const fn new(value: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, spinning (and yielding) while another thread holds it.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        SpinGuard { lock: self }
    }

    /// The value, through exclusive access to the lock.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// The value, consuming the lock.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: Default> Default for SpinLock<T> {
    fn default() -> SpinLock<T> {
        SpinLock::new(T::default())
    }
}

/// Holds a [`SpinLock`]; releases it when dropped.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while this thread holds the lock, and `&mut self`
        // makes this the only reference through it.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// A reusable barrier for `n` threads on one atomic counter of arrivals.
pub struct SpinBarrier {
    n: usize,
    arrived: AtomicUsize,
}

impl SpinBarrier {
    /// A barrier that releases its waiters in groups of `n` (at least 1).
    pub fn new(n: usize) -> SpinBarrier {
        SpinBarrier {
            n: n.max(1),
            arrived: AtomicUsize::new(0),
        }
    }

    /// Waits until `n` threads have called `wait` for this round. Every arrival is an AcqRel
    /// increment, so each thread leaving a round has seen what every other did before it.
    pub fn wait(&self) {
        let ticket = self.arrived.fetch_add(1, Ordering::AcqRel);
        let round_end = (ticket / self.n + 1) * self.n;
        let mut spins = 0u32;
        while self.arrived.load(Ordering::Acquire) < round_end {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// A reference-counted pointer like `Arc`, whose last release ThreadSanitizer sees.
///
/// `std::sync::Arc` orders its last drop with `fence(Acquire)` compiled into the prebuilt
/// standard library; the sanitizer does not model fences, so it reports the free of every
/// `Arc` shared between threads as a race with the other threads' last uses. Here the
/// decrement itself is AcqRel, the same edge on the one atomic the sanitizer watches.
pub struct Shared<T> {
    ptr: std::ptr::NonNull<SharedBox<T>>,
}

struct SharedBox<T> {
    count: AtomicUsize,
    value: T,
}

// SAFETY: like `Arc<T>`: the value is shared (needs `Sync`) and dropped by whichever thread
// releases last (needs `Send`).
unsafe impl<T: Send + Sync> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// A new pointer, the only one, to `value`.
    pub fn new(value: T) -> Shared<T> {
        let b = Box::new(SharedBox {
            count: AtomicUsize::new(1),
            value,
        });
        Shared {
            ptr: std::ptr::NonNull::from(Box::leak(b)),
        }
    }

    /// How many pointers to this value exist.
    pub fn strong_count(this: &Shared<T>) -> usize {
        this.inner().count.load(Ordering::Acquire)
    }

    /// The value, if this is the only pointer to it; else the pointer back.
    pub fn try_unwrap(this: Shared<T>) -> Result<T, Shared<T>> {
        if this
            .inner()
            .count
            .compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(this);
        }
        let this = std::mem::ManuallyDrop::new(this);
        // SAFETY: the count was 1 and is now 0: ours was the last pointer, and the Acquire
        // ordered every other holder's uses before this.
        let b = unsafe { Box::from_raw(this.ptr.as_ptr()) };
        Ok(b.value)
    }

    fn inner(&self) -> &SharedBox<T> {
        // SAFETY: our count keeps the box alive.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Default> Default for Shared<T> {
    fn default() -> Shared<T> {
        Shared::new(T::default())
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Shared<T> {
        self.inner().count.fetch_add(1, Ordering::Relaxed);
        Shared { ptr: self.ptr }
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner().value
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        if self.inner().count.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: that was the last count: nobody else can reach the box, and the AcqRel
            // decrement ordered every other holder's uses before this free.
            drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
        }
    }
}

/// What a [`Shared`] waker does when woken.
pub trait SharedWake: Send + Sync + 'static {
    /// Called on every wake.
    fn wake(&self);
}

impl<T: SharedWake> Shared<T> {
    /// A `Waker` holding one count of this pointer (like `Waker::from(Arc<impl Wake>)`).
    pub fn waker(&self) -> std::task::Waker {
        let raw = std::task::RawWaker::new(self.clone().into_raw(), vtable::<T>());
        // SAFETY: the vtable's functions treat the data pointer as one count of a
        // `Shared<T>`, which is what `into_raw` produced.
        unsafe { std::task::Waker::from_raw(raw) }
    }

    fn into_raw(self) -> *const () {
        let p = self.ptr.as_ptr() as *const ();
        std::mem::forget(self);
        p
    }

    /// # Safety
    ///
    /// `p` came from `into_raw` and its count is handed over.
    unsafe fn from_raw(p: *const ()) -> Shared<T> {
        Shared {
            // SAFETY: `into_raw` made `p` from a non-null box pointer.
            ptr: unsafe { std::ptr::NonNull::new_unchecked(p as *mut SharedBox<T>) },
        }
    }
}

fn vtable<T: SharedWake>() -> &'static std::task::RawWakerVTable {
    &VTable::<T>::V
}

struct VTable<T>(std::marker::PhantomData<T>);

impl<T: SharedWake> VTable<T> {
    const V: std::task::RawWakerVTable =
        std::task::RawWakerVTable::new(Self::clone, Self::wake, Self::wake_by_ref, Self::drop);

    fn clone(p: *const ()) -> std::task::RawWaker {
        // SAFETY: `p` is one count of a `Shared<T>` (see `Shared::waker`); we borrow it.
        let s = std::mem::ManuallyDrop::new(unsafe { Shared::<T>::from_raw(p) });
        std::task::RawWaker::new(Shared::clone(&s).into_raw(), vtable::<T>())
    }

    fn wake(p: *const ()) {
        // SAFETY: as in `clone`; waking by value consumes the count.
        let s = unsafe { Shared::<T>::from_raw(p) };
        s.wake();
    }

    fn wake_by_ref(p: *const ()) {
        // SAFETY: as in `clone`; borrowed.
        let s = std::mem::ManuallyDrop::new(unsafe { Shared::<T>::from_raw(p) });
        s.wake();
    }

    fn drop(p: *const ()) {
        // SAFETY: as in `clone`; dropping consumes the count.
        drop(unsafe { Shared::<T>::from_raw(p) });
    }
}
