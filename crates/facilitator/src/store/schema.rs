//! The store's tables and how older databases are brought up to them, kept apart
//! from the code in `mod.rs` so the layout on disk reads in one place.

/// The tables and indexes, created when missing on every open.
pub(super) const SCHEMA: &str = "
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS authorizations (
    chain_id    INTEGER NOT NULL,
    asset       TEXT NOT NULL,
    payer       TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('reserved', 'settling', 'settled')),
    lease_until INTEGER NOT NULL,
    PRIMARY KEY (chain_id, asset, payer, nonce)
);
CREATE TABLE IF NOT EXISTS settlements (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    chain_id   INTEGER NOT NULL,
    asset      TEXT NOT NULL,
    payer      TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    pay_to     TEXT NOT NULL,
    amount     TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'confirmed', 'failed')),
    tx_hash    TEXT,
    raw_tx     BLOB,
    prior_hashes TEXT NOT NULL DEFAULT '',
    error      TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS settlements_open ON settlements (status) WHERE status IN ('pending', 'sent');
CREATE INDEX IF NOT EXISTS authorizations_reserved ON authorizations (lease_until) WHERE state = 'reserved';
";

/// Schema versions after the first release: a journal written before
/// `prior_hashes` gains it on open (old settlements had no replaced transactions).
pub(super) const MIGRATIONS: [localdb::Migration; 1] = [|conn| {
    localdb::add_column_if_missing(
        conn,
        "settlements",
        "prior_hashes",
        "TEXT NOT NULL DEFAULT ''",
    )
}];
