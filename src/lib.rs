//! ctxcore: work in progress.

pub mod group;
#[cfg(unix)]
pub mod signal;
