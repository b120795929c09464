//! Cancelling a tree: a parent with 1,000 children (`flat1000`), and a 3-level tree of
//! fan-out 10 under one root (`fanout10x3`: 10 + 100 + 1,000 = 1,110 nodes).
//!
//! `tree_cancel` times only the root's `cancel()` (the tree is built and dropped outside the
//! clock); `tree_full` times build + cancel + drop. The report divides by the node count.
//! After every cancel, every node is asserted done.

use std::time::{Duration, Instant};

use common::{mutex_ctx, Ctx};
use criterion::{criterion_group, criterion_main, Criterion};

mod common;

/// Nodes under the root in each shape.
const FLAT: usize = 1_000;
const FAN: usize = 10;

/// Every node of a tree but its root, with its handle.
type Nodes<C> = Vec<(C, <C as Ctx>::Handle)>;

fn build_flat<C: Ctx>(root: &C, nodes: &mut Nodes<C>) {
    for _ in 0..FLAT {
        nodes.push(root.child());
    }
}

fn build_fanout<C: Ctx>(root: &C, nodes: &mut Nodes<C>) {
    for _ in 0..FAN {
        nodes.push(root.child());
    }
    for level in 0..2 {
        let (from, to) = if level == 0 {
            (0, FAN)
        } else {
            (FAN, FAN + FAN * FAN)
        };
        for i in from..to {
            let parent = nodes[i].0.clone();
            for _ in 0..FAN {
                nodes.push(parent.child());
            }
        }
    }
}

fn shape<C: Ctx>(c: &mut Criterion, name: &str, build: fn(&C, &mut Nodes<C>)) {
    let (server, _server_handle) = C::cancellable_root();
    let count = if name == "flat1000" {
        FLAT
    } else {
        FAN + FAN * FAN + FAN * FAN * FAN
    };
    let mut nodes: Nodes<C> = Vec::with_capacity(count);
    c.bench_function(&format!("tree_cancel/{name}/{}", C::NAME), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (root, handle) = server.child();
                build(&root, &mut nodes);
                assert_eq!(nodes.len(), count);
                assert!(!nodes[count - 1].0.is_done());
                let start = Instant::now();
                C::cancel(&handle);
                total += start.elapsed();
                assert!(root.is_done());
                assert!(nodes.iter().all(|(n, _)| n.is_done()));
                nodes.clear();
            }
            assert!(!server.is_done());
            total
        })
    });
    c.bench_function(&format!("tree_full/{name}/{}", C::NAME), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let (root, handle) = server.child();
                build(&root, &mut nodes);
                C::cancel(&handle);
                let done = nodes[count - 1].0.is_done();
                nodes.clear();
                drop(root);
                drop(handle);
                total += start.elapsed();
                assert!(done);
            }
            assert!(!server.is_done());
            total
        })
    });
}

fn peer<C: Ctx>(c: &mut Criterion) {
    shape::<C>(c, "flat1000", build_flat::<C>);
    shape::<C>(c, "fanout10x3", build_fanout::<C>);
}

fn benches(c: &mut Criterion) {
    peer::<ctxcore::Context>(c);
    peer::<mutex_ctx::Context>(c);
    peer::<tokio_util::sync::CancellationToken>(c);
}

criterion_group!(tree, benches);
criterion_main!(tree);
