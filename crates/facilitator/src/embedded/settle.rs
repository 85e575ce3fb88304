//! Settling: a first settlement is journaled, signed under the chain's nonce,
//! journaled as sent and broadcast; a repeated settle of the same authorization is
//! answered from the journal instead of sending again.

use super::resolve::Outcome;
use super::*;

pub(super) enum SendError {
    /// The chain refused before broadcast; nothing is in flight.
    Refused(Invalid),
    /// The RPC failed before broadcast; nothing is in flight.
    Unavailable(FacilitatorError),
    /// Signed and journaled; whether the node took it is unknown.
    Ambiguous(B256, String),
}

impl Inner {
    pub(super) async fn settle_request(
        &self,
        request: &FacilitatorRequest,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = request.payment_requirements.network.clone();
        let checked = match self.check(request) {
            Ok(checked) => checked,
            Err(invalid) => return Ok(failed_settle(invalid, None, None, network)),
        };
        let payer = checked.key.payer;
        // A settle of an authorization already in the journal answers from it; a
        // failed one frees the claim, so the second round starts a fresh settlement.
        let authorization = &request.payment_payload.payload.authorization;
        for _ in 0..2 {
            let valid = eip3009::check_validity(authorization, unix_now());
            // A store that fails here says nothing about the money: an earlier settle of
            // this authorization may have broadcast, so this is "not known", never
            // "not charged".
            let (verdict, simulated, begun) = self
                .claim_settle(&checked, valid.is_ok())
                .await
                .map_err(|invalid| {
                    FacilitatorError::Internal(format!(
                        "{}; settle the same authorization again",
                        invalid.message
                    ))
                })?;
            match verdict {
                Claim::Granted => {
                    return match (valid, begun) {
                        (Ok(()), Some(settlement)) => {
                            self.settle_new(&checked, settlement, simulated).await
                        }
                        (Err(invalid), _) => {
                            let key = checked.key;
                            if let Err(e) = self.db(move |s| s.unclaim(&key)).await {
                                tracing::error!("cannot free authorization {}: {e}", key.nonce);
                            }
                            Ok(failed_settle(invalid, Some(payer), None, network))
                        }
                        (Ok(()), None) => Err(FacilitatorError::Internal(
                            "the journal granted the settlement but opened no row for it; retry"
                                .into(),
                        )),
                    };
                }
                Claim::Settled | Claim::InFlight => {
                    let key = checked.key;
                    let latest = self
                        .db(move |s| s.latest_for(&key))
                        .await
                        .map_err(|e| FacilitatorError::Internal(e.to_string()))?;
                    match self.answer_from_journal(&checked, latest, verdict).await {
                        Some(answer) => return answer,
                        None => continue,
                    }
                }
            }
        }
        Err(FacilitatorError::Internal(
            "the settlement of this authorization changed state twice while being read; retry"
                .into(),
        ))
    }

    /// The answer for an authorization the journal already has; `None` when its
    /// settlement failed and a new one may be tried.
    pub(super) async fn answer_from_journal(
        &self,
        checked: &Checked<'_>,
        latest: Option<Settlement>,
        verdict: Claim,
    ) -> Option<Result<SettleResponse, FacilitatorError>> {
        let requirements = &checked.request.payment_requirements;
        let network = requirements.network.clone();
        let payer = checked.key.payer;
        let same_terms = |row: &Settlement| {
            row.pay_to == requirements.pay_to && row.amount == requirements.amount
        };
        let Some(row) = latest.filter(|row| same_terms(row)) else {
            // The guard holds the authorization but the journal has no settlement of
            // it on these terms (a claim being undone, or a damaged journal): what
            // became of the money is not known, so neither "not charged" nor "nonce
            // used" may be answered.
            return Some(Err(FacilitatorError::Internal(format!(
                "the journal has no settlement of this authorization though it is {}; settle the same authorization again",
                match verdict {
                    Claim::Settled => "settled",
                    Claim::InFlight | Claim::Granted => "being settled",
                }
            ))));
        };
        let outcome = match row.status {
            SettlementStatus::Confirmed => Outcome::Confirmed(row.tx_hash.unwrap_or_default()),
            SettlementStatus::Failed => return None,
            SettlementStatus::Sent => self.resolve(checked.chain, &row, true).await,
            SettlementStatus::Pending => {
                return Some(Err(FacilitatorError::Internal(
                    "a settlement of this authorization is being sent right now; retry in a moment"
                        .into(),
                )));
            }
        };
        Some(Ok(match outcome {
            Outcome::Confirmed(hash) => confirmed(payer, hash, network, row.amount),
            Outcome::Failed(_) => return None,
            Outcome::Unknown => pending(&row, payer, network, self.receipt_timeout),
        }))
    }

    /// Sends and awaits a first settlement of a claimed authorization, whose journal
    /// row the claim opened; `simulated` says verify simulated it under the
    /// reservation this settle took.
    pub(super) async fn settle_new(
        &self,
        checked: &Checked<'_>,
        settlement: Settlement,
        simulated: bool,
    ) -> Result<SettleResponse, FacilitatorError> {
        let request = checked.request;
        let network = request.payment_requirements.network.clone();
        let payer = checked.key.payer;
        let amount = request.payment_requirements.amount;
        let hash = match self.send(checked, settlement.id, simulated).await {
            Ok(hash) => hash,
            Err(SendError::Refused(invalid)) if invalid.reason == ErrorReason::NonceAlreadyUsed => {
                // The token used this nonce before our send: whoever paid the seller
                // with it (a front-run), or the payer spent it elsewhere.
                return self.used_before_send(checked, &settlement).await;
            }
            Err(SendError::Refused(invalid)) => {
                self.finish(
                    &settlement,
                    SettlementStatus::Failed,
                    Some(&invalid.message),
                    None,
                )
                .await;
                return Ok(failed_settle(invalid, Some(payer), None, network));
            }
            Err(SendError::Unavailable(e)) => {
                self.finish(
                    &settlement,
                    SettlementStatus::Failed,
                    Some(&e.to_string()),
                    None,
                )
                .await;
                return Err(e);
            }
            Err(SendError::Ambiguous(hash, why)) => {
                tracing::warn!(%hash, "settlement broadcast answered an error ({why}); waiting on the transaction anyway");
                hash
            }
        };
        // The row as the sender journaled it. It is read back only when the receipt is
        // late (a fee bump may have replaced the transaction by then): on the usual
        // path that read would queue behind the journal's group commit for nothing.
        // A pending answer names the transaction this settle sent either way.
        let id = settlement.id;
        let sent = Settlement {
            tx_hash: Some(hash),
            status: SettlementStatus::Sent,
            ..settlement
        };
        let outcome = match self.await_receipt(checked.chain, hash).await {
            Some(receipt) => {
                self.record_receipt(checked.chain, &sent, &receipt, hash)
                    .await
            }
            None => {
                let row = self
                    .db(move |s| s.settlement(id))
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| sent.clone());
                self.resolve(checked.chain, &row, false).await
            }
        };
        Ok(match outcome {
            Outcome::Confirmed(mined) => confirmed(payer, mined, network, amount),
            // Decided: no transaction in the answer (its message names it), so the
            // gateway answers a 402 instead of "pending".
            Outcome::Failed(invalid) => failed_settle(invalid, Some(payer), None, network),
            Outcome::Unknown => pending(&sent, payer, network, self.receipt_timeout),
        })
    }

    /// The answer for a settlement whose authorization the token had already used
    /// when we came to send it (the estimate's diagnosis): charged only when the
    /// transaction that used it paid this payee; spent elsewhere otherwise. Nothing of
    /// ours was sent, so when the chain cannot say yet the row is closed and the
    /// caller told to settle again.
    async fn used_before_send(
        &self,
        checked: &Checked<'_>,
        settlement: &Settlement,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = checked.request.payment_requirements.network.clone();
        let payer = checked.key.payer;
        let unused = "the token reported this authorization used, then unused".to_string();
        match self
            .decide_used(checked.chain, settlement, unused, None)
            .await
        {
            Outcome::Confirmed(by) => Ok(confirmed(payer, by, network, settlement.amount)),
            Outcome::Failed(invalid) => Ok(failed_settle(invalid, Some(payer), None, network)),
            Outcome::Unknown => {
                let why =
                    "the token has used this authorization and the chain cannot say yet by whom";
                self.finish(settlement, SettlementStatus::Failed, Some(why), None)
                    .await;
                Err(FacilitatorError::Internal(format!(
                    "{why}; settle the same authorization again"
                )))
            }
        }
    }

    /// Hands the settlement to the chain's sender and waits until it went out. A
    /// known token that verify simulated is sent with the capped gas limit and may
    /// join a batch; anything else is estimated first (a second simulation), which
    /// also refuses a payment that would revert or use more gas than the cap, and is
    /// sent alone. Once journaled, no broadcast error is taken as a refusal: the node
    /// may have the transaction anyway.
    async fn send(
        &self,
        checked: &Checked<'_>,
        journal_id: i64,
        simulated: bool,
    ) -> Result<B256, SendError> {
        let chain = checked.chain;
        let tx = self.settlement_tx(checked).map_err(SendError::Refused)?;
        let asset = checked.request.payment_requirements.asset;
        let gas = if simulated && chain.batchable.contains(&asset) {
            None
        } else {
            Some(self.estimate(checked, tx.clone()).await?)
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = super::batch::Job {
            journal_id,
            asset,
            call: tx.input.into_input().unwrap_or_default(),
            gas,
            reply,
        };
        let stopped = || {
            SendError::Unavailable(FacilitatorError::Internal(
                "the facilitator is shutting down; settle the same authorization again".into(),
            ))
        };
        chain.jobs.send(job).map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// The gas limit for a token outside the chain's known ones: its estimate plus a
    /// fifth, refused above the cap; a revert is diagnosed.
    async fn estimate(
        &self,
        checked: &Checked<'_>,
        tx: TransactionRequest,
    ) -> Result<u64, SendError> {
        let chain = checked.chain;
        let gas = match chain.provider.estimate_gas(tx).await {
            Ok(gas) => gas,
            Err(RpcError::ErrorResp(payload)) => {
                let diagnosis = self.diagnose(checked, payload.message.to_string()).await;
                return Err(match diagnosis {
                    Ok(invalid) => SendError::Refused(invalid),
                    Err(e) => SendError::Unavailable(e),
                });
            }
            Err(e) => return Err(SendError::Unavailable(unreachable(chain, e))),
        };
        if gas > self.gas_limit_cap {
            return Err(SendError::Refused(Invalid::new(
                ErrorReason::SimulationFailed,
                format!(
                    "settling this payment would use {gas} gas, above this facilitator's cap of {}",
                    self.gas_limit_cap
                ),
            )));
        }
        Ok((gas.saturating_mul(12) / 10).min(self.gas_limit_cap))
    }

    /// The receipt of `hash`, waiting up to the receipt timeout.
    pub(super) async fn await_receipt(
        &self,
        chain: &Chain,
        hash: B256,
    ) -> Option<Arc<TransactionReceipt>> {
        chain.watch.receipt(hash, self.receipt_timeout).await
    }
}
