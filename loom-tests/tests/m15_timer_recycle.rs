//! Model 15: the recycling of timer entries (`timer/recycle.rs`): the driver pushing the
//! chain of one turn while other threads take the whole shared stack and reuse what they
//! took. Every entry given back is taken exactly once or freed at the end, never handed to
//! two threads, and nothing is lost (checked by counting addresses).
//!
//! Injected bug it caught: taking one entry off the shared stack by a load and a plain
//! store instead of swapping the whole stack out: two threads took the same entry.
#![cfg(loom)]

use ctxcore::__loom;
use ctxcore_loom_tests::model;
use loom::thread;
use std::collections::HashSet;

#[test]
fn driver_turns_racing_takers() {
    model(|| {
        let driver = thread::spawn(|| {
            __loom::recycle_driver_turn(2);
            __loom::recycle_driver_turn(1);
        });
        let taker = thread::spawn(|| {
            let got: Vec<usize> = (0..2).filter_map(|_| __loom::recycle_take()).collect();
            (got, __loom::recycle_drain())
        });
        let mine: Vec<usize> = (0..2).filter_map(|_| __loom::recycle_take()).collect();
        driver.join().unwrap();
        let (theirs, their_left) = taker.join().unwrap();
        let my_left = __loom::recycle_drain();
        // Nothing is freed before this check, so no address can come back: one that shows
        // up twice was handed to two takers.
        let taken: Vec<usize> = mine.iter().chain(&theirs).copied().collect();
        let dead: Vec<usize> = my_left.iter().chain(&their_left).copied().collect();
        let distinct: HashSet<usize> = taken.iter().chain(&dead).copied().collect();
        assert_eq!(
            distinct.len(),
            taken.len() + dead.len(),
            "an entry handed out twice"
        );
        assert_eq!(
            distinct.len(),
            3,
            "given back 3, accounted {}",
            distinct.len()
        );
        for a in taken {
            __loom::recycle_free(a);
        }
        for a in dead {
            __loom::recycle_free_dead(a);
        }
        vec![]
    });
}
