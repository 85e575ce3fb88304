//! The replay guard: taking an authorization for verify or settle, atomically, and
//! freeing it again. One row per authorization; the journal in `settlements.rs`
//! records what was sent for it.

use alloy::primitives::{Address, U256};
use rusqlite::{Connection, OptionalExtension, params};

use super::{AuthorizationKey, GuardState, Settlement, Store, StoreError, settlements};

/// The outcome of trying to take an authorization for verify or settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Taken.
    Granted,
    /// Someone holds it (verified and in flight, or settling).
    InFlight,
    /// Already paid.
    Settled,
}

/// The key as the SQL columns `(chain_id, asset, payer, nonce)` hold it.
pub(super) fn key_params(
    key: &AuthorizationKey,
) -> rusqlite::Result<(i64, String, String, String)> {
    localdb::codec::authorization_key(key.chain_id, &key.asset, &key.payer, &key.nonce)
}

impl Store {
    /// Takes `key` for `want` (Reserved for verify, Settling for settle), atomically.
    ///
    /// A reservation whose lease ended counts as free; a settle may take over a live
    /// reservation (verify then settle is the normal path), a verify may not.
    pub fn claim(
        &self,
        key: &AuthorizationKey,
        want: GuardState,
        now: u64,
        lease_seconds: u64,
    ) -> Result<Claim, StoreError> {
        self.claim_from(key, want, now, lease_seconds)
            .map(|(verdict, _)| verdict)
    }

    /// [`Store::claim`], also saying where the authorization stood before: a settle
    /// that takes over a live reservation knows verify simulated it.
    pub fn claim_from(
        &self,
        key: &AuthorizationKey,
        want: GuardState,
        now: u64,
        lease_seconds: u64,
    ) -> Result<(Claim, Option<GuardState>), StoreError> {
        self.with(|conn| {
            let tx = conn.savepoint()?;
            let claimed = claim_on(&tx, key, want, now, lease_seconds)?;
            tx.commit()?;
            Ok(claimed)
        })
    }

    /// [`Store::claim_from`] for settling and, when granted and `begin`, the
    /// settlement's `pending` journal row, read back as stored, both in one commit:
    /// the paid path waits for one fsync here instead of three. Either both happen or
    /// neither does.
    pub fn claim_settlement(
        &self,
        key: &AuthorizationKey,
        terms: (Address, U256),
        begin: bool,
        now: u64,
        lease_seconds: u64,
    ) -> Result<(Claim, Option<GuardState>, Option<Settlement>), StoreError> {
        self.with(|conn| {
            let tx = conn.savepoint()?;
            let (verdict, prior) = claim_on(&tx, key, GuardState::Settling, now, lease_seconds)?;
            let row = if verdict == Claim::Granted && begin {
                Some(settlements::begin_on(&tx, key, terms, now)?)
            } else {
                None
            };
            tx.commit()?;
            Ok((verdict, prior, row))
        })
    }

    /// Frees a verified-but-unsettled `key` so the same authorization can be used
    /// again; a settlement in flight or done is never freed this way.
    pub fn release(&self, key: &AuthorizationKey) -> Result<(), StoreError> {
        let (chain, asset, payer, nonce) = key_params(key)?;
        self.with(|conn| {
            conn.execute(
                "DELETE FROM authorizations
                 WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4 AND state = 'reserved'",
                params![chain, asset, payer, nonce],
            )?;
            Ok(())
        })
    }

    /// Frees a claim that never reached the journal (a settle refused before it
    /// began); a settled authorization stays settled.
    pub fn unclaim(&self, key: &AuthorizationKey) -> Result<(), StoreError> {
        let (chain, asset, payer, nonce) = key_params(key)?;
        self.with(|conn| {
            conn.execute(
                "DELETE FROM authorizations
                 WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4 AND state != 'settled'",
                params![chain, asset, payer, nonce],
            )?;
            Ok(())
        })
    }
}

/// The claim itself, on a connection already inside the caller's savepoint.
fn claim_on(
    conn: &Connection,
    key: &AuthorizationKey,
    want: GuardState,
    now: u64,
    lease_seconds: u64,
) -> Result<(Claim, Option<GuardState>), StoreError> {
    let (chain, asset, payer, nonce) = key_params(key)?;
    let now_i = localdb::codec::saturating_int(now);
    if want == GuardState::Reserved {
        // Reservations whose lease ended are garbage: without this sweep, verifies
        // of fresh nonces would pile rows up until the next restart.
        conn.execute(
            "DELETE FROM authorizations WHERE state = 'reserved' AND lease_until < ?1",
            params![now_i],
        )?;
    }
    let current: Option<(String, i64)> = conn
        .query_row(
            "SELECT state, lease_until FROM authorizations
             WHERE chain_id = ?1 AND asset = ?2 AND payer = ?3 AND nonce = ?4",
            params![chain, asset, payer, nonce],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let prior = match &current {
        Some((state, lease_until)) => {
            GuardState::parse(state).filter(|s| *s != GuardState::Reserved || *lease_until >= now_i)
        }
        None => None,
    };
    let verdict = match current {
        None => Claim::Granted,
        Some((state, lease_until)) => match GuardState::parse(&state) {
            Some(GuardState::Settled) => Claim::Settled,
            Some(GuardState::Settling) => Claim::InFlight,
            Some(GuardState::Reserved) if want == GuardState::Settling || lease_until < now_i => {
                Claim::Granted
            }
            Some(GuardState::Reserved) => Claim::InFlight,
            None => return Err(StoreError::Corrupt(format!("guard state {state:?}"))),
        },
    };
    if verdict == Claim::Granted {
        let lease = localdb::codec::saturating_int(now.saturating_add(lease_seconds));
        conn.execute(
            "INSERT INTO authorizations (chain_id, asset, payer, nonce, state, lease_until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (chain_id, asset, payer, nonce)
             DO UPDATE SET state = excluded.state, lease_until = excluded.lease_until",
            params![chain, asset, payer, nonce, want.as_str(), lease],
        )?;
    }
    Ok((verdict, prior))
}
