//! operator's integration tests, one module per former `tests/*.rs` file, in one test
//! binary: `cargo test` links the crate and its dependency graph once, not per file.

#![allow(clippy::unwrap_used)]

mod cluster_gateway;
mod crd;
mod facilitator_policy;
mod manifests;
mod reconcile_mock_apiserver;
