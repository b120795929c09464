//! A thread's stack of spare memory blocks of one type, for reuse: the dead list entries a
//! thread freed (`list/pool.rs`) and the timer entries it released (`timer/recycle.rs`).
//!
//! # Invariants
//!
//! 1. A block on the stack is dead: its value was dropped, nobody else holds its address,
//!    and it was allocated as a `Box<T>`, so it is freed with `T`'s layout. Its first word
//!    links it to the next block ([`Spare`]).
//! 2. The stack is its thread's alone (it lives in a thread-local): no atomics. What is on
//!    it when the thread exits is freed.

use std::alloc::{dealloc, Layout};
use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr;

/// The first word of a dead block: the next block of its chain.
#[repr(C)]
pub(crate) struct Spare {
    pub(crate) next: *mut Spare,
}

/// A stack of dead `T` blocks and how many were pushed on it (blocks adopted as a chain are
/// not counted: see [`Spares::adopt`]).
pub(crate) struct Spares<T> {
    head: Cell<*mut Spare>,
    len: Cell<usize>,
    _blocks: PhantomData<*mut T>,
}

impl<T> Spares<T> {
    // A dead block's link must fit in the block.
    const FITS: () = assert!(
        std::mem::size_of::<Spare>() <= std::mem::size_of::<T>()
            && std::mem::align_of::<Spare>() <= std::mem::align_of::<T>()
    );

    /// An empty stack.
    pub(crate) const fn new() -> Spares<T> {
        let () = Self::FITS;
        Spares {
            head: Cell::new(ptr::null_mut()),
            len: Cell::new(0),
            _blocks: PhantomData,
        }
    }

    /// A block to write a new `T` into, if the stack has one.
    #[inline]
    pub(crate) fn pop(&self) -> Option<*mut T> {
        let p = self.head.get();
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` is a dead block of this stack (invariant 1).
        self.head.set(unsafe { (*p).next });
        self.len.set(self.len.get().saturating_sub(1));
        Some(p as *mut T)
    }

    /// Keeps the dead block `p` unless `max` blocks were pushed already: false if it was
    /// not kept (the caller frees it).
    ///
    /// # Safety
    ///
    /// `p` was allocated as a `Box<T>`, its value has been dropped, and nobody else holds
    /// it; it is given here once.
    #[inline]
    pub(crate) unsafe fn push(&self, p: *mut T, max: usize) -> bool {
        if self.len.get() >= max {
            return false;
        }
        let s = p as *mut Spare;
        // SAFETY: per the contract `p` is dead memory that fits a `Spare` (`FITS`), ours.
        unsafe {
            s.write(Spare {
                next: self.head.get(),
            })
        };
        self.head.set(s);
        self.len.set(self.len.get() + 1);
        true
    }

    /// Takes a whole chain of dead blocks (linked through [`Spare`]) if the stack is empty;
    /// false (nothing taken) otherwise.
    ///
    /// # Safety
    ///
    /// Every block of `chain` satisfies the contract of [`push`](Spares::push), and the
    /// chain is handed over whole.
    pub(crate) unsafe fn adopt(&self, chain: *mut Spare) -> bool {
        if !self.head.get().is_null() {
            return false;
        }
        self.head.set(chain);
        true
    }
}

impl<T> Drop for Spares<T> {
    fn drop(&mut self) {
        free_chain::<T>(self.head.replace(ptr::null_mut()));
    }
}

/// Frees a chain of dead `T` blocks.
fn free_chain<T>(mut p: *mut Spare) {
    while !p.is_null() {
        // SAFETY: a chained block is dead memory of `T`'s layout, ours (invariant 1).
        unsafe {
            let next = (*p).next;
            dealloc(p as *mut u8, Layout::new::<T>());
            p = next;
        }
    }
}
