//! Autoresearch: selling GPU time as experiments. A worker runs a buyer's `train.py`
//! under a time budget and reports `val_bpb`; publishing turns the best checkpoint into
//! a sold model whose provenance (the hash of the exact `train.py`) anyone can check.
//!
//! This lives in its own crate so the CLI, the seller daemon, the coordinator and the
//! tests share one implementation of the worker's HTTP API and of the train hash.
//!
//! The buying side, [`coordinator::Coordinator`] (feature `coordinator`, on by
//! default; a GPU worker can build without it and without the buyer's wallet and the
//! registry client), runs paid experiments without the `agora` CLI.
//!
//! # Example
//!
//! Run one experiment at a worker for at most 0.05 USDC from the default wallet, and
//! record it in `$AGORA_HOME/research.db`:
//!
//! ```no_run
//! # #[cfg(feature = "coordinator")]
//! # async fn one_run() -> Result<(), Box<dyn std::error::Error>> {
//! use research::coordinator::{Coordinator, Worker, http_client, store};
//!
//! let home = wallet::home::agora_home()?; // where the wallets and the results live
//! let buyer = buyer::Buyer::open(&home, None)?; // the default wallet and its ledger
//! let limits = buyer::Limits::new().max(wallet::budget::parse_usdc("max", "0.05")?);
//! let coordinator = Coordinator::new(http_client()?).record_in(home.join(store::FILE));
//! let worker = Worker::at("https://seller.example/services/worker", &[]);
//! let train_py = std::fs::read("train.py")?;
//! let run = coordinator
//!     .submit(&buyer, &limits, worker, &train_py, serde_json::Map::new())
//!     .await?; // a busy worker is not paid: SubmitError::Busy, nothing signed
//! println!("{}: val_bpb {:?}, paid {} atomic", run.experiment_id, run.val_bpb, run.amount_atomic);
//! # Ok(())
//! # }
//! ```

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
