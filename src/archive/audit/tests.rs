//! Tests of the lock audit (see `tests/lock_audit.rs` for the end-to-end ones).
