//! The autoresearch worker: an HTTP server that runs one `train.py` experiment at a
//! time under a time budget, API-compatible with the reference worker.
