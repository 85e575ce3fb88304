//! The indexer end to end, against a real anvil devnet, real HTTP on loopback and
//! SQLite in temporary directories: discovery filters over real registrations, URI
//! updates and NFT transfers, a reorg made with anvil's snapshot/revert, a restart that
//! resumes from the cursor, registration files that fail in every way, and an RPC that
//! refuses large log ranges or is down.

#![allow(clippy::unwrap_used)]

mod common;
mod discovery;
mod fetch_errors;
mod ranges;
mod reorg;
