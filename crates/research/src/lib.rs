//! Autoresearch: selling GPU time as experiments. A worker runs a buyer's `train.py`
//! under a time budget and reports `val_bpb`; publishing turns the best checkpoint into
//! a sold model whose provenance (the hash of the exact `train.py`) anyone can check.
//!
//! This lives in its own crate so the CLI, the seller daemon, the coordinator and the
//! tests share one implementation of the worker's HTTP API and of the train hash.

pub mod coordinator;
pub mod publish;
pub mod worker;

use sha2::{Digest, Sha256};

/// The train hash, `sha256:<hex>` of the raw bytes of a `train.py`. The worker, the
/// coordinator and publish all call this one function, so a hash taken on one side
/// matches the other (the reference hashed whitespace-stripped text and never matched).
pub fn train_hash(train_py: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(train_py)))
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn train_hash_is_sha256_of_the_raw_bytes() {
        assert_eq!(
            super::train_hash(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(super::train_hash(b"x\n"), super::train_hash(b"x"));
    }
}
