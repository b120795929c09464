//! Behaviour 16: no recursion on depth. 1,000,000-deep chains on a 2 MiB stack.
mod common;
use ctxcore::Context;
use std::thread;

const DEPTH: usize = if cfg!(miri) { 1_000 } else { 1_000_000 };

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .expect("ran on a 2 MiB stack");
}

#[test]
fn cancel_and_drop_a_deep_chain() {
    let _leaks = common::leak_check();
    on_small_stack(|| {
        let before = ctxcore::live::snapshot();
        let (root, root_handle) = Context::background().with_cancel();
        let mut handles = Vec::with_capacity(DEPTH);
        let mut ctx = root.clone();
        for _ in 0..DEPTH {
            let (c, h) = ctx.with_cancel();
            handles.push(h);
            ctx = c;
        }
        root_handle.cancel();
        assert!(ctx.is_done(), "the leaf is done when cancel returns");
        drop(handles);
        drop(ctx);
        drop((root, root_handle));
        ctxcore::live::wait_for_baseline(&before, std::time::Duration::from_secs(10))
            .expect("every node released");
    });
}

#[test]
fn drop_a_deep_chain_without_cancelling() {
    let _leaks = common::leak_check();
    on_small_stack(|| {
        let before = ctxcore::live::snapshot();
        let memory = ctxcore::live::entries_in_memory();
        let (root, root_handle) = Context::background().with_cancel();
        let mut ctx = root.clone();
        for _ in 0..DEPTH {
            let (c, h) = ctx.with_cancel();
            h.disarm();
            ctx = c;
        }
        assert!(!ctx.is_done());
        drop(ctx); // releases the whole chain, leaf first
        drop((root, root_handle));
        ctxcore::live::wait_for_baseline(&before, std::time::Duration::from_secs(10))
            .expect("every node released");
        if common::isolated() {
            let now = ctxcore::live::entries_in_memory();
            assert_eq!(now, memory, "every node finalized");
        }
    });
}

#[test]
fn drop_a_deep_value_chain() {
    let _leaks = common::leak_check();
    on_small_stack(|| {
        let mut ctx = Context::background();
        for i in 0..DEPTH {
            ctx = ctx.with_value(i as u32).with_value(i as u64);
        }
        assert_eq!(ctx.value::<u32>(), Some(&(DEPTH as u32 - 1)));
        drop(ctx);
    });
}

#[test]
fn deep_mixed_chain_with_timeouts_and_values() {
    let _leaks = common::leak_check();
    on_small_stack(|| {
        let (root, root_handle) = Context::background().with_cancel();
        let mut ctx = root.clone();
        for i in 0..DEPTH / 10 {
            let (c, h) = if i % 2 == 0 {
                ctx.with_timeout(std::time::Duration::from_secs(600))
            } else {
                ctx.with_cancel()
            };
            h.disarm();
            ctx = c.with_value(i);
        }
        root_handle.cancel();
        assert!(ctx.is_done());
    });
}
