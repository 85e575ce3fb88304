//! research's integration tests, one module per former `tests/*.rs` file, in one test
//! binary: `cargo test` links the crate and its dependency graph once, not per file.

#![allow(clippy::unwrap_used)]

mod support;

#[cfg(feature = "coordinator")]
mod coordinator;
mod publish;
mod worker;
