//! Request-scoped values: a flattened hash table per `with_value`, so a lookup costs the
//! same at any depth and with any number of value types in scope.
//!
//! # Algorithm
//!
//! `with_value::<T>(v)` allocates one `ValueNode<T>`: the value, a counted reference to the
//! parent node (the chain keeps its ancestors' values alive, as Go's does), and a small
//! open-addressing table `TypeId -> &value` of every type visible from here: the parent's
//! table, with `T`'s slot pointed at the new value (shadowing the parent's). A lookup hashes
//! the `TypeId` (a compile-time constant for a given `T`), probes from there, and almost
//! always settles on the first slot: one comparison whatever the depth.
//!
//! Tables of up to [`INLINE_TYPES`] types live inline in the node (one allocation per
//! `with_value`); a context with more distinct value types gets a heap table (a second
//! allocation), still with O(1) lookup.
//!
//! # Invariants
//!
//! 1. A table is never written after its node is published; it has at least one empty slot
//!    (load at most 3/4), so a probe always ends.
//! 2. Every slot points into this node or an ancestor; the counted parent chain keeps them
//!    alive as long as this node lives.
//! 3. Nodes are freed by [`release`]'s loop, parent after child: no recursion on depth.
//!
//! The tables are immutable once built, so they need no atomics: a `Context` carries its
//! node pointer, and whatever sends the context to another thread publishes the table
//! (arc-swap would add an atomic swap for nothing here). Only the count is atomic.

use std::any::TypeId;
use std::hash::{Hash, Hasher};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Distinct value types a context can see before its table moves to the heap.
pub(crate) const INLINE_TYPES: usize = 6;
/// Slots of an inline table (a power of two, above `INLINE_TYPES * 4 / 3`).
const INLINE_SLOTS: usize = 8;

/// One visible value: its type and where it lives. `value` is null in an empty slot (a
/// value's address is never null, even for a zero-sized type).
#[derive(Clone, Copy)]
struct Slot {
    type_id: TypeId,
    value: *const (),
}

const EMPTY: Slot = Slot {
    type_id: TypeId::of::<()>(),
    value: ptr::null(),
};

/// Takes the bits `TypeId` feeds its hasher (already a hash of the type).
#[derive(Default)]
struct TypeIdBits(u64);

impl Hasher for TypeIdBits {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(5) ^ n;
    }
}

#[inline]
fn slot_of(id: TypeId, mask: usize) -> usize {
    let mut h = TypeIdBits::default();
    id.hash(&mut h);
    // Fibonacci hashing: the top bits of the product are well mixed.
    (h.finish().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

/// An open-addressing table, inline or on the heap.
struct Table {
    /// Distinct types in the table.
    len: usize,
    inline: [Slot; INLINE_SLOTS],
    /// Used instead of `inline` when `len > INLINE_TYPES`.
    heap: Option<Box<[Slot]>>,
}

impl Table {
    const EMPTY: Table = Table {
        len: 0,
        inline: [EMPTY; INLINE_SLOTS],
        heap: None,
    };

    #[inline]
    fn slots(&self) -> &[Slot] {
        match &self.heap {
            Some(h) => h,
            None => &self.inline,
        }
    }

    #[inline]
    fn find(&self, id: TypeId) -> Option<*const ()> {
        let slots = self.slots();
        let mask = slots.len() - 1;
        let mut i = slot_of(id, mask);
        loop {
            let s = &slots[i];
            if s.value.is_null() {
                return None;
            }
            if s.type_id == id {
                return Some(s.value);
            }
            i = (i + 1) & mask;
        }
    }

    /// Puts `slot` in `slots`, replacing the slot of the same type. True if it was new.
    fn put(slots: &mut [Slot], slot: Slot) -> bool {
        let mask = slots.len() - 1;
        let mut i = slot_of(slot.type_id, mask);
        loop {
            if slots[i].value.is_null() {
                slots[i] = slot;
                return true;
            }
            if slots[i].type_id == slot.type_id {
                slots[i] = slot;
                return false;
            }
            i = (i + 1) & mask;
        }
    }

    /// This table with `slot` added (or replacing its type's), keeping invariant 1.
    fn with(&self, slot: Slot) -> Table {
        let grows = self.find(slot.type_id).is_none();
        let len = self.len + usize::from(grows);
        if len <= INLINE_TYPES {
            let mut t = Table {
                len,
                inline: self.inline,
                heap: None,
            };
            Table::put(&mut t.inline, slot);
            return t;
        }
        let want = (len * 4 / 3 + 1).next_power_of_two();
        let mut slots = if self.slots().len() >= want && self.heap.is_some() {
            self.slots().to_vec().into_boxed_slice()
        } else {
            let mut fresh = vec![EMPTY; want].into_boxed_slice();
            for s in self.slots().iter().filter(|s| !s.value.is_null()) {
                Table::put(&mut fresh, *s);
            }
            fresh
        };
        Table::put(&mut slots, slot);
        Table {
            len,
            inline: [EMPTY; INLINE_SLOTS],
            heap: Some(slots),
        }
    }
}

/// The type-erased header of every value node.
#[repr(C)]
pub(crate) struct ValueHead {
    /// Counted references: contexts and children. Unused for the static TODO head.
    refs: AtomicUsize,
    /// The parent node (one count on it), or null.
    parent: *const ValueHead,
    /// Frees the whole `ValueNode<T>`.
    free: unsafe fn(*const ValueHead),
    table: Table,
}

#[repr(C)]
struct ValueNode<T> {
    head: ValueHead,
    value: T,
}

struct StaticHead(ValueHead);
// SAFETY: the static head has an empty table and no parent; it is never written.
unsafe impl Sync for StaticHead {}

unsafe fn never_freed(_: *const ValueHead) {}

/// The marker head of `Context::todo()`: no values, only a different identity.
static TODO: StaticHead = StaticHead(ValueHead {
    refs: AtomicUsize::new(1),
    parent: ptr::null(),
    free: never_freed,
    table: Table::EMPTY,
});

/// A counted reference to a value node (or the static TODO marker).
pub(crate) struct ValueRef(NonNull<ValueHead>);

// SAFETY: values are `Send + Sync` (enforced by `with_value`), tables are immutable, and
// the count is atomic.
unsafe impl Send for ValueRef {}
// SAFETY: as above.
unsafe impl Sync for ValueRef {}

fn is_static(p: *const ValueHead) -> bool {
    ptr::eq(p, &TODO.0)
}

impl ValueRef {
    /// The TODO marker.
    pub(crate) fn todo() -> ValueRef {
        ValueRef(NonNull::from(&TODO.0))
    }

    /// True for the TODO marker.
    pub(crate) fn is_todo(&self) -> bool {
        is_static(self.0.as_ptr())
    }

    fn head(&self) -> &ValueHead {
        // SAFETY: our count keeps the node alive (or it is the static marker).
        unsafe { self.0.as_ref() }
    }

    /// A new node with `value`, seeing everything `parent` sees except its `T`.
    pub(crate) fn with<T: Send + Sync + 'static>(parent: Option<&ValueRef>, value: T) -> Self {
        let parent_head = parent.map_or(ptr::null(), |p| {
            // SAFETY: `p` holds a count, so its node is alive; the new node takes another.
            unsafe { acquire(p.0.as_ptr()) };
            p.0.as_ptr() as *const ValueHead
        });
        let node = Box::into_raw(Box::new(ValueNode {
            head: ValueHead {
                refs: AtomicUsize::new(1),
                parent: parent_head,
                free: free_node::<T>,
                table: Table::EMPTY,
            },
            value,
        }));
        // SAFETY: `node` is a fresh allocation only we can see; the table is built before
        // the node is published (invariant 1) and its slots point into this node and its
        // ancestors (invariant 2).
        unsafe {
            let own = Slot {
                type_id: TypeId::of::<T>(),
                value: ptr::addr_of!((*node).value) as *const (),
            };
            (*node).head.table = match parent {
                Some(p) => p.head().table.with(own),
                None => Table::EMPTY.with(own),
            };
        }
        // SAFETY: `Box::into_raw` is non-null; `head` is the first field (repr(C)).
        ValueRef(unsafe { NonNull::new_unchecked(node as *mut ValueHead) })
    }

    /// The nearest value of type `T`.
    #[inline]
    pub(crate) fn get<T: 'static>(&self) -> Option<&T> {
        let p = self.head().table.find(TypeId::of::<T>())?;
        // SAFETY: the slot's type is `T`, and it points into this node or an ancestor,
        // alive while we are (invariant 2).
        Some(unsafe { &*(p as *const T) })
    }

    /// How many values are visible (distinct types).
    pub(crate) fn len(&self) -> usize {
        self.head().table.len
    }
}

impl Clone for ValueRef {
    fn clone(&self) -> Self {
        // SAFETY: we hold a count, so the head is alive.
        unsafe { acquire(self.0.as_ptr()) };
        ValueRef(self.0)
    }
}

impl Drop for ValueRef {
    fn drop(&mut self) {
        // SAFETY: we own one count and give it up.
        unsafe { release(self.0.as_ptr()) }
    }
}

/// # Safety
/// `h` is alive and the caller holds a count on it (or it is the static marker).
unsafe fn acquire(h: *const ValueHead) {
    if !is_static(h) {
        // SAFETY: alive per the contract. Relaxed: cloned from a live count, as `Arc` does.
        let prev = unsafe { &*h }.refs.fetch_add(1, Ordering::Relaxed);
        if prev > usize::MAX / 2 {
            std::process::abort();
        }
    }
}

/// Gives up one count; frees every node that reaches zero, child before parent, in a loop
/// (invariant 3).
///
/// # Safety
/// The caller owns one count on `h`.
unsafe fn release(mut h: *const ValueHead) {
    while !h.is_null() && !is_static(h) {
        // SAFETY: we own a count, so `h` is alive.
        let head = unsafe { &*h };
        // Release/Acquire as in `Arc`: every use through other counts happens before the free.
        if head.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Acquire load rather than `fence(Acquire)`: the same synchronization (it reads the
        // last value of the release sequence our `fetch_sub` joined), and ThreadSanitizer,
        // which does not model fences, sees it too (std's `Arc` does this under TSan).
        head.refs.load(Ordering::Acquire);
        let parent = head.parent;
        // SAFETY: the count reached zero: nobody else can reach this node. Its count on the
        // parent moves to the next turn of the loop.
        unsafe { (head.free)(h) };
        h = parent;
    }
}

/// # Safety
/// `h` is the head of a `ValueNode<T>` whose count is zero.
unsafe fn free_node<T>(h: *const ValueHead) {
    // SAFETY: made by `Box::into_raw(Box::new(ValueNode<T>))` in `ValueRef::with`.
    drop(unsafe { Box::from_raw(h as *mut ValueNode<T>) });
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn nearest_wins_and_others_stay_visible() {
        let a = ValueRef::with(None, 1u32);
        let b = ValueRef::with(Some(&a), "s");
        let c = ValueRef::with(Some(&b), 2u32);
        assert_eq!(c.get::<u32>(), Some(&2));
        assert_eq!(c.get::<&str>(), Some(&"s"));
        assert_eq!(b.get::<u32>(), Some(&1));
        assert_eq!(a.get::<&str>(), None);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn heap_tables_beyond_the_inline_ones() {
        macro_rules! chain {
            ($($t:ident),*) => {{
                $(#[derive(Debug, PartialEq)] struct $t(u8);)*
                let mut v = ValueRef::todo();
                let mut i = 0u8;
                $( i += 1; v = ValueRef::with(Some(&v), $t(i)); )*
                let mut j = 0u8;
                $( j += 1; assert_eq!(v.get::<$t>(), Some(&$t(j))); )*
                assert_eq!(v.get::<u128>(), None);
                v
            }};
        }
        let v = chain!(A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, P, Q, R);
        assert_eq!(v.len(), 18);
        let w = ValueRef::with(Some(&v), 5u8);
        assert_eq!(w.len(), 19);
        assert_eq!(w.get::<u8>(), Some(&5));
    }

    #[test]
    fn drops_every_value_once() {
        use std::sync::Arc;
        let probe = Arc::new(());
        {
            let mut v = ValueRef::with(None, probe.clone());
            for i in 0..100u64 {
                v = ValueRef::with(Some(&v), i);
                v = ValueRef::with(Some(&v), probe.clone());
            }
            assert_eq!(Arc::strong_count(&probe), 102);
        }
        assert_eq!(Arc::strong_count(&probe), 1);
    }

    #[test]
    fn zero_sized_values_are_found() {
        struct Unit;
        let v = ValueRef::with(None, Unit);
        assert!(v.get::<Unit>().is_some());
        assert!(ValueRef::todo().get::<Unit>().is_none());
    }
}
