//! The hashed timing wheel owned by the driver thread.
//!
//! 4096 slots of 1 ms: an entry due at tick `t` sits in slot `t % 4096`, with its tick kept
//! so that an entry more than one revolution away stays put until its round comes. Insert
//! and remove are O(1) (a push, and a swap-remove with the moved entry's index fixed). A
//! bitmap of non-empty slots finds the next slot to visit with a few word scans.

use super::entry::{TimerEntry, WheelPos};
use std::time::{Duration, Instant};

/// Slots in the wheel (a power of two).
pub(crate) const SLOTS: usize = 4096;
const WORDS: usize = SLOTS / 64;

/// One tick.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// The wheel.
pub(crate) struct Wheel {
    start: Instant,
    slots: Vec<Vec<*const TimerEntry>>,
    occupied: [u64; WORDS],
    len: usize,
    /// The last tick whose slot has been processed.
    current: u64,
}

impl Wheel {
    /// An empty wheel whose tick 0 is `start`.
    pub(crate) fn new(start: Instant) -> Wheel {
        Wheel {
            start,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; WORDS],
            len: 0,
            current: 0,
        }
    }

    /// The first tick at or after `at` (deadlines round up: never fire early).
    pub(crate) fn tick_ceil(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.start).as_nanos();
        let tick = nanos.div_ceil(TICK.as_nanos());
        u64::try_from(tick).unwrap_or(u64::MAX)
    }

    /// The last tick that has fully passed at `at`.
    pub(crate) fn tick_floor(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.start).as_nanos();
        u64::try_from(nanos / TICK.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant at which `tick` begins.
    pub(crate) fn instant_of(&self, tick: u64) -> Option<Instant> {
        self.start
            .checked_add(TICK.checked_mul(u32::try_from(tick).ok()?)?)
    }

    /// Puts `t` in the wheel. Returns false (leaving it out) if it is already due.
    ///
    /// # Safety
    ///
    /// `t` is live, owned by the driver's count, not in the wheel; driver thread only.
    pub(crate) unsafe fn insert(&mut self, t: *const TimerEntry) -> bool {
        // SAFETY: per the contract.
        let entry = unsafe { &*t };
        let tick = self.tick_ceil(entry.deadline);
        if tick <= self.current {
            return false;
        }
        let slot = (tick % SLOTS as u64) as usize;
        self.slots[slot].push(t);
        self.occupied[slot / 64] |= 1 << (slot % 64);
        self.len += 1;
        // A slot would need 2^32 entries (hundreds of GB of timers) to overflow the index.
        let index =
            u32::try_from(self.slots[slot].len() - 1).unwrap_or_else(|_| std::process::abort());
        // SAFETY: driver thread only, per the contract.
        unsafe {
            entry.set_pos(WheelPos {
                tick,
                slot: slot as u32,
                index,
            })
        };
        true
    }

    /// Takes `t` out of the wheel if it is in it.
    ///
    /// # Safety
    ///
    /// `t` is live; driver thread only.
    pub(crate) unsafe fn remove(&mut self, t: *const TimerEntry) {
        // SAFETY: `t` is live, and this is the driver thread (the contract).
        let entry = unsafe { &*t };
        // SAFETY: driver thread only.
        let pos = unsafe { entry.pos() };
        if pos.index == u32::MAX {
            return;
        }
        let slot = &mut self.slots[pos.slot as usize];
        slot.swap_remove(pos.index as usize);
        if let Some(&moved) = slot.get(pos.index as usize) {
            // SAFETY: entries in the wheel are live; driver thread only.
            let moved = unsafe { &*moved };
            // SAFETY: driver thread only.
            unsafe {
                moved.set_pos(WheelPos {
                    index: pos.index,
                    ..moved.pos()
                })
            };
        }
        if slot.is_empty() {
            self.occupied[pos.slot as usize / 64] &= !(1 << (pos.slot % 64));
        }
        self.len -= 1;
        // SAFETY: driver thread only.
        unsafe {
            entry.set_pos(WheelPos {
                index: u32::MAX,
                ..pos
            })
        };
    }

    /// Moves time to `now`, taking out every entry due by then and passing it to `due`.
    pub(crate) fn advance(&mut self, now: u64, mut due: impl FnMut(*const TimerEntry)) {
        if now <= self.current {
            return;
        }
        let span = now - self.current;
        let mut visit = |wheel: &mut Wheel, slot: usize| {
            let mut i = 0;
            while i < wheel.slots[slot].len() {
                let t = wheel.slots[slot][i];
                // SAFETY: entries in the wheel are live; driver thread only.
                let tick = unsafe { (*t).pos() }.tick;
                if tick <= now {
                    // SAFETY: `t` is in the wheel; driver thread only.
                    unsafe { wheel.remove(t) };
                    due(t);
                } else {
                    i += 1;
                }
            }
        };
        if span >= SLOTS as u64 {
            for slot in 0..SLOTS {
                if self.occupied[slot / 64] & (1 << (slot % 64)) != 0 {
                    visit(self, slot);
                }
            }
        } else {
            for tick in self.current + 1..=now {
                let slot = (tick % SLOTS as u64) as usize;
                if self.occupied[slot / 64] & (1 << (slot % 64)) != 0 {
                    visit(self, slot);
                }
            }
        }
        self.current = now;
    }

    /// The next tick after the current one whose slot is not empty (an entry there may
    /// still be rounds away: waking for it is harmless).
    pub(crate) fn next_tick(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let start = self.current + 1;
        for k in 0..SLOTS as u64 {
            let slot = ((start + k) % SLOTS as u64) as usize;
            if self.occupied[slot / 64] & (1 << (slot % 64)) != 0 {
                return Some(start + k);
            }
        }
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn entry(at: Instant) -> *const TimerEntry {
        TimerEntry::new(at, None)
    }

    fn free(t: *const TimerEntry) {
        // SAFETY: test entries hold two counts and no node.
        unsafe {
            super::super::entry::release(t);
            super::super::entry::release(t);
        }
    }

    #[test]
    fn fires_in_order_and_never_early() {
        let start = Instant::now();
        let mut w = Wheel::new(start);
        let ts: Vec<_> = [5u64, 1, 5000, 3]
            .iter()
            .map(|&ms| entry(start + Duration::from_millis(ms)))
            .collect();
        for &t in &ts {
            // SAFETY: fresh entries.
            assert!(unsafe { w.insert(t) });
        }
        assert_eq!(w.next_tick(), Some(1));
        let mut fired = Vec::new();
        w.advance(3, |t| fired.push(t));
        assert_eq!(fired, vec![ts[1], ts[3]]);
        w.advance(4, |t| fired.push(t));
        assert_eq!(fired.len(), 2);
        w.advance(4999, |t| fired.push(t));
        assert_eq!(fired.len(), 3, "the 5000 ms entry waits for its round");
        w.advance(5000, |t| fired.push(t));
        assert_eq!(fired.len(), 4);
        assert_eq!(w.len, 0);
        ts.into_iter().for_each(free);
    }

    #[test]
    fn remove_keeps_the_others() {
        let start = Instant::now();
        let mut w = Wheel::new(start);
        let ts: Vec<_> = (0..3)
            .map(|_| entry(start + Duration::from_millis(7)))
            .collect();
        for &t in &ts {
            // SAFETY: fresh entries.
            unsafe { w.insert(t) };
        }
        // SAFETY: in the wheel.
        unsafe { w.remove(ts[0]) };
        let mut fired = Vec::new();
        w.advance(10, |t| fired.push(t));
        fired.sort();
        let mut want = vec![ts[1], ts[2]];
        want.sort();
        assert_eq!(fired, want);
        ts.into_iter().for_each(free);
    }
}
