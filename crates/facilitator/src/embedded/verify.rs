//! Verifying: the signature and scope checks, the persisted reservation, and the
//! `eth_call` simulation (alone, or batched with others by the chain's simulator)
//! with one diagnostic read that names why a payment would fail.

use super::*;

impl Inner {
    /// The signature checks plus "do we settle this token on this chain".
    pub(super) fn check<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> Result<Checked<'a>, Invalid> {
        let requirements = &request.payment_requirements;
        let payer = eip3009::verify_signature(&request.payment_payload, requirements)?;
        let chain = requirements
            .network
            .chain_id()
            .and_then(|id| self.chains.get(&id))
            .ok_or_else(|| {
                Invalid::new(
                    ErrorReason::InvalidNetwork,
                    format!(
                        "this facilitator does not settle on {}",
                        requirements.network
                    ),
                )
            })?;
        // A zero-value authorization pays nothing, yet settling it costs this
        // facilitator gas: anyone could drain its ETH with self-signed ones.
        if requirements.amount.is_zero()
            || request
                .payment_payload
                .payload
                .authorization
                .value
                .is_zero()
        {
            return Err(Invalid::new(
                ErrorReason::ValueMismatch,
                "a zero-value authorization pays nothing and is refused; the requirement's amount and the authorized value must be at least one atomic unit",
            ));
        }
        if !chain.assets.contains(&requirements.asset) {
            return Err(Invalid::new(
                ErrorReason::AssetNotAllowed,
                format!(
                    "this facilitator does not settle token {} on {}; its operator can add it to the chain's allowed assets",
                    requirements.asset, chain.network
                ),
            ));
        }
        Ok(Checked {
            chain,
            key: AuthorizationKey {
                chain_id: chain.chain_id,
                asset: requirements.asset,
                payer,
                nonce: request.payment_payload.payload.authorization.nonce,
            },
            request,
        })
    }

    pub(super) async fn claim(
        &self,
        checked: &Checked<'_>,
        want: GuardState,
    ) -> Result<Claim, Invalid> {
        let key = checked.key;
        let lease = self.lease_seconds(checked);
        self.db(move |s| s.claim(&key, want, unix_now(), lease))
            .await
            .map_err(|e| Invalid::new(unexpected(want), e.to_string()))
    }

    /// Takes `checked` for settling and, when `begin`, opens its journal row in the
    /// same commit; the flag says whether a live reservation held it, that is,
    /// whether verify simulated it.
    pub(super) async fn claim_settle(
        &self,
        checked: &Checked<'_>,
        begin: bool,
    ) -> Result<(Claim, bool, Option<Settlement>), Invalid> {
        let key = checked.key;
        let lease = self.reservation_seconds;
        let requirements = &checked.request.payment_requirements;
        let terms = (requirements.pay_to, requirements.amount);
        self.db(move |s| s.claim_settlement(&key, terms, begin, unix_now(), lease))
            .await
            .map(|(verdict, prior, row)| (verdict, prior == Some(GuardState::Reserved), row))
            .map_err(|e| Invalid::new(unexpected(GuardState::Settling), e.to_string()))
    }

    /// How long a verified authorization is held for its settle: the requirement's
    /// `maxTimeoutSeconds` (the resource server waits no longer), at most the
    /// configured reservation. Once it ends the reservation is swept, and a settle of
    /// the same authorization simulates it again.
    fn lease_seconds(&self, checked: &Checked<'_>) -> u64 {
        checked
            .request
            .payment_requirements
            .max_timeout_seconds
            .clamp(1, self.reservation_seconds.max(1))
    }

    pub(super) fn settlement_tx(
        &self,
        checked: &Checked<'_>,
    ) -> Result<TransactionRequest, Invalid> {
        let call = eip3009::settlement_call(&checked.request.payment_payload.payload)?;
        Ok(TransactionRequest::default()
            .from(self.signer_address)
            .to(checked.request.payment_requirements.asset)
            .input(call.abi_encode().into()))
    }

    /// `eth_call` of the settlement, through the chain's simulator when it batches;
    /// one that a batch did not pass is simulated alone, and on revert one diagnostic
    /// read names the reason.
    pub(super) async fn simulate(
        &self,
        checked: &Checked<'_>,
    ) -> Result<Result<(), Invalid>, FacilitatorError> {
        let tx = match self.settlement_tx(checked) {
            Ok(tx) => tx,
            Err(invalid) => return Ok(Err(invalid)),
        };
        let answer = match simulate::queued(checked, &tx).await {
            Some(simulate::Simulated::Passed) => return Ok(Ok(())),
            Some(simulate::Simulated::Alone(answer)) => answer,
            Some(simulate::Simulated::Retry) | None => checked.chain.provider.call(tx).await,
        };
        match answer {
            Ok(_) => Ok(Ok(())),
            Err(RpcError::ErrorResp(payload)) => Ok(Err(self
                .diagnose(checked, payload.message.to_string())
                .await?)),
            Err(e) => Err(unreachable(checked.chain, e)),
        }
    }

    pub(super) async fn diagnose(
        &self,
        checked: &Checked<'_>,
        revert: String,
    ) -> Result<Invalid, FacilitatorError> {
        let requirements = &checked.request.payment_requirements;
        let auth = &checked.request.payment_payload.payload.authorization;
        let token = IEip3009Token::new(requirements.asset, &checked.chain.provider);
        let state = match token.authorizationState(auth.from, auth.nonce).call().await {
            Ok(state) => state,
            Err(alloy::contract::Error::TransportError(RpcError::ErrorResp(_)))
            | Err(alloy::contract::Error::AbiError(_))
            | Err(alloy::contract::Error::ZeroData(..)) => {
                return Ok(Invalid::new(
                    ErrorReason::Eip3009NotSupported,
                    format!(
                        "{} does not implement EIP-3009 authorizationState",
                        requirements.asset
                    ),
                ));
            }
            Err(e) => return Err(unreachable(checked.chain, e)),
        };
        if state {
            return Ok(Invalid::new(
                ErrorReason::NonceAlreadyUsed,
                "the token has already used this authorization's nonce; sign a new one",
            ));
        }
        if let Some((name, version)) = requirements.eip712_domain() {
            let on_chain_name = token
                .name()
                .call()
                .await
                .map_err(|e| unreachable(checked.chain, e))?;
            if on_chain_name != name {
                return Ok(Invalid::new(
                    ErrorReason::TokenNameMismatch,
                    format!(
                        "the token's EIP-712 name is {on_chain_name:?}, the requirement says {name:?}"
                    ),
                ));
            }
            let on_chain_version = token
                .version()
                .call()
                .await
                .map_err(|e| unreachable(checked.chain, e))?;
            if on_chain_version != version {
                return Ok(Invalid::new(
                    ErrorReason::TokenVersionMismatch,
                    format!(
                        "the token's EIP-712 version is {on_chain_version:?}, the requirement says {version:?}"
                    ),
                ));
            }
        }
        let balance = token
            .balanceOf(auth.from)
            .call()
            .await
            .map_err(|e| unreachable(checked.chain, e))?;
        if balance < auth.value {
            return Ok(Invalid::new(
                ErrorReason::InsufficientFunds,
                format!(
                    "payer {} holds {balance} atomic units, the payment needs {}",
                    auth.from, auth.value
                ),
            ));
        }
        Ok(Invalid::new(
            ErrorReason::SimulationFailed,
            format!("transferWithAuthorization would revert: {revert}"),
        ))
    }

    pub(super) async fn verify_request(
        &self,
        request: &FacilitatorRequest,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let checked = match self.check(request) {
            Ok(checked) => checked,
            Err(invalid) => return Ok(invalid_verify(invalid, None)),
        };
        let payer = checked.key.payer;
        let authorization = &request.payment_payload.payload.authorization;
        if let Err(invalid) = eip3009::check_validity(authorization, unix_now()) {
            return Ok(invalid_verify(invalid, Some(payer)));
        }
        match self.claim(&checked, GuardState::Reserved).await {
            Ok(Claim::Granted) => {}
            Ok(verdict) => return Ok(invalid_verify(refusal(verdict), Some(payer))),
            Err(invalid) => return Ok(invalid_verify(invalid, Some(payer))),
        }
        let simulated = self.simulate(&checked).await;
        if !matches!(simulated, Ok(Ok(()))) {
            self.release_key(checked.key).await;
        }
        Ok(match simulated? {
            Ok(()) => VerifyResponse {
                is_valid: true,
                invalid_reason: None,
                invalid_message: None,
                payer: Some(payer),
            },
            Err(invalid) => invalid_verify(invalid, Some(payer)),
        })
    }

    pub(super) async fn release_key(&self, key: AuthorizationKey) {
        if let Err(e) = self.db(move |s| s.release(&key)).await {
            tracing::error!("cannot release authorization {}: {e}", key.nonce);
        }
    }
}
