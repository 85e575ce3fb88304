//! buyer's integration tests in one test binary: `Buyer` against a small x402 seller
//! on loopback, with a real wallet ledger in a temporary `$AGORA_HOME`.

#![allow(clippy::unwrap_used)]

mod pay;
