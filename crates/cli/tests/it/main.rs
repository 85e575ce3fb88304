//! The `agora` binary's integration tests, one module per former `tests/*.rs` file, in
//! one test binary: `cargo test` links the dependency graph once, not once per file.

#![allow(clippy::unwrap_used)]

mod pay_servers;
mod support;

mod cli;
mod crash;
mod discover_paid;
mod doctor;
mod facilitator;
// The commands exist only in a build with the `kubernetes` feature (scripts/test has it).
#[cfg(feature = "kubernetes")]
mod kubernetes;
mod mcp;
mod metrics;
mod pay;
mod pay_interop;
mod pipe;
mod pricing;
mod research;
mod research_gate;
mod research_publish;
mod research_sandbox;
mod sell;
mod serve;
mod skills;
mod soak;
mod tunnel;
mod wallet;
