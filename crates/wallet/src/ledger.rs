//! The buyer's spending ledger: one row per signed EIP-3009 authorization, written
//! BEFORE the authorization leaves the process, so a crash, a lost answer or a server
//! that settles late can never spend money the ledger does not know about.
//!
//! Budgets are computed from these rows, never from a counter: a row counts as spent
//! when it is `settled`, and also while it is `signed`, `sent` or `unknown` and its
//! `validBefore` has not passed, since until then the payee may still submit it.
//! [`Ledger::resolve_open`] asks the chain (`authorizationState`, through a closure so
//! tests can answer for it) and turns open rows into `settled` when the nonce was used,
//! or `refused` once they expired unused. Before expiry an unused answer clears
//! nothing: the authorization can still be submitted, and clearing it early would let
//! the budget be spent twice.
//!
//! Status changes are conditional (`UPDATE … WHERE status IN (…)`), so a late
//! `mark_sent` can never reopen a settled or refused row.

use std::future::Future;
use std::path::Path;

use alloy::primitives::{Address, B256, U256};
use anyhow::{Context, bail};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// The tables of `$AGORA_HOME/wallet.db`: the wallet settings (default wallet,
/// budgets) and the spending ledger. Idempotent, applied on every open.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    wallet TEXT NOT NULL,
    payer TEXT NOT NULL,
    url TEXT NOT NULL,
    network TEXT NOT NULL,
    asset TEXT NOT NULL,
    pay_to TEXT NOT NULL,
    amount TEXT NOT NULL,
    nonce TEXT NOT NULL,
    valid_before INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('signed', 'sent', 'settled', 'refused', 'unknown')),
    tx TEXT,
    reason TEXT,
    signed_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (payer, nonce)
);
CREATE INDEX IF NOT EXISTS spend_signed_at ON spend (signed_at);
CREATE TABLE IF NOT EXISTS spend_payment (
    spend_id INTEGER PRIMARY KEY REFERENCES spend (id),
    payment TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS spend_delivered (
    spend_id INTEGER PRIMARY KEY REFERENCES spend (id),
    delivered_at INTEGER NOT NULL
);
";

/// Where an authorization stands, as far as this buyer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Signed and recorded, not yet handed to the connection.
    Signed,
    /// Sent to the server; no answer yet.
    Sent,
    /// The server (or the chain) says it was charged.
    Settled,
    /// Not charged: the server refused it, or it expired unused.
    Refused,
    /// The answer was lost; it may or may not be charged.
    Unknown,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Signed => "signed",
            Status::Sent => "sent",
            Status::Settled => "settled",
            Status::Refused => "refused",
            Status::Unknown => "unknown",
        }
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(match text {
            "signed" => Status::Signed,
            "sent" => Status::Sent,
            "settled" => Status::Settled,
            "refused" => Status::Refused,
            "unknown" => Status::Unknown,
            other => bail!("the wallet database holds an unknown status {other:?}"),
        })
    }

    /// Whether the outcome is still open (the authorization may yet be charged).
    pub fn is_open(self) -> bool {
        matches!(self, Status::Signed | Status::Sent | Status::Unknown)
    }
}

/// What `agora pay` knows once it has signed, recorded before sending.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    /// The wallet name that signed.
    pub wallet: &'a str,
    /// The signer's address (the `from` of the authorization).
    pub payer: Address,
    /// The URL paid for.
    pub url: &'a str,
    /// CAIP-2 network id.
    pub network: &'a str,
    /// The token contract.
    pub asset: Address,
    /// The recipient.
    pub pay_to: Address,
    /// Atomic units of the asset.
    pub amount: U256,
    /// The EIP-3009 nonce.
    pub nonce: B256,
    /// Unix seconds after which the authorization can no longer be used.
    pub valid_before: u64,
}

/// One ledger row, as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Row id, returned by [`Ledger::record_signed`].
    pub id: i64,
    /// The wallet name that signed.
    pub wallet: String,
    /// The signer's address.
    #[serde(serialize_with = "checksummed")]
    pub payer: Address,
    /// The URL paid for.
    pub url: String,
    /// CAIP-2 network id.
    pub network: String,
    /// The token contract.
    #[serde(serialize_with = "checksummed")]
    pub asset: Address,
    /// The recipient.
    #[serde(serialize_with = "checksummed")]
    pub pay_to: Address,
    /// Atomic units, as a decimal string in JSON (U256 does not fit a JSON number).
    #[serde(serialize_with = "decimal")]
    pub amount: U256,
    /// The EIP-3009 nonce.
    pub nonce: B256,
    /// Unix seconds.
    pub valid_before: u64,
    /// Where it stands.
    pub status: Status,
    /// The settlement transaction, once known.
    pub tx: Option<String>,
    /// Why it was refused, when it was.
    pub reason: Option<String>,
    /// Unix seconds when it was signed.
    pub signed_at: u64,
    /// Unix seconds of the last status change.
    pub updated_at: u64,
}

fn checksummed<S: serde::Serializer>(value: &Address, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value.to_checksum(None))
}

fn decimal<S: serde::Serializer>(value: &U256, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value.to_string())
}

impl Entry {
    /// Whether this row counts against budgets at `now`: settled, or open and still
    /// usable by whoever holds it.
    pub fn counts_at(&self, now: u64) -> bool {
        self.status == Status::Settled || (self.status.is_open() && self.valid_before > now)
    }
}

/// What the chain says about an authorization (`authorizationState(payer, nonce)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainState {
    /// The nonce was used: the transfer happened.
    Used,
    /// The nonce is unused so far.
    Unused,
}

/// How a row the chain showed unused past its `validBefore` is marked (its reason's
/// start): such a row is settled for good, never asked about again.
const EXPIRED_UNUSED: &str = "expired unused";

/// The ledger and wallet settings in one SQLite file.
pub struct Ledger {
    pub(super) conn: Connection,
}

const COLUMNS: &str = "id, wallet, payer, url, network, asset, pay_to, amount, nonce, \
     valid_before, status, tx, reason, signed_at, updated_at";

impl Ledger {
    /// Opens the wallet database at `path`, creating it 0600 (a buyer's spending
    /// history is nobody else's business; SQLite gives its -wal and -shm files the
    /// same mode).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;

        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create the wallet database {}", path.display()))?;
        let conn = localdb::open(path, SCHEMA)
            .with_context(|| format!("cannot open the wallet database {}", path.display()))?;
        Ok(Self { conn })
    }

    /// Records a signed authorization before it is sent; returns its row id. The same
    /// (payer, nonce) twice is refused: one authorization is one row, and a resend
    /// updates that row instead.
    pub fn record_signed(&self, entry: &NewEntry<'_>, now: u64) -> anyhow::Result<i64> {
        self.conn
            .execute(
                "INSERT INTO spend (wallet, payer, url, network, asset, pay_to, amount, nonce,
                     valid_before, status, signed_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'signed', ?10, ?10)",
                params![
                    entry.wallet,
                    entry.payer.to_string(),
                    entry.url,
                    entry.network,
                    entry.asset.to_string(),
                    entry.pay_to.to_string(),
                    entry.amount.to_string(),
                    entry.nonce.to_string(),
                    to_sql(entry.valid_before)?,
                    to_sql(now)?,
                ],
            )
            .context("cannot record the signed authorization in the wallet ledger")?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The authorization was handed to the connection (or sent again on resume).
    pub fn mark_sent(&self, id: i64, now: u64) -> anyhow::Result<()> {
        self.transition(
            id,
            &[Status::Signed, Status::Sent, Status::Unknown],
            Status::Sent,
            None,
            None,
            now,
        )
    }

    /// The server answered with a receipt naming `tx`.
    pub fn mark_settled(&self, id: i64, tx: &str, now: u64) -> anyhow::Result<()> {
        self.transition(
            id,
            &[Status::Sent, Status::Unknown],
            Status::Settled,
            Some(tx),
            None,
            now,
        )
    }

    /// The row is decided unpaid. Only the chain decides that now (see
    /// [`Ledger::resolve_open`]); a server's refusal keeps the row open
    /// ([`Ledger::mark_refused_after_sending`]). Kept for tests that stage old rows.
    #[cfg(test)]
    pub fn mark_refused(&self, id: i64, reason: &str, now: u64) -> anyhow::Result<()> {
        self.transition(
            id,
            &[Status::Signed, Status::Sent, Status::Unknown],
            Status::Refused,
            None,
            Some(reason),
            now,
        )
    }

    /// The server refused the payment after receiving it. That proves nothing: it holds
    /// a signed authorization it may still submit, so the row stays open (`unknown`,
    /// counting against budgets) until `validBefore` passes or the chain says, with
    /// `reason` kept for `wallet spent`.
    pub fn mark_refused_after_sending(
        &self,
        id: i64,
        reason: &str,
        now: u64,
    ) -> anyhow::Result<()> {
        self.transition(
            id,
            &[Status::Signed, Status::Sent, Status::Unknown],
            Status::Unknown,
            None,
            Some(reason),
            now,
        )
    }

    /// The newest row of `wallet` for `url` that is open and still usable at `now`:
    /// while one exists the payee may yet be charged for it, so `agora pay` signs no
    /// second one for the same URL unless told to (`--new`).
    pub fn open_payment(&self, wallet: &str, url: &str, now: u64) -> anyhow::Result<Option<Entry>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM spend
                     WHERE wallet = ?1 AND url = ?2 AND valid_before > ?3
                       AND status IN ('signed', 'sent', 'unknown')
                     ORDER BY id DESC LIMIT 1"
                ),
                params![wallet, url, to_sql(now)?],
                raw_row,
            )
            .optional()
            .context("cannot read the wallet ledger")?
            .map(RawRow::parse)
            .transpose()
    }

    /// The answer was lost: the payment may or may not have been charged.
    pub fn mark_unknown(&self, id: i64, now: u64) -> anyhow::Result<()> {
        self.transition(
            id,
            &[Status::Signed, Status::Sent],
            Status::Unknown,
            None,
            None,
            now,
        )
    }

    fn transition(
        &self,
        id: i64,
        from: &[Status],
        to: Status,
        tx: Option<&str>,
        reason: Option<&str>,
        now: u64,
    ) -> anyhow::Result<()> {
        let allowed: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let sql = format!(
            "UPDATE spend SET status = ?1, tx = COALESCE(?2, tx), reason = COALESCE(?3, reason),
                 updated_at = ?4
             WHERE id = ?5 AND status IN ({})",
            allowed.join(", ")
        );
        let changed = self
            .conn
            .execute(&sql, params![to.as_str(), tx, reason, to_sql(now)?, id])
            .context("cannot update the wallet ledger")?;
        if changed == 1 {
            return Ok(());
        }
        match self.entry(id)? {
            None => bail!("no ledger entry {id}"),
            Some(e) => bail!(
                "ledger entry {id} is {}, so it cannot become {}",
                e.status.as_str(),
                to.as_str()
            ),
        }
    }

    /// One row by id.
    pub fn entry(&self, id: i64) -> anyhow::Result<Option<Entry>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM spend WHERE id = ?1"),
                [id],
                raw_row,
            )
            .optional()
            .context("cannot read the wallet ledger")?
            .map(RawRow::parse)
            .transpose()
    }

    /// Rows signed at or after `since` (Unix seconds), oldest first.
    pub fn entries_since(&self, since: u64) -> anyhow::Result<Vec<Entry>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM spend WHERE signed_at >= ?1 ORDER BY id"
            ))
            .context("cannot read the wallet ledger")?;
        let rows = stmt
            .query_map([to_sql(since)?], raw_row)
            .context("cannot read the wallet ledger")?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.context("cannot read the wallet ledger")?.parse()?);
        }
        Ok(out)
    }

    /// Atomic units spent by authorizations signed since `since`, as of `now`: settled
    /// rows, plus open rows whose `validBefore` has not passed (see the module comment).
    pub fn spent_since(&self, since: u64, now: u64) -> anyhow::Result<U256> {
        let mut total = U256::ZERO;
        for entry in self.entries_since(since)? {
            if entry.counts_at(now) {
                total = total
                    .checked_add(entry.amount)
                    .context("the ledger's amounts overflow U256")?;
            }
        }
        Ok(total)
    }

    /// Asks `check` about every open row that has been sent or lost (a row still
    /// `signed` belongs to a `pay` in progress), and about `refused` rows a server
    /// refused (as older agora versions recorded a 402 after sending, which proves
    /// nothing): a used nonce makes it `settled`, an unused one past its `validBefore`
    /// makes it `refused` ("expired unused"). Returns how many rows changed. `check` is usually an `authorizationState` call (see
    /// `chain::authorization_state`); a failed check leaves the row as it was.
    pub async fn resolve_open<F, Fut>(&self, now: u64, mut check: F) -> anyhow::Result<usize>
    where
        F: FnMut(Entry) -> Fut,
        Fut: Future<Output = anyhow::Result<ChainState>>,
    {
        let mut changed = 0;
        let refused_by_server = |e: &Entry| {
            e.status == Status::Refused
                && !e
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with(EXPIRED_UNUSED))
        };
        let rows = self
            .entries_since(0)?
            .into_iter()
            .filter(|e| (e.status.is_open() && e.status != Status::Signed) || refused_by_server(e));
        for entry in rows {
            let id = entry.id;
            let expired = entry.valid_before <= now;
            match check(entry).await {
                Ok(ChainState::Used) => {
                    self.transition(
                        id,
                        &[Status::Sent, Status::Unknown, Status::Refused],
                        Status::Settled,
                        None,
                        None,
                        now,
                    )?;
                    changed += 1;
                }
                Ok(ChainState::Unused) if expired => {
                    self.transition(
                        id,
                        &[Status::Sent, Status::Unknown, Status::Refused],
                        Status::Refused,
                        None,
                        Some(&format!("{EXPIRED_UNUSED} (authorizationState)")),
                        now,
                    )?;
                    changed += 1;
                }
                Ok(ChainState::Unused) => {}
                Err(e) => tracing::warn!("cannot check ledger entry {id} on chain: {e:#}"),
            }
        }
        Ok(changed)
    }

    /// A wallet setting (default wallet, budgets).
    pub fn setting(&self, key: &str) -> anyhow::Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .context("cannot read the wallet settings")
    }

    /// Sets (`Some`) or clears (`None`) a wallet setting.
    pub fn set_setting(&self, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        match value {
            Some(v) => self.conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, v],
            ),
            None => self
                .conn
                .execute("DELETE FROM settings WHERE key = ?1", [key]),
        }
        .context("cannot write the wallet settings")?;
        Ok(())
    }
}

fn to_sql(secs: u64) -> anyhow::Result<i64> {
    localdb::codec::int(secs).context("a time beyond the year 292 billion cannot be stored")
}

/// A row as SQLite holds it, parsed outside rusqlite's callback so parse errors carry
/// context.
struct RawRow {
    id: i64,
    text: [String; 9],
    tx: Option<String>,
    reason: Option<String>,
    times: [i64; 3],
}

fn raw_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: row.get(0)?,
        text: [
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
            row.get(7)?,
            row.get(8)?,
            row.get(10)?,
        ],
        tx: row.get(11)?,
        reason: row.get(12)?,
        times: [row.get(9)?, row.get(13)?, row.get(14)?],
    })
}

impl RawRow {
    fn parse(self) -> anyhow::Result<Entry> {
        let id = self.id;
        let bad = |what: &str| format!("ledger entry {id} has a malformed {what}");
        let [
            wallet,
            payer,
            url,
            network,
            asset,
            pay_to,
            amount,
            nonce,
            status,
        ] = self.text;
        let secs = |v: i64, what: &str| u64::try_from(v).with_context(|| bad(what));
        Ok(Entry {
            id,
            wallet,
            payer: payer.parse().with_context(|| bad("payer"))?,
            url,
            network,
            asset: asset.parse().with_context(|| bad("asset"))?,
            pay_to: pay_to.parse().with_context(|| bad("payTo"))?,
            amount: U256::from_str_radix(&amount, 10).with_context(|| bad("amount"))?,
            nonce: nonce.parse().with_context(|| bad("nonce"))?,
            valid_before: secs(self.times[0], "validBefore")?,
            status: Status::parse(&status)?,
            tx: self.tx,
            reason: self.reason,
            signed_at: secs(self.times[1], "signing time")?,
            updated_at: secs(self.times[2], "update time")?,
        })
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
