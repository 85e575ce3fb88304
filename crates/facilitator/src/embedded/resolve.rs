//! Finding out what became of journaled settlements: receipts of every transaction a
//! settlement ever sent, rebroadcasts, fee bumps, and the token's own record of the
//! authorization when nothing else answers. Runs in the background resolver, at
//! start, and when a settle of the same authorization asks again.

use alloy::primitives::Bytes;
use alloy::sol_types::SolEvent;

use super::*;

/// Whether `receipt` holds the token's `AuthorizationUsed` log for `settlement`.
fn used_in(receipt: &TransactionReceipt, settlement: &Settlement) -> bool {
    receipt.inner.logs().iter().any(|log| {
        log.address() == settlement.asset
            && IEip3009Token::AuthorizationUsed::decode_log_data(log.data())
                .is_ok_and(|e| e.authorizer == settlement.payer && e.nonce == settlement.nonce)
    })
}

/// What is known about one journaled settlement.
pub(super) enum Outcome {
    /// Mined with success by this transaction.
    Confirmed(B256),
    /// Can never move the money: reverted, or replaced and the authorization unused.
    Failed(String),
    /// Not known yet: still in a mempool, or the chain cannot be asked right now.
    Unknown,
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
        // token's record of the authorization is the whole truth.
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
        let used = authorization_used(chain, settlement).await;
        match used {
            Ok(true) => {
                self.finish(
                    settlement,
                    SettlementStatus::Confirmed,
                    Some("settled by another transaction"),
                    None,
                )
                .await;
                Outcome::Confirmed(current)
            }
            Ok(false) => {
                let why = "the transaction was replaced and the authorization is unused";
                self.finish(settlement, SettlementStatus::Failed, Some(why), None)
                    .await;
                Outcome::Failed(why.to_string())
            }
            Err(_) => Outcome::Unknown,
        }
    }

    /// Records what a mined transaction did for `settlement`. A batch's receipt
    /// answers for each member by the token's `AuthorizationUsed` log, a single
    /// settlement by its status. When this transaction did not use the authorization
    /// (a member that failed, or a revert), another one may have used it first (a
    /// front-run, or an earlier send of ours), so the token's record decides: used
    /// means the buyer paid (the signature binds payee and amount), and the receipt
    /// names the transaction that moved the money; unused means not charged.
    pub(super) async fn record_receipt(
        &self,
        chain: &Chain,
        settlement: &Settlement,
        receipt: &TransactionReceipt,
        hash: B256,
    ) -> Outcome {
        let batch = receipt.to == Some(MULTICALL3);
        let moved = receipt.status() && (!batch || used_in(receipt, settlement));
        if moved {
            self.finish(settlement, SettlementStatus::Confirmed, None, Some(hash))
                .await;
            return Outcome::Confirmed(hash);
        }
        let used = authorization_used(chain, settlement).await;
        match used {
            Ok(true) => {
                let mover = match receipt.block_number {
                    Some(block) => self.user_of(chain, settlement, block).await,
                    None => None,
                };
                self.finish(
                    settlement,
                    SettlementStatus::Confirmed,
                    Some("settled by another transaction"),
                    mover,
                )
                .await;
                Outcome::Confirmed(mover.unwrap_or(hash))
            }
            Ok(false) => {
                let why = if batch {
                    format!("this payment failed inside batch transaction {hash}")
                } else {
                    format!("settlement transaction {hash} reverted")
                };
                self.finish(settlement, SettlementStatus::Failed, Some(&why), Some(hash))
                    .await;
                Outcome::Failed(why)
            }
            Err(_) => Outcome::Unknown,
        }
    }

    /// The transaction whose `AuthorizationUsed` log spent `settlement`'s
    /// authorization, searched in the blocks up to `to_block` (one `eth_getLogs`, only
    /// when another transaction got there first).
    async fn user_of(&self, chain: &Chain, settlement: &Settlement, to_block: u64) -> Option<B256> {
        let filter = alloy::rpc::types::Filter::new()
            .address(settlement.asset)
            .event_signature(IEip3009Token::AuthorizationUsed::SIGNATURE_HASH)
            .topic1(settlement.payer.into_word())
            .topic2(settlement.nonce)
            .from_block(to_block.saturating_sub(10_000))
            .to_block(to_block);
        chain
            .provider
            .get_logs(&filter)
            .await
            .ok()?
            .last()?
            .transaction_hash
    }

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
            .db(move |s| s.finish_with_hash(&row, status, error.as_deref(), mined, unix_now()))
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
