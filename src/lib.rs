//! ctxcore: work in progress.
