//! gateway's integration tests, one module per former `tests/*.rs` file, in one test
//! binary: `cargo test` links the crate and its dependency graph once, not per file.

#![allow(clippy::unwrap_used)]

mod support;

mod bound;
mod browser;
mod client;
mod hygiene;
mod inference_paths;
mod money_safety;
mod official_clients;
mod operator;
mod paid;
mod properties;
mod replicas;
mod spent_elsewhere;
