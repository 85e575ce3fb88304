//! Finding out what became of journaled settlements: receipts of every transaction a
//! settlement ever sent, rebroadcasts, fee bumps, and the token's own record of the
//! authorization when nothing else answers. Runs in the background resolver, at
//! start, and when a settle of the same authorization asks again.
//!
//! "The token marked the nonce used" is never taken for "the seller was paid": the
//! payer can cancel its authorization or spend the nonce on another transfer, and
//! `authorizationState` reads `true` all the same. Paid means a `Transfer(payer ->
//! payTo, amount)` of the asset in the transaction that used the authorization,
//! found through its `AuthorizationUsed` log.

use alloy::primitives::Bytes;
use alloy::sol_types::SolEvent;
use x402::eip3009::{Spent, spent_in};

use super::*;

/// Fee raises per settlement before the resolver only waits.
const MAX_FEE_BUMPS: usize = 5;

/// A pending row older than this was abandoned mid-send (a live send takes well
/// under a second between its two journal writes).
const ABANDONED_PENDING_SECONDS: u64 = 60;

/// The background resolver: a pass every `interval` while the facilitator lives.
pub(super) async fn resolve_forever(inner: std::sync::Weak<Inner>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(e) = inner.resolve_pass(false).await {
            tracing::warn!("settlement resolver: {e}");
        }
    }
}

/// The signed transaction behind a journal row.
fn decode(raw: &[u8]) -> Option<TxEnvelope> {
    TxEnvelope::decode_2718(&mut &raw[..]).ok()
}

/// Blocks searched back from the head for the log that used or cancelled an
/// authorization (RPC providers cap `eth_getLogs` ranges near this).
const LOG_WINDOW: u64 = 9_999;

/// What `receipt` (one transaction) did with `settlement`'s authorization.
fn spent_by(receipt: &TransactionReceipt, settlement: &Settlement) -> Spent {
    spent_in(
        receipt.inner.logs().iter().map(|log| &log.inner),
        settlement.asset,
        settlement.payer,
        settlement.nonce,
    )
}

/// Whether `spent` paid `settlement`'s payee its amount from its payer.
fn pays(spent: Spent, settlement: &Settlement) -> bool {
    spent.paid(settlement.payer, settlement.pay_to, settlement.amount)
}

/// What is known about one journaled settlement.
pub(super) enum Outcome {
    /// The payee was paid, by this transaction.
    Confirmed(B256),
    /// Can never pay the payee: reverted, replaced and the authorization unused
    /// (`TransactionFailed`), or the nonce spent without paying this payee
    /// (`AuthorizationSpentElsewhere`). Decided: the buyer is not charged.
    Failed(Invalid),
    /// Not known yet: still in a mempool, or the chain cannot be asked right now.
    Unknown,
}

/// Who used an authorization the token marks used.
enum Use {
    /// A transaction whose transfer paid the settlement's payee its amount.
    Paid(B256),
    /// Cancelled, or used for another transfer: why, naming the transaction.
    Elsewhere(String),
}

impl Inner {
    /// One look at every open settlement. At `startup` every pending row is from the
    /// dead process (the store's lock guarantees it); later only old ones are, and a
    /// sent row younger than the receipt wait is skipped: the settle that sent it is
    /// still polling its receipt, and asking twice would only double the RPC calls.
    pub(super) async fn resolve_pass(&self, startup: bool) -> Result<(), StoreError> {
        // Members of one batch share a transaction: raise its fees once and record
        // the same replacement for every member.
        let mut bumped: HashMap<B256, (B256, Bytes)> = HashMap::new();
        for settlement in self.db(Store::open_settlements).await? {
            let Some(chain) = self.chains.get(&settlement.chain_id) else {
                continue;
            };
            let now = unix_now();
            if settlement.tx_hash.is_none() {
                let abandoned = startup
                    || now.saturating_sub(settlement.updated_at) > ABANDONED_PENDING_SECONDS;
                if abandoned {
                    // `finish` closes the row only while it is still `pending`, as
                    // this snapshot saw it: a sender that marked it sent (and
                    // broadcast it) since keeps it open.
                    self.finish(
                        &settlement,
                        SettlementStatus::Failed,
                        Some("interrupted before the transaction was broadcast"),
                        None,
                    )
                    .await;
                }
                continue;
            }
            let awaited =
                now.saturating_sub(settlement.updated_at) < self.receipt_timeout.as_secs();
            if !startup && awaited {
                continue;
            }
            match self.resolve(chain, &settlement, false).await {
                Outcome::Unknown => {
                    let stuck = now.saturating_sub(settlement.updated_at)
                        >= self.bump_after.as_secs().max(1);
                    if !startup && stuck && settlement.prior_hashes.len() < MAX_FEE_BUMPS {
                        self.bump(chain, &settlement, &mut bumped).await;
                    }
                }
                Outcome::Confirmed(_) | Outcome::Failed(_) => {}
            }
        }
        Ok(())
    }

    /// Finds out what became of `settlement` and records it when it is final;
    /// `wait` polls the newest transaction's receipt up to the receipt timeout first.
    pub(super) async fn resolve(
        &self,
        chain: &Chain,
        settlement: &Settlement,
        wait: bool,
    ) -> Outcome {
        let Some(current) = settlement.tx_hash else {
            return Outcome::Unknown;
        };
        if wait && let Some(receipt) = self.await_receipt(chain, current).await {
            return self
                .record_receipt(chain, settlement, &receipt, current)
                .await;
        }
        let mut hashes = vec![current];
        hashes.extend(settlement.prior_hashes.iter().rev().copied());
        for hash in &hashes {
            if let Ok(Some(receipt)) = chain.provider.get_transaction_receipt(*hash).await {
                return self
                    .record_receipt(chain, settlement, &receipt, *hash)
                    .await;
            }
        }
        match chain.provider.get_transaction_by_hash(current).await {
            Ok(Some(_)) => return Outcome::Unknown,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%current, "cannot look up a settlement: {}", scrub(&e.to_string(), &chain.rpc_url));
                return Outcome::Unknown;
            }
        }
        let Some(raw) = settlement.raw_tx.as_ref() else {
            return Outcome::Unknown;
        };
        let rebroadcast = chain.provider.send_raw_transaction(raw).await;
        if rebroadcast.is_ok() {
            return Outcome::Unknown;
        }
        // The node neither knows the transaction nor takes it again. It can still
        // mine only if its signer nonce is unused; once that nonce is taken, the
        // token's record of the authorization, and who used it, is the whole truth.
        let Some(tx_nonce) = decode(raw).map(|tx| tx.nonce()) else {
            return Outcome::Unknown;
        };
        let Ok(mined_nonce) = chain
            .provider
            .get_transaction_count(self.signer_address)
            .latest()
            .await
        else {
            return Outcome::Unknown;
        };
        if mined_nonce <= tx_nonce {
            return Outcome::Unknown;
        }
        self.decide_used(
            chain,
            settlement,
            "the transaction was replaced and the authorization is unused".into(),
            None,
        )
        .await
    }

    /// Records what a mined transaction did for `settlement`. A single settlement
    /// that mined with success moved the money (the token ran our call); a batch
    /// member did when the batch's logs show its authorization used and, as the
    /// token's next log, its transfer to the payee. Otherwise another transaction may
    /// have used the authorization (a front-run, an earlier send of ours, or the payer
    /// spending its own nonce): [`Inner::decide_used`] looks for it.
    pub(super) async fn record_receipt(
        &self,
        chain: &Chain,
        settlement: &Settlement,
        receipt: &TransactionReceipt,
        hash: B256,
    ) -> Outcome {
        let batch = receipt.to == Some(MULTICALL3);
        let moved = receipt.status() && (!batch || pays(spent_by(receipt, settlement), settlement));
        if moved {
            self.finish(settlement, SettlementStatus::Confirmed, None, Some(hash))
                .await;
            return Outcome::Confirmed(hash);
        }
        let why = if batch {
            format!("this payment failed inside batch transaction {hash}")
        } else {
            format!("settlement transaction {hash} reverted")
        };
        self.decide_used(chain, settlement, why, Some(hash)).await
    }

    /// Decides a settlement that its own transactions did not pay, from the token:
    /// an unused authorization failed (`unused` says how; `mined` is our transaction
    /// that mined without using it); a used one paid the payee only when the
    /// transaction that used it carries the transfer to the payee. A cancelled one,
    /// or one used for another transfer, is spent elsewhere: not charged.
    pub(super) async fn decide_used(
        &self,
        chain: &Chain,
        settlement: &Settlement,
        unused: String,
        mined: Option<B256>,
    ) -> Outcome {
        match authorization_used(chain, settlement).await {
            Ok(false) => {
                self.finish(settlement, SettlementStatus::Failed, Some(&unused), mined)
                    .await;
                Outcome::Failed(Invalid::new(ErrorReason::TransactionFailed, unused))
            }
            Ok(true) => match self.use_of(chain, settlement).await {
                Some(Use::Paid(by)) => {
                    self.finish(
                        settlement,
                        SettlementStatus::Confirmed,
                        Some("settled by another transaction"),
                        Some(by),
                    )
                    .await;
                    Outcome::Confirmed(by)
                }
                Some(Use::Elsewhere(why)) => {
                    tracing::warn!(
                        payer = %settlement.payer,
                        nonce = %settlement.nonce,
                        "authorization spent without paying this payee: {why}"
                    );
                    self.finish(settlement, SettlementStatus::Failed, Some(&why), mined)
                        .await;
                    Outcome::Failed(Invalid::new(
                        ErrorReason::AuthorizationSpentElsewhere,
                        format!(
                            "{why}; this payment did not pay the seller, so you were not charged for it and get no answer: sign a new payment"
                        ),
                    ))
                }
                None => Outcome::Unknown,
            },
            Err(_) => Outcome::Unknown,
        }
    }

    /// Who used `settlement`'s authorization, which the token marks used: one
    /// `eth_getLogs` for its `AuthorizationUsed` or `AuthorizationCanceled` log, then
    /// the receipt of the transaction that used it. `None` when the chain cannot say
    /// yet (an RPC error, or no log within [`LOG_WINDOW`] blocks).
    async fn use_of(&self, chain: &Chain, settlement: &Settlement) -> Option<Use> {
        let scrubbed = |e: &dyn std::fmt::Display| scrub(&e.to_string(), &chain.rpc_url);
        let head = match chain.provider.get_block_number().await {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!("cannot read the block number: {}", scrubbed(&e));
                return None;
            }
        };
        let filter = alloy::rpc::types::Filter::new()
            .address(settlement.asset)
            .event_signature(vec![
                IEip3009Token::AuthorizationUsed::SIGNATURE_HASH,
                IEip3009Token::AuthorizationCanceled::SIGNATURE_HASH,
            ])
            .topic1(settlement.payer.into_word())
            .topic2(settlement.nonce)
            .from_block(head.saturating_sub(LOG_WINDOW))
            .to_block(head);
        let logs = match chain.provider.get_logs(&filter).await {
            Ok(logs) => logs,
            Err(e) => {
                tracing::warn!("cannot read the authorization's logs: {}", scrubbed(&e));
                return None;
            }
        };
        let Some(log) = logs.first() else {
            tracing::warn!(
                payer = %settlement.payer,
                nonce = %settlement.nonce,
                "the token marks this authorization used but no log within {LOG_WINDOW} blocks says by whom; asking again later"
            );
            return None;
        };
        let tx = log.transaction_hash?;
        if log.topic0() == Some(&IEip3009Token::AuthorizationCanceled::SIGNATURE_HASH) {
            return Some(Use::Elsewhere(format!(
                "the payer cancelled this authorization (cancelAuthorization in transaction {tx})"
            )));
        }
        let receipt = match chain.provider.get_transaction_receipt(tx).await {
            Ok(Some(receipt)) => receipt,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(%tx, "cannot read a receipt: {}", scrubbed(&e));
                return None;
            }
        };
        Some(match spent_by(&receipt, settlement) {
            spent if pays(spent, settlement) => Use::Paid(tx),
            Spent::Transfer(_, to, value) => Use::Elsewhere(format!(
                "the payer spent this authorization's nonce in transaction {tx} on a transfer of {value} to {to}, not {} to {}",
                settlement.amount, settlement.pay_to
            )),
            Spent::NoTransfer => Use::Elsewhere(format!(
                "this authorization was used in transaction {tx} without a transfer to {}",
                settlement.pay_to
            )),
            Spent::NotHere => return None,
        })
    }

    /// Closes `settlement` as `status`, only while its row still has the status
    /// `settlement` shows (what its caller saw when it decided).
    pub(super) async fn finish(
        &self,
        settlement: &Settlement,
        status: SettlementStatus,
        error: Option<&str>,
        mined: Option<B256>,
    ) {
        let row = settlement.clone();
        let error = error.map(str::to_string);
        let id = settlement.id;
        let done = self
            .db(move |s| s.finish_observed(&row, status, error.as_deref(), mined, unix_now()))
            .await;
        if let Err(e) = done {
            tracing::error!(id, "cannot record settlement outcome: {e}");
        }
    }

    /// Re-signs a stuck settlement with the same signer nonce and fees raised by a
    /// quarter (nodes want at least a tenth), journals it, then broadcasts it. Another
    /// member of a batch already bumped in this pass gets the same replacement.
    pub(super) async fn bump(
        &self,
        chain: &Chain,
        settlement: &Settlement,
        bumped: &mut HashMap<B256, (B256, Bytes)>,
    ) {
        let id = settlement.id;
        if let Some((hash, raw)) = settlement.tx_hash.and_then(|h| bumped.get(&h)).cloned() {
            if let Err(e) = self
                .db(move |s| s.mark_replaced(id, hash, &raw, unix_now()))
                .await
            {
                tracing::error!(id, "cannot journal a fee bump: {e}");
            }
            return;
        }
        let Some(old) = settlement.raw_tx.as_ref().and_then(|raw| decode(raw)) else {
            return;
        };
        let Some(to) = old.to() else {
            return;
        };
        let current = chain.provider.estimate_eip1559_fees().await.ok();
        let raise = |fee: u128| fee.saturating_add(fee / 4).saturating_add(1);
        let max_fee = raise(old.max_fee_per_gas()).max(current.map_or(0, |f| f.max_fee_per_gas));
        let priority = raise(old.max_priority_fee_per_gas().unwrap_or(0))
            .max(current.map_or(0, |f| f.max_priority_fee_per_gas));
        let replacement = TransactionRequest::default()
            .from(self.signer_address)
            .to(to)
            .input(old.input().clone().into())
            .nonce(old.nonce())
            .with_chain_id(chain.chain_id)
            .gas_limit(old.gas_limit())
            .max_fee_per_gas(max_fee)
            .max_priority_fee_per_gas(priority.min(max_fee));
        let envelope = match replacement.build(&self.wallet).await {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::error!("cannot sign a fee bump: {e}");
                return;
            }
        };
        let hash = *envelope.tx_hash();
        let raw = envelope.encoded_2718();
        let journal_raw = raw.clone();
        match self
            .db(move |s| s.mark_replaced(id, hash, &journal_raw, unix_now()))
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(id, "cannot journal a fee bump: {e}");
                return;
            }
        }
        tracing::info!(id, old = ?settlement.tx_hash, new = %hash, "raised the fees of a stuck settlement");
        if let Some(old) = settlement.tx_hash {
            bumped.insert(old, (hash, Bytes::from(raw.clone())));
        }
        if let Err(e) = chain.provider.send_raw_transaction(&raw).await {
            tracing::warn!(%hash, "fee bump broadcast: {}", scrub(&e.to_string(), &chain.rpc_url));
        }
    }
}

/// The token's own record of whether `settlement`'s authorization was used, by any
/// transaction: what decides a settlement whose transaction did not say.
async fn authorization_used(
    chain: &Chain,
    settlement: &Settlement,
) -> Result<bool, alloy::contract::Error> {
    IEip3009Token::new(settlement.asset, &chain.provider)
        .authorizationState(settlement.payer, settlement.nonce)
        .call()
        .await
}
