//! Autoresearch: selling GPU time as experiments. A worker runs a buyer's `train.py`
//! under a time budget and reports `val_bpb`; publishing turns the best checkpoint into
//! a sold model whose provenance (the hash of the exact `train.py`) anyone can check.
//!
//! This lives in its own crate so the CLI, the seller daemon and the tests share one
//! implementation of the worker's HTTP API and of the train hash.

pub mod worker;
