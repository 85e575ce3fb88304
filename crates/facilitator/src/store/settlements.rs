//! The settlement journal's rows: recording each settlement ahead of the chain
//! (pending, then sent with its signed bytes, then confirmed or failed) and reading
//! them back. Kept apart from the replay guard (`guard.rs`) and the group-commit
//! connection (`mod.rs`) so each file stays one concern.

use alloy::primitives::{Address, B256, Bytes, U256};
use rusqlite::{Connection, params};

use super::{AuthorizationKey, Settlement, SettlementStatus, Store, StoreError, key_params};

impl Store {
    /// Records a settlement about to be signed without claiming it (the paid path
    /// does both at once, [`Store::claim_settlement`]); returns its journal row.
    #[cfg(test)]
    pub(crate) fn begin_settlement(
        &self,
        key: &AuthorizationKey,
        pay_to: Address,
        amount: U256,
        now: u64,
    ) -> Result<Settlement, StoreError> {
        self.with(|conn| begin_on(conn, key, (pay_to, amount), now))
    }

    /// [`Store::mark_sent_all`] for one settlement: `false` when the row was closed
    /// meanwhile. The sender journals every transaction, batch or not, through
    /// `mark_sent_all`; this is the store tests' shorthand.
    #[cfg(test)]
    pub(crate) fn mark_sent(
        &self,
        id: i64,
        tx_hash: B256,
        raw: &[u8],
        now: u64,
    ) -> Result<bool, StoreError> {
        Ok(self.mark_sent_all(&[id], tx_hash, raw, now)?.is_empty())
    }

    /// Records one signed transaction for every settlement it carries (a batch), in
    /// one transaction, before it is broadcast. Returns the ids that were no longer
    /// `pending`; when there are any nothing is recorded (then the batch must be
    /// signed again without them).
    pub fn mark_sent_all(
        &self,
        ids: &[i64],
        tx_hash: B256,
        raw: &[u8],
        now: u64,
    ) -> Result<Vec<i64>, StoreError> {
        let now = localdb::codec::saturating_int(now);
        let hash = tx_hash.to_string();
        self.with(|conn| {
            let tx = conn.savepoint()?;
            let mut closed = Vec::new();
            {
                let mut update = tx.prepare_cached(
                    "UPDATE settlements SET status = 'sent', tx_hash = ?2, raw_tx = ?3, updated_at = ?4
                     WHERE id = ?1 AND status = 'pending'",
                )?;
                for id in ids {
                    if update.execute(params![id, hash, raw, now])? != 1 {
                        closed.push(*id);
                    }
                }
            }
            if closed.is_empty() {
                tx.commit()?;
            }
            Ok(closed)
        })
    }

    /// Records a fee-bumped replacement of a `sent` settlement before it is broadcast;
    /// the replaced hash is kept, since either transaction may be the one that mines.
    pub fn mark_replaced(
        &self,
        id: i64,
        tx_hash: B256,
        raw: &[u8],
        now: u64,
    ) -> Result<bool, StoreError> {
        let now = localdb::codec::saturating_int(now);
        self.with(|conn| {
            let changed = conn.execute(
                "UPDATE settlements
                 SET prior_hashes = CASE WHEN prior_hashes = '' THEN tx_hash ELSE prior_hashes || ',' || tx_hash END,
                     tx_hash = ?2, raw_tx = ?3, updated_at = ?4
                 WHERE id = ?1 AND status = 'sent'",
                params![id, tx_hash.to_string(), raw, now],
            )?;
            Ok(changed == 1)
        })
    }

    /// The store tests' shorthand for [`Store::finish_observed`] without a mined hash.
    #[cfg(test)]
    pub(crate) fn finish_settlement(
        &self,
        settlement: &Settlement,
        status: SettlementStatus,
        error: Option<&str>,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.finish_observed(settlement, status, error, None, now)
    }

    /// Closes an open settlement: confirmed marks the authorization settled for good;
    /// failed releases it. Only a row still open, and still with the status
    /// `settlement` shows, changes: the caller and the background resolver may race to
    /// close it, and a decision taken on a snapshot never lands on a row that moved on
    /// since (the resolver abandons a `pending` row it saw, a send interrupted before
    /// broadcast; if the sender marked it `sent` and broadcast it meanwhile, the row
    /// stays open and its transaction decides). Returns whether this call closed it.
    /// `mined` names the transaction that mined, when it is not the latest one sent.
    pub fn finish_observed(
        &self,
        settlement: &Settlement,
        status: SettlementStatus,
        error: Option<&str>,
        mined: Option<B256>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let (chain, asset, payer, nonce) = key_params(&settlement.key())?;
        let now = localdb::codec::saturating_int(now);
        self.with(|conn| {
            let tx = conn.savepoint()?;
            let changed = tx.execute(
                "UPDATE settlements SET status = ?2, error = ?3, updated_at = ?4,
                     tx_hash = COALESCE(?5, tx_hash)
                 WHERE id = ?1 AND status IN ('pending', 'sent') AND status = ?6",
                params![
                    settlement.id,
                    status.as_str(),
                    error,
                    now,
                    mined.map(|h| h.to_string()),
                    settlement.status.as_str()
                ],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            match status {
                SettlementStatus::Confirmed => {
                    tx.execute(
                        "INSERT INTO authorizations (chain_id, asset, payer, nonce, state, lease_until)
                         VALUES (?1, ?2, ?3, ?4, 'settled', 0)
                         ON CONFLICT (chain_id, asset, payer, nonce) DO UPDATE SET state = 'settled'",
                        params![chain, asset, payer, nonce],
                    )?;
                }
                SettlementStatus::Failed => {
                    tx.execute(
                        "DELETE FROM authorizations
                         WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4 AND state != 'settled'",
                        params![chain, asset, payer, nonce],
                    )?;
                }
                SettlementStatus::Pending | SettlementStatus::Sent => {}
            }
            tx.commit()?;
            Ok(true)
        })
    }

    /// One settlement by id.
    pub fn settlement(&self, id: i64) -> Result<Option<Settlement>, StoreError> {
        self.query("WHERE id = ?1", params![id])
            .map(|mut v| v.pop())
    }

    /// Settlements not yet confirmed or failed (to resolve after a restart).
    pub fn open_settlements(&self) -> Result<Vec<Settlement>, StoreError> {
        self.query("WHERE status IN ('pending', 'sent')", params![])
    }

    /// The newest settlement of `key`: what a repeated settle of the same
    /// authorization answers from instead of sending a second transaction.
    pub fn latest_for(&self, key: &AuthorizationKey) -> Result<Option<Settlement>, StoreError> {
        let (chain, asset, payer, nonce) = key_params(key)?;
        self.query(
            "WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4",
            params![chain, asset, payer, nonce],
        )
        .map(|mut v| v.pop())
    }

    /// The whole journal, oldest first.
    pub fn journal(&self) -> Result<Vec<Settlement>, StoreError> {
        self.query("", params![])
    }

    fn query(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Settlement>, StoreError> {
        self.with(|conn| query_on(conn, filter, args))
    }
}

/// The new `pending` row of a settlement about to be signed (`terms`: pay-to and
/// amount), read back as stored, on a connection inside the caller's transaction.
pub(super) fn begin_on(
    conn: &Connection,
    key: &AuthorizationKey,
    (pay_to, amount): (Address, U256),
    now: u64,
) -> Result<Settlement, StoreError> {
    let (chain, asset, payer, nonce) = key_params(key)?;
    let now = localdb::codec::saturating_int(now);
    conn.execute(
        "INSERT INTO settlements (chain_id, asset, payer, nonce, pay_to, amount, status, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
        params![chain, asset, payer, nonce, pay_to.to_string(), amount.to_string(), now],
    )?;
    query_on(conn, "WHERE id = ?1", params![conn.last_insert_rowid()])?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("journal row vanished".into()))
}

fn query_on(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Settlement>, StoreError> {
    let sql = format!(
        "SELECT id, chain_id, asset, payer, nonce, pay_to, amount, status, tx_hash, raw_tx, error,
                    prior_hashes, updated_at
             FROM settlements {filter} ORDER BY id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(args, |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            [
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, String>(6)?,
                row.get::<_, String>(7)?,
            ],
            row.get::<_, Option<String>>(8)?,
            row.get::<_, Option<Vec<u8>>>(9)?,
            row.get::<_, Option<String>>(10)?,
            row.get::<_, String>(11)?,
            row.get::<_, i64>(12)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (
            id,
            chain_id,
            [asset, payer, nonce, pay_to, amount, status],
            tx_hash,
            raw,
            error,
            prior,
            updated_at,
        ) = row?;
        let bad = |what: &str, value: &str| StoreError::Corrupt(format!("{what} {value:?}"));
        out.push(Settlement {
            id,
            chain_id: u64::try_from(chain_id)
                .map_err(|_| bad("chain id", &chain_id.to_string()))?,
            asset: asset.parse().map_err(|_| bad("asset", &asset))?,
            payer: payer.parse().map_err(|_| bad("payer", &payer))?,
            nonce: nonce.parse().map_err(|_| bad("nonce", &nonce))?,
            pay_to: pay_to.parse().map_err(|_| bad("payTo", &pay_to))?,
            amount: amount.parse().map_err(|_| bad("amount", &amount))?,
            status: SettlementStatus::parse(&status).ok_or_else(|| bad("status", &status))?,
            tx_hash: tx_hash
                .as_deref()
                .map(|h| h.parse().map_err(|_| bad("tx hash", h)))
                .transpose()?,
            raw_tx: raw.map(Bytes::from),
            prior_hashes: prior
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| h.parse().map_err(|_| bad("prior tx hash", h)))
                .collect::<Result<_, _>>()?,
            error,
            updated_at: u64::try_from(updated_at).unwrap_or(0),
        });
    }
    Ok(out)
}
