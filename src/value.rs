//! Request-scoped values: a flattened table per `with_value`, so a lookup costs the same at
//! any depth and with any number of value types in scope.
//!
//! # Algorithm
//!
//! `with_value::<T>(v)` allocates one `ValueNode<T>`: a header, then the value. The header
//! holds a counted reference to the parent node (the chain keeps its ancestors' values
//! alive, as Go's does), a pointer to `T`'s static [`Meta`] (its `TypeId` and how to free
//! the node), and a table of every type visible from here: the parent's table, with `T`'s
//! slot pointed at the new node (shadowing the parent's).
//!
//! A slot is two words: a 64-bit key drawn from the `TypeId` (a compile-time constant for a
//! given `T`) and the node that holds the value. A 64-bit key alone could collide between
//! two types, so a key that matches is confirmed by comparing the full `TypeId` in the
//! node's `Meta` before the value is read.
//!
//! - Up to [`INLINE_TYPES`] types, the slots sit inline in the header and a lookup scans
//!   them: at most four key comparisons in one cache line, whatever the depth. One
//!   allocation per `with_value`, 88 bytes of header plus the value.
//! - Beyond that, the table follows the value in the node's own allocation (still one
//!   allocation per `with_value`): open addressing on the key, still one probe in the
//!   common case.
//!
//! # Invariants
//!
//! 1. A table is never written after its node is published; a trailing table has at least
//!    one empty slot (load at most 3/4), so a probe always ends; an inline table's first
//!    `len` slots are its entries.
//! 2. Every slot points to this node or an ancestor; the counted parent chain keeps them
//!    alive as long as this node lives. A type appears in at most one slot of a table.
//! 3. Nodes are freed by [`release`]'s loop, parent after child: no recursion on depth.
//!
//! The tables are immutable once built, so they need no atomics: a `Context` carries its
//! node pointer, and whatever sends the context to another thread publishes the table
//! (arc-swap would add an atomic swap for nothing here). Only the count is atomic.

use std::alloc::{self, Layout};
use std::any::TypeId;
use std::hash::{Hash, Hasher};
use std::ptr::{self, NonNull};
// Loom's under loom: a value node's count orders what happens before it is freed, and since
// a shared root's value table holds counted stripes (`stripe.rs`), the models must see it.
use crate::sync::{AtomicU32, Ordering};

/// Distinct value types a context can see before its table moves out of the header (to a
/// trailing table in the same allocation).
pub(crate) const INLINE_TYPES: usize = 4;

/// One visible value: its type's key and the node that holds it. `node` is null in an
/// empty slot of a trailing table.
#[derive(Clone, Copy)]
struct Slot {
    key: u64,
    node: *const ValueHead,
}

const EMPTY: Slot = Slot {
    key: 0,
    node: ptr::null(),
};

/// What a node's header knows of its value's type.
pub(crate) struct Meta {
    type_id: TypeId,
    /// Frees the whole `ValueNode<T>`.
    free: unsafe fn(*const ValueHead),
}

/// The static `Meta` of `T` (a constant: no allocation, shared by every node of `T`).
struct MetaOf<T>(std::marker::PhantomData<T>);

impl<T: 'static> MetaOf<T> {
    const META: &'static Meta = &Meta {
        type_id: TypeId::of::<T>(),
        free: free_node::<T>,
    };
}

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

/// The slot key of a type: 64 bits of its `TypeId` (folded to a constant for a known type).
#[inline]
fn key_of(id: TypeId) -> u64 {
    let mut h = TypeIdBits::default();
    id.hash(&mut h);
    h.finish()
}

/// The trailing-table slot a key probes first.
#[inline]
fn home(key: u64, mask: usize) -> usize {
    // Fibonacci hashing: the top bits of the product are well mixed.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

/// True if `slot` holds the value of type `id` (its key is `key`).
#[inline]
fn holds(slot: &Slot, key: u64, id: TypeId) -> bool {
    // SAFETY: a filled slot points to a live node (invariant 2); its meta is static.
    slot.key == key && unsafe { (*slot.node).meta }.type_id == id
}

/// A table of `cap` slots (a power of two) after the value, in the node's own allocation.
#[derive(Clone, Copy)]
struct Trailing {
    first: *const Slot,
    cap: usize,
}

/// The slots of a header: inline while `len <= INLINE_TYPES`, else a trailing table.
#[derive(Clone, Copy)]
union Slots {
    inline: [Slot; INLINE_TYPES],
    trailing: Trailing,
}

/// The type-erased header of every value node.
#[repr(C)]
pub(crate) struct ValueHead {
    /// Counted references: contexts and children. Unused for the static TODO head.
    refs: AtomicU32,
    /// Distinct types in the table; says which field of `slots` is in use.
    len: u32,
    /// The parent node (one count on it), or null.
    parent: *const ValueHead,
    meta: &'static Meta,
    slots: Slots,
}

// The memory target of a `with_value` node is 96 bytes with an 8-byte value.
#[cfg(all(target_pointer_width = "64", not(loom)))]
const _: () = assert!(std::mem::size_of::<ValueHead>() == 88);

impl ValueHead {
    fn is_inline(&self) -> bool {
        self.len as usize <= INLINE_TYPES
    }

    /// The node holding the value of type `id`, if visible.
    #[inline]
    fn find(&self, id: TypeId) -> Option<*const ValueHead> {
        let key = key_of(id);
        if self.is_inline() {
            // SAFETY: `len <= INLINE_TYPES`: the inline slots are the live field.
            let inline = unsafe { &self.slots.inline };
            return inline[..self.len as usize]
                .iter()
                .find(|s| holds(s, key, id))
                .map(|s| s.node);
        }
        let slots = self.trailing_slots();
        let mask = slots.len() - 1;
        let mut i = home(key, mask);
        loop {
            let s = &slots[i];
            if s.node.is_null() {
                return None;
            }
            if holds(s, key, id) {
                return Some(s.node);
            }
            i = (i + 1) & mask;
        }
    }

    /// Every filled slot of this table.
    fn entries(&self) -> impl Iterator<Item = &Slot> {
        let slots: &[Slot] = if self.is_inline() {
            // SAFETY: inline is the live field; its first `len` slots are filled.
            unsafe { &self.slots.inline[..self.len as usize] }
        } else {
            self.trailing_slots()
        };
        slots.iter().filter(|s| !s.node.is_null())
    }

    /// The slots of the trailing table; only for a header with `len > INLINE_TYPES`.
    fn trailing_slots(&self) -> &[Slot] {
        debug_assert!(!self.is_inline());
        // SAFETY: `len > INLINE_TYPES`: the trailing table is the live field.
        let t = unsafe { self.slots.trailing };
        // SAFETY: `first` points to `cap` slots, all written before the node was published
        // (invariant 1), in the allocation of this header, alive while `self` is borrowed.
        unsafe { std::slice::from_raw_parts(t.first, t.cap) }
    }

    /// The trailing table's capacity (0 for an inline table).
    fn trailing_cap(&self) -> usize {
        if self.is_inline() {
            0
        } else {
            // SAFETY: `len > INLINE_TYPES`: the trailing table is the live field.
            unsafe { self.slots.trailing }.cap
        }
    }
}

/// Puts `slot` (of type `id`) in the trailing table `slots`, replacing its type's.
fn put(slots: &mut [Slot], slot: Slot, id: TypeId) {
    let mask = slots.len() - 1;
    let mut i = home(slot.key, mask);
    while !slots[i].node.is_null() && !holds(&slots[i], slot.key, id) {
        i = (i + 1) & mask;
    }
    slots[i] = slot;
}

/// The size of the table of a child of `parent` (`None`: no values yet) that adds a value
/// of type `id`: its length (distinct types), and the capacity of its trailing table
/// (`None`: inline).
fn table_size(parent: Option<&ValueHead>, id: TypeId) -> (usize, Option<usize>) {
    let Some(p) = parent else {
        return (1, None);
    };
    let len = p.len as usize + usize::from(p.find(id).is_none());
    if len <= INLINE_TYPES {
        return (len, None);
    }
    let want = (len * 4 / 3 + 1).next_power_of_two();
    // A parent's trailing table that is large enough is copied as it is.
    (len, Some(want.max(p.trailing_cap())))
}

/// The inline table of a child of `parent` that adds `own`, of type `id`, shadowing the
/// parent's value of that type (invariants 1 and 2); `len` is from [`table_size`].
fn inline_table(parent: Option<&ValueHead>, own: Slot, id: TypeId, len: usize) -> Slots {
    let (mut inline, parent_len) = match parent {
        // SAFETY: `p.len <= len <= INLINE_TYPES`: the parent's table is inline.
        Some(p) => (unsafe { p.slots.inline }, p.len as usize),
        None => ([EMPTY; INLINE_TYPES], 0),
    };
    match inline[..parent_len]
        .iter_mut()
        .find(|s| holds(s, own.key, id))
    {
        Some(s) => *s = own,
        None => inline[len - 1] = own,
    }
    Slots { inline }
}

/// Fills `slots`, the trailing table of a child of `p` that adds `own`, of type `id`
/// (invariants 1 and 2): a copy of the parent's trailing table if it has the same
/// capacity, else the parent's entries put afresh; then `own`.
fn fill_trailing(p: &ValueHead, own: Slot, id: TypeId, slots: &mut [Slot]) {
    if p.trailing_cap() == slots.len() {
        // The parent's table is trailing (a capacity above zero), of this length.
        slots.copy_from_slice(p.trailing_slots());
    } else {
        slots.fill(EMPTY);
        for s in p.entries() {
            // SAFETY: a filled slot points to a live node (invariant 2).
            put(slots, *s, unsafe { (*s.node).meta }.type_id);
        }
    }
    put(slots, own, id);
}

/// The allocation of a `ValueNode<T>` with a trailing table of `cap` slots, and the
/// table's offset in it.
fn node_layout<T>(cap: usize) -> (Layout, usize) {
    let (layout, offset) = Layout::new::<ValueNode<T>>()
        .extend(Layout::array::<Slot>(cap).expect("a value table fits in memory"))
        .expect("a value node fits in memory");
    (layout.pad_to_align(), offset)
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
#[cfg(not(loom))]
static TODO: StaticHead = StaticHead(todo_head());

// Loom's atomics cannot live in a plain static; a lazy one is made afresh per execution.
#[cfg(loom)]
loom::lazy_static! {
    static ref TODO: StaticHead = StaticHead(todo_head());
}

/// The head of the TODO marker (its count is never used).
#[cfg(not(loom))]
const fn todo_head() -> ValueHead {
    todo_head_with(AtomicU32::new(1))
}

#[cfg(loom)]
fn todo_head() -> ValueHead {
    todo_head_with(AtomicU32::new(1))
}

const fn todo_head_with(refs: AtomicU32) -> ValueHead {
    ValueHead {
        refs,
        len: 0,
        parent: ptr::null(),
        meta: &TODO_META,
        slots: Slots {
            inline: [EMPTY; INLINE_TYPES],
        },
    }
}

/// The TODO marker's meta: no value of any type.
static TODO_META: Meta = Meta {
    type_id: TypeId::of::<()>(),
    free: never_freed,
};

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
        let id = TypeId::of::<T>();
        let parent_table = parent.map(ValueRef::head);
        let (len, cap) = table_size(parent_table, id);
        let (layout, offset) = node_layout::<T>(cap.unwrap_or(0));
        // SAFETY: the layout has a non-zero size (the header alone is 88 bytes).
        let raw = unsafe { alloc::alloc(layout) };
        let Some(raw) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        let node = raw.as_ptr() as *mut ValueNode<T>;
        let own = Slot {
            key: key_of(id),
            node: node as *const ValueHead,
        };
        let slots = match (cap, parent_table) {
            (Some(cap), Some(p)) => {
                // SAFETY: `offset` and `cap` come from this allocation's layout: `cap`
                // slots, aligned, right after the `ValueNode<T>`; only we can see them.
                let table = unsafe { raw.as_ptr().add(offset) } as *mut Slot;
                // SAFETY: as just said; `fill_trailing` writes every slot before any read
                // (a copy, or `fill` first).
                let slice = unsafe { std::slice::from_raw_parts_mut(table, cap) };
                fill_trailing(p, own, id, slice);
                Slots {
                    trailing: Trailing { first: table, cap },
                }
            }
            _ => inline_table(parent_table, own, id, len),
        };
        // SAFETY: `node` is a fresh allocation of `ValueNode<T>`'s size and alignment (the
        // layout starts with it) that only we can see. The table is set before the node is
        // published (invariant 1) and points to this node and its ancestors (invariant 2).
        unsafe {
            node.write(ValueNode {
                head: ValueHead {
                    refs: AtomicU32::new(1),
                    len: len as u32,
                    parent: parent_head,
                    meta: MetaOf::<T>::META,
                    slots,
                },
                value,
            })
        };
        // `head` is the first field (repr(C)).
        ValueRef(raw.cast())
    }

    /// The nearest value of type `T`.
    #[inline]
    pub(crate) fn get<T: 'static>(&self) -> Option<&T> {
        let node = self.head().find(TypeId::of::<T>())?;
        // SAFETY: the slot's node holds a `T` (its meta's `TypeId` was compared), and it is
        // this node or an ancestor, alive while we are (invariant 2).
        Some(unsafe { &(*(node as *const ValueNode<T>)).value })
    }

    /// This node's own value, if it is a `T` (not an ancestor's).
    #[inline]
    pub(crate) fn own<T: 'static>(&self) -> Option<&T> {
        let head = self.head();
        if is_static(head) || head.meta.type_id != TypeId::of::<T>() {
            return None;
        }
        // SAFETY: the node's meta says its value is a `T`; our count keeps it alive.
        Some(unsafe { &(*(self.0.as_ptr() as *const ValueNode<T>)).value })
    }

    /// True if both refer to the same node.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn same(&self, other: &ValueRef) -> bool {
        self.0 == other.0
    }

    /// How many values are visible (distinct types).
    pub(crate) fn len(&self) -> usize {
        self.head().len as usize
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
        // Far from wrapping: abort, as `Arc` does on overflow (the count is 32 bits so the
        // header stays within its 88 bytes).
        if prev > u32::MAX / 2 {
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
        // The only count is ours: nobody else can clone it (a clone needs a count) or
        // release it, so no read-modify-write is needed. Acquire: every release by an
        // earlier holder (a Release `fetch_sub` that left 1) happens before the free. A
        // context made, used and dropped by one task (a request's values) takes this path.
        if head.refs.load(Ordering::Acquire) != 1 {
            // Release/Acquire as in `Arc`: every use through other counts happens before
            // the free.
            if head.refs.fetch_sub(1, Ordering::Release) != 1 {
                return;
            }
            // Acquire load rather than `fence(Acquire)`: the same synchronization (it reads
            // the last value of the release sequence our `fetch_sub` joined), and
            // ThreadSanitizer, which does not model fences, sees it too (std's `Arc` does
            // this under TSan).
            head.refs.load(Ordering::Acquire);
        }
        let parent = head.parent;
        // SAFETY: the count reached zero: nobody else can reach this node. Its count on the
        // parent moves to the next turn of the loop.
        unsafe { (head.meta.free)(h) };
        h = parent;
    }
}

/// # Safety
/// `h` is the head of a `ValueNode<T>` whose count is zero.
unsafe fn free_node<T>(h: *const ValueHead) {
    // SAFETY: the node is alive until the dealloc below; only we can reach it.
    let cap = unsafe { &*h }.trailing_cap();
    // SAFETY: `ValueRef::with` wrote a `ValueNode<T>` at `h`, dropped once, here (the
    // header owns nothing to drop; the trailing table is plain slots).
    unsafe { ptr::drop_in_place(h as *mut ValueNode<T>) };
    // SAFETY: allocated by `ValueRef::with` with this layout: the capacity is the one its
    // header recorded.
    unsafe { alloc::dealloc(h as *mut u8, node_layout::<T>(cap).0) };
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
    fn over_aligned_and_zero_sized_values_with_a_trailing_table() {
        // The trailing table follows the value: its offset depends on the value's size and
        // alignment. A drop counter checks each value is dropped once, with its node.
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        #[repr(align(64))]
        struct Wide(u8);
        impl Drop for Wide {
            fn drop(&mut self) {
                DROPS.fetch_add(1, SeqCst);
            }
        }
        struct Unit;
        {
            let mut v = ValueRef::with(None, 1u8);
            v = ValueRef::with(Some(&v), 2u16);
            v = ValueRef::with(Some(&v), 3u32);
            v = ValueRef::with(Some(&v), 4u64);
            v = ValueRef::with(Some(&v), Wide(5));
            assert_eq!(
                v.0.as_ptr() as usize % 64,
                0,
                "the node keeps the value's alignment"
            );
            v = ValueRef::with(Some(&v), Unit);
            v = ValueRef::with(Some(&v), Wide(7));
            assert_eq!(v.len(), 6);
            assert_eq!(v.get::<Wide>().map(|w| w.0), Some(7));
            assert!(v.get::<Unit>().is_some());
            assert_eq!(v.get::<u8>(), Some(&1));
            assert_eq!(v.get::<u64>(), Some(&4));
            assert_eq!(DROPS.load(SeqCst), 0);
        }
        assert_eq!(DROPS.load(SeqCst), 2);
    }

    #[test]
    fn zero_sized_values_are_found() {
        struct Unit;
        let v = ValueRef::with(None, Unit);
        assert!(v.get::<Unit>().is_some());
        assert!(ValueRef::todo().get::<Unit>().is_none());
    }
}
