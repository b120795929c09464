//! Request-scoped values: a flattened map per `with_value`, so lookup does not depend on
//! the chain's depth.
//!
//! `with_value::<T>(v)` makes one allocation, a `ValueNode<T>` holding `v` and a small map
//! of the *other* value types visible from the parent: for each type, where its nearest
//! value lives. The map is the parent's map, minus the entry for `T` (shadowed), plus the
//! parent's own value. A lookup compares the node's own type, then at most one entry per
//! distinct type: its cost follows the number of distinct types in scope, never the depth.
//!
//! Up to [`INLINE`] other types live inline; more spill into a `Vec` (a second allocation
//! for that `with_value` only).
//!
//! The maps are immutable once built, so they need no atomics of their own: a `Context`
//! carries its map pointer, and sending the context publishes the map (arc-swap would add
//! an atomic swap for nothing here). Each map entry holds a counted reference to the node
//! whose value it points to. Release is iterative, so a chain of any depth drops on a small
//! stack.

use std::any::TypeId;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
use std::sync::atomic::{fence, AtomicUsize, Ordering};

/// Other value types a map holds without a second allocation.
pub(crate) const INLINE: usize = 5;

/// Where the nearest value of one type lives.
#[derive(Clone, Copy)]
struct Slot {
    type_id: TypeId,
    head: *const ValueHead,
    value: *const (),
}

struct Map {
    len: usize,
    /// `inline[..min(len, INLINE)]` are initialized.
    inline: [MaybeUninit<Slot>; INLINE],
    spill: Vec<Slot>,
}

impl Map {
    const EMPTY: Map = Map {
        len: 0,
        inline: [MaybeUninit::uninit(); INLINE],
        spill: Vec::new(),
    };

    fn push(&mut self, slot: Slot) {
        if self.len < INLINE {
            self.inline[self.len] = MaybeUninit::new(slot);
        } else {
            self.spill.push(slot);
        }
        self.len += 1;
    }

    #[inline]
    fn inline(&self) -> &[Slot] {
        let n = self.len.min(INLINE);
        // SAFETY: the first `n` inline slots were written by `push` (see the field doc);
        // `MaybeUninit<Slot>` has the layout of `Slot`.
        unsafe { std::slice::from_raw_parts(self.inline.as_ptr().cast::<Slot>(), n) }
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.inline().iter().chain(self.spill.iter())
    }

    /// The slot for `id`: a tight scan of the inline slots, then the spill.
    #[inline]
    fn find(&self, id: TypeId) -> Option<&Slot> {
        for slot in self.inline() {
            if slot.type_id == id {
                return Some(slot);
            }
        }
        if self.len > INLINE {
            return self.spill.iter().find(|s| s.type_id == id);
        }
        None
    }
}

/// The type-erased header of every value node.
#[repr(C)]
pub(crate) struct ValueHead {
    /// Counted references: contexts and other maps' slots. Unused for the static TODO head.
    refs: AtomicUsize,
    /// The type of this node's own value (`None` for the TODO marker, which has none).
    own: Option<TypeId>,
    /// This node's own value.
    own_value: *const (),
    /// Frees the whole `ValueNode<T>` (but not what its slots point to).
    free: unsafe fn(*const ValueHead),
    map: Map,
}

#[repr(C)]
struct ValueNode<T> {
    head: ValueHead,
    value: T,
}

struct StaticHead(ValueHead);
// SAFETY: the static head has no value and an empty map; it is never written.
unsafe impl Sync for StaticHead {}

unsafe fn never_freed(_: *const ValueHead) {}

/// The marker head of `Context::todo()`: no values, only a different identity.
static TODO: StaticHead = StaticHead(ValueHead {
    refs: AtomicUsize::new(1),
    own: None,
    own_value: ptr::null(),
    free: never_freed,
    map: Map::EMPTY,
});

/// A counted reference to a value node (or the static TODO marker).
pub(crate) struct ValueRef(NonNull<ValueHead>);

// SAFETY: values are `Send + Sync` (enforced by `with_value`), maps are immutable, and the
// count is atomic.
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
        let id = TypeId::of::<T>();
        let mut map = Map::EMPTY;
        if let Some(p) = parent {
            let ph = p.head();
            let parent_own = ph.own.map(|t| Slot {
                type_id: t,
                head: ph,
                value: ph.own_value,
            });
            for slot in parent_own.iter().chain(ph.map.iter()) {
                if slot.type_id != id {
                    // SAFETY: the slot's head is alive: `ph` holds a count on it (or is it).
                    unsafe { acquire(slot.head) };
                    map.push(*slot);
                }
            }
        }
        let node = Box::into_raw(Box::new(ValueNode {
            head: ValueHead {
                refs: AtomicUsize::new(1),
                own: Some(id),
                own_value: ptr::null(),
                free: free_node::<T>,
                map,
            },
            value,
        }));
        // SAFETY: `node` is a fresh allocation only we can see.
        unsafe { (*node).head.own_value = ptr::addr_of!((*node).value) as *const () };
        // SAFETY: `Box::into_raw` is non-null; `head` is the first field (repr(C)).
        ValueRef(unsafe { NonNull::new_unchecked(node as *mut ValueHead) })
    }

    /// The nearest value of type `T`.
    #[inline]
    pub(crate) fn get<T: 'static>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        let head = self.head();
        if head.own == Some(id) {
            // SAFETY: `own == T` means this head starts a `ValueNode<T>`, alive while we are.
            return Some(unsafe { &*(head.own_value as *const T) });
        }
        head.map
            .find(id)
            // SAFETY: the slot's type is `T` and we hold (through `head`) a count on the
            // node that owns the value.
            .map(|s| unsafe { &*(s.value as *const T) })
    }

    /// How many values are visible (distinct types).
    pub(crate) fn len(&self) -> usize {
        let h = self.head();
        h.map.len + usize::from(h.own.is_some())
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

/// Gives up one count; frees every node that reaches zero, iteratively.
///
/// # Safety
/// The caller owns one count on `h`.
unsafe fn release(h: *const ValueHead) {
    let mut current = Some(h);
    let mut pending: Vec<*const ValueHead> = Vec::new();
    while let Some(h) = current.take().or_else(|| pending.pop()) {
        if is_static(h) {
            continue;
        }
        // SAFETY: we own a count, so `h` is alive.
        let head = unsafe { &*h };
        // Release/Acquire as in `Arc`: every use through other counts happens before the free.
        if head.refs.fetch_sub(1, Ordering::Release) != 1 {
            continue;
        }
        fence(Ordering::Acquire);
        for slot in head.map.iter() {
            if current.is_none() {
                current = Some(slot.head);
            } else {
                pending.push(slot.head);
            }
        }
        // SAFETY: the count reached zero: nobody else can reach this node. Its slots'
        // counts were moved to `current`/`pending` above, so freeing drops nothing twice.
        unsafe { (head.free)(h) };
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
    fn spill_beyond_inline() {
        macro_rules! chain {
            ($($t:ident),*) => {{
                $(#[derive(Debug, PartialEq)] struct $t(u8);)*
                let mut v = ValueRef::todo();
                let mut i = 0u8;
                $( i += 1; v = ValueRef::with(Some(&v), $t(i)); )*
                let mut j = 0u8;
                $( j += 1; assert_eq!(v.get::<$t>(), Some(&$t(j))); )*
                v
            }};
        }
        let v = chain!(A, B, C, D, E, F, G, H);
        assert_eq!(v.len(), 8);
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
}
