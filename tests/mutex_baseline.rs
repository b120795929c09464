//! Runs the unit tests of the benchmarks' mutex baseline (benches/baseline/mutex_ctx.rs), so
//! the peer the benches compare against is known to be correct.

#[path = "../benches/baseline/mutex_ctx.rs"]
mod mutex_ctx;
