//! Behaviours 7 and 8: values and `without_cancel`.
mod common;
use ctxcore::Context;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, PartialEq)]
struct User(&'static str);
#[derive(Debug, PartialEq)]
struct Trace(u64);

#[test]
fn nearest_value_wins_and_parents_never_see_children() {
    let _leaks = common::leak_check();
    let root = Context::background().with_value(User("root"));
    let child = root.with_value(User("child")).with_value(Trace(9));
    assert_eq!(child.value::<User>(), Some(&User("child")));
    assert_eq!(child.value::<Trace>(), Some(&Trace(9)));
    assert_eq!(root.value::<User>(), Some(&User("root")));
    assert_eq!(root.value::<Trace>(), None);
}

#[test]
fn values_survive_every_derivation() {
    let _leaks = common::leak_check();
    let ctx = Context::background().with_value(User("u"));
    let (a, _h) = ctx.with_cancel();
    let (b, _h) = a.with_timeout(std::time::Duration::from_secs(60));
    let (c, _h) = b.with_deadline(std::time::Instant::now() + std::time::Duration::from_secs(9));
    let d = c.without_cancel();
    for x in [&a, &b, &c, &d] {
        assert_eq!(x.value::<User>(), Some(&User("u")));
    }
}

#[test]
fn zero_sized_and_non_clone_values() {
    let _leaks = common::leak_check();
    struct Marker;
    struct NotClone(std::sync::Mutex<u8>);
    let ctx = Context::background()
        .with_value(Marker)
        .with_value(NotClone(std::sync::Mutex::new(3)))
        .with_value(());
    assert!(ctx.value::<Marker>().is_some());
    assert_eq!(*ctx.value::<NotClone>().unwrap().0.lock().unwrap(), 3);
    assert_eq!(ctx.value::<()>(), Some(&()));
}

#[test]
fn deep_chains_find_every_type() {
    let _leaks = common::leak_check();
    let n = common::scaled(10_000) as u64;
    let mut ctx = Context::background().with_value(User("bottom"));
    let mut last_u32 = 0;
    for i in 0..n {
        ctx = ctx.with_value(Trace(i));
        if i % 3 == 0 {
            ctx = ctx.with_value(i as u32);
            last_u32 = i as u32;
        }
    }
    assert_eq!(ctx.value::<User>(), Some(&User("bottom")));
    assert_eq!(ctx.value::<Trace>(), Some(&Trace(n - 1)));
    assert_eq!(ctx.value::<u32>(), Some(&last_u32));
}

#[test]
fn many_distinct_types_spill_and_still_work() {
    let _leaks = common::leak_check();
    macro_rules! types { ($($t:ident),*) => { $(#[derive(Debug, PartialEq)] struct $t(u8);)* } }
    types!(A, B, C, D, E, F, G, H, I, J);
    let ctx = Context::background()
        .with_value(A(1))
        .with_value(B(2))
        .with_value(C(3))
        .with_value(D(4))
        .with_value(E(5))
        .with_value(F(6))
        .with_value(G(7))
        .with_value(H(8))
        .with_value(I(9))
        .with_value(J(10));
    assert_eq!(ctx.value::<A>(), Some(&A(1)));
    assert_eq!(ctx.value::<E>(), Some(&E(5)));
    assert_eq!(ctx.value::<J>(), Some(&J(10)));
}

#[test]
fn values_are_dropped_exactly_once() {
    let _leaks = common::leak_check();
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    {
        let mut ctx = Context::background();
        for _ in 0..100 {
            ctx = ctx.with_value(Counted(drops.clone())).with_value(1u8);
        }
        let _clone = ctx.clone();
        // As in Go, a chain keeps its ancestors' values alive while it lives.
        assert_eq!(drops.load(Ordering::SeqCst), 0);
    }
    assert_eq!(drops.load(Ordering::SeqCst), 100);
}

#[test]
fn without_cancel_is_never_done_and_independent() {
    let _leaks = common::leak_check();
    let (parent, ph) = Context::background()
        .with_value(Trace(1))
        .with_timeout(std::time::Duration::from_millis(5));
    let detached = parent.without_cancel();
    let (under, _uh) = detached.with_cancel();
    ph.cancel();
    assert!(parent.is_done());
    assert!(!detached.is_done() && detached.err().is_none() && detached.deadline().is_none());
    assert!(!under.is_done());
    assert_eq!(under.value::<Trace>(), Some(&Trace(1)));
    assert!(!detached.wait_timeout(std::time::Duration::from_millis(20)));
}

#[test]
fn values_cross_threads() {
    let _leaks = common::leak_check();
    let ctx = Context::background()
        .with_value(User("sent"))
        .with_value(Trace(3));
    let got = std::thread::spawn(move || {
        (
            ctx.value::<User>().map(|u| u.0),
            ctx.value::<Trace>().map(|t| t.0),
        )
    })
    .join()
    .unwrap();
    assert_eq!(got, (Some("sent"), Some(3)));
}

/// Randomized against a model: chains of `with_value` over 12 value types (so tables move
/// from inline to the heap and back along a chain), with cancellable links in between,
/// random parents and random drops. After every step, every context still held answers
/// every type as the model says; at the end every value was dropped exactly once.
#[test]
fn values_match_a_model_of_shadowing_across_inline_and_heap_tables() {
    use std::collections::HashMap;
    let _leaks = common::leak_check();
    let probe = Arc::new(());
    macro_rules! types {
        ($($t:ident),*) => {
            $(#[derive(Debug)] struct $t(u64, #[allow(dead_code)] Arc<()>);)*
            /// `ctx` with a value of type number `i` holding `v`.
            fn put(ctx: &Context, i: usize, v: u64, probe: &Arc<()>) -> Context {
                let mut n = 0;
                $(
                    if i == n {
                        return ctx.with_value($t(v, probe.clone()));
                    }
                    n += 1;
                )*
                unreachable!("type {i} of {n}")
            }
            /// What `ctx` answers for type number `i`.
            fn get(ctx: &Context, i: usize) -> Option<u64> {
                let mut n = 0;
                $(
                    if i == n {
                        return ctx.value::<$t>().map(|x| x.0);
                    }
                    n += 1;
                )*
                unreachable!("type {i} of {n}")
            }
        };
    }
    types!(A, B, C, D, E, F, G, H, I, J, K, L);
    const TYPES: usize = 12;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for seed in 0..40u64 {
        // Contexts held, each with the model of what it sees, and handles to keep alive.
        let mut pool: Vec<(Context, HashMap<usize, u64>)> =
            vec![(Context::background(), HashMap::new())];
        let mut handles = Vec::new();
        // Some seeds use few types (inline tables only), others all twelve.
        let span = if seed % 3 == 0 { 4 } else { TYPES };
        for step in 0..400u64 {
            let r = next();
            let p = (r as usize) % pool.len();
            let (parent, model) = (pool[p].0.clone(), pool[p].1.clone());
            match (r >> 32) % 10 {
                0 => {
                    let (c, h) = parent.with_cancel();
                    handles.push(h);
                    pool.push((c, model));
                }
                1 if pool.len() > 1 => {
                    pool.swap_remove(p.max(1));
                }
                _ => {
                    let i = ((r >> 40) as usize) % span;
                    let v = seed * 1_000_000 + step;
                    let mut m = model;
                    m.insert(i, v);
                    pool.push((put(&parent, i, v, &probe), m));
                }
            }
            // The newest context and a few random ones each step; all of them every 50.
            let all = step % 50 == 49;
            let picks: Vec<usize> = if all {
                (0..pool.len()).collect()
            } else {
                let mut v = vec![pool.len() - 1];
                v.extend((0..4).map(|_| next() as usize % pool.len()));
                v
            };
            for (ctx, m) in picks.iter().map(|&k| &pool[k]) {
                for i in 0..TYPES {
                    assert_eq!(
                        get(ctx, i),
                        m.get(&i).copied(),
                        "seed {seed} step {step} type {i}"
                    );
                }
                if !m.is_empty() {
                    let debug = format!("{ctx:?}");
                    assert!(
                        debug.contains(&format!("values: {}", m.len())),
                        "seed {seed} step {step}: {debug}"
                    );
                }
            }
        }
        drop(pool);
        drop(handles);
        assert_eq!(
            Arc::strong_count(&probe),
            1,
            "seed {seed}: values not dropped"
        );
    }
}
