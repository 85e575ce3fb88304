//! The paid call, step by step rather than through `Client::pay_recorded`, because
//! each step has a ledger write between it and the next: probe → choose (a refusal
//! signs nothing) → sign → ledger row and signed header in one transaction (a budget
//! refusal drops the signature unsent) → `sent` → send, once more with the same header
//! if the connection broke → `settled`, `unknown` or `refused` → `delivered` once the
//! sink has the whole body. A resume enters at "send" with the header the ledger kept.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use wallet::ledger::{Ledger, NewEntry};
use x402::Money;
use x402::client::{
    Balances, Client, ClientError, Delivered, Outcome, Policy, Price, Probe, SignedPayment,
};
use x402::time::unix_now;

use crate::error::{Before, BoxError, NotResumable, PayError, Refusal};
use crate::limits::{Cap, Limits};
use crate::paid::{Collect, Note, Paid, Payment, Quote, Sink};
use crate::request::RequestSpec;

/// The wallet's (anyhow) errors, kept whole: their text and their causes.
fn other(e: anyhow::Error) -> PayError {
    PayError::Other(boxed(e))
}

fn boxed(e: anyhow::Error) -> BoxError {
    e.reallocate_into_boxed_dyn_error_without_backtrace()
}

/// An error of the client before any ledger row: a refusal when nothing was signed
/// (an unreadable 402 too), else passed through.
fn stop(e: ClientError) -> PayError {
    if e.signed_nothing() {
        return PayError::Refused(Box::new(Refusal::Unpayable(e)));
    }
    PayError::Other(Box::new(e))
}

/// The paying HTTP client: like `x402::client::http_client`, it follows no redirect
/// (one would carry the signed header to whatever host the server names); a connect
/// timeout keeps an unreachable host from hanging the call, while the answer itself
/// may take as long as it streams.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    x402::http::public()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(15))
        .build()
}

/// Someone to tell about a call's progress.
type Notes = Box<dyn Fn(&Note<'_>) + Send + Sync>;

/// A wallet that pays: its name, its key, its ledger (the record of every payment,
/// written before the payment is sent) and an HTTP client.
pub struct Buyer {
    wallet: String,
    signer: PrivateKeySigner,
    ledger: Mutex<Ledger>,
    http: reqwest::Client,
    notes: Option<Notes>,
}

impl std::fmt::Debug for Buyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buyer")
            .field("wallet", &self.wallet)
            .field("payer", &self.signer.address())
            .finish_non_exhaustive()
    }
}

impl Buyer {
    /// Pays as `wallet` with `signer`, recording in `ledger`; give it [`http_client`]
    /// (or another client that follows no redirects).
    pub fn new(
        wallet: impl Into<String>,
        signer: PrivateKeySigner,
        ledger: Ledger,
        http: reqwest::Client,
    ) -> Self {
        Self {
            wallet: wallet.into(),
            signer,
            ledger: Mutex::new(ledger),
            http,
            notes: None,
        }
    }

    /// The wallet `name` (else the default one) of the agora home `agora_home`, with
    /// its ledger `wallet.db`.
    pub fn open(agora_home: &Path, name: Option<&str>) -> Result<Self, PayError> {
        let ledger = wallet::open_store(agora_home).map_err(other)?;
        let name = wallet::resolve_name(agora_home, &ledger, name).map_err(other)?;
        let signer = wallet::keys::load(agora_home, &name).map_err(other)?;
        let http = http_client()
            .map_err(|e| PayError::Other(format!("cannot build the HTTP client: {e}").into()))?;
        Ok(Self::new(name, signer, ledger, http))
    }

    /// Calls `notes` with each [`Note`] of a call (a retry, the settlement, a missing
    /// receipt, a resend), for a front-end to show.
    pub fn on_note(mut self, notes: impl Fn(&Note<'_>) + Send + Sync + 'static) -> Self {
        self.notes = Some(Box::new(notes));
        self
    }

    /// The wallet's name.
    pub fn wallet(&self) -> &str {
        &self.wallet
    }

    /// The wallet's address.
    pub fn payer(&self) -> Address {
        self.signer.address()
    }

    /// Calls `spec`, paying its 402 within `limits` and the wallet's budgets, and
    /// reads the whole answer into memory.
    pub async fn pay(&self, spec: &RequestSpec, limits: &Limits) -> Result<Paid, PayError> {
        self.pay_to(spec, limits, &mut Collect).await
    }

    /// [`Buyer::pay`], the answer's body going to `sink` as it arrives.
    pub async fn pay_to<S: Sink>(
        &self,
        spec: &RequestSpec,
        limits: &Limits,
        sink: &mut S,
    ) -> Result<Paid<S::Output>, PayError> {
        let (client, cap) = self.client(limits).await?;
        let challenge = match self.probe(&client, spec).await? {
            Probe::Answered(response) => return free(response, sink).await,
            Probe::PaymentRequired(challenge) => challenge,
        };
        let choice = client.choose(&challenge).map_err(refused(cap))?;
        if cap.is_none() {
            return Err(PayError::Refused(Box::new(Refusal::NoCap {
                price: choice.price,
            })));
        }
        if !limits.new_while_open {
            self.refuse_while_open(spec)?;
        }
        let signed = client.prepare(&challenge).map_err(stop)?;
        let id = self.record(spec, &signed)?;
        self.ledger().mark_sent(id, unix_now()).map_err(other)?;
        let first = client.send(self.request(spec)?, &signed).await;
        let (outcome, before) = match first {
            // The connection broke after the header may have arrived: the same
            // payment once more, which the server charges at most once.
            Err(ClientError::Http(error)) => {
                self.note(&Note::Retrying {
                    error: error.as_str(),
                });
                let again = client.send(self.request(spec)?, &signed).await;
                (again, Before::Sent)
            }
            other => (other, Before::Fresh),
        };
        self.finish(id, &signed, outcome, before, sink).await
    }

    /// What calling `spec` within `limits` would pay and sign, signing nothing: the
    /// free answer when no payment is asked.
    pub async fn quote(&self, spec: &RequestSpec, limits: &Limits) -> Result<Quote, PayError> {
        let (client, cap) = self.client(limits).await?;
        match self.probe(&client, spec).await? {
            Probe::Answered(response) => Ok(Quote::Free(response)),
            Probe::PaymentRequired(challenge) => client
                .dry_run(&challenge)
                .map(|preview| Quote::Priced(Box::new(preview)))
                .map_err(refused(cap)),
        }
    }

    /// Sends again the newest authorization for `spec`'s URL whose answer is missing
    /// (see `Ledger::last_resumable_payment`), byte for byte; never signs a new one.
    pub async fn resume(&self, spec: &RequestSpec) -> Result<Paid, PayError> {
        self.resume_to(spec, &mut Collect).await
    }

    /// [`Buyer::resume`], the answer's body going to `sink`.
    pub async fn resume_to<S: Sink>(
        &self,
        spec: &RequestSpec,
        sink: &mut S,
    ) -> Result<Paid<S::Output>, PayError> {
        let url = spec.url.as_str();
        let found = self
            .ledger()
            .last_resumable_payment(&self.wallet, url)
            .map_err(other)?;
        let Some((id, payment, settled)) = found else {
            return Err(PayError::NotResumable(NotResumable::Nothing {
                wallet: self.wallet.clone(),
                url: url.to_string(),
            }));
        };
        let signed: SignedPayment = serde_json::from_str(&payment).map_err(|e| {
            PayError::NotResumable(NotResumable::Unreadable {
                ledger_id: id,
                error: e.to_string(),
            })
        })?;
        if !settled && signed.valid_before_secs() <= unix_now() {
            return Err(PayError::NotResumable(NotResumable::Expired {
                ledger_id: id,
                valid_before: signed.valid_before_secs(),
                url: url.to_string(),
            }));
        }
        self.note(&Note::Resending {
            ledger_id: id,
            nonce: signed.nonce(),
        });
        let before = if settled {
            Before::Settled
        } else {
            self.ledger().mark_sent(id, unix_now()).map_err(other)?;
            Before::Sent
        };
        // The policy is never consulted: nothing is chosen or signed on a resume.
        let client = Client::new(
            self.http.clone(),
            self.signer.clone(),
            Policy::new(U256::ZERO),
        );
        let outcome = client.resume(self.request(spec)?, &signed).await;
        self.finish(id, &signed, outcome, before, sink).await
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note(&self, note: &Note<'_>) {
        if let Some(notes) = &self.notes {
            notes(note);
        }
    }

    fn request(&self, spec: &RequestSpec) -> Result<reqwest::Request, PayError> {
        spec.build(&self.http).map_err(|source| PayError::Request {
            url: spec.url.clone(),
            source,
        })
    }

    /// The x402 client for one call: the cap (the lower of the limit and the
    /// wallet's per-call budget), what is left of the daily budget, and the balances.
    async fn client(&self, limits: &Limits) -> Result<(Client, Option<Cap>), PayError> {
        let (per_call, left) = {
            let ledger = self.ledger();
            let budget = ledger.budget().map_err(other)?;
            (
                budget.per_call,
                ledger.remaining_daily_budget(unix_now()).map_err(other)?,
            )
        };
        let cap = limits.cap(per_call);
        let mut policy = limits.policy(cap.map_or(U256::MAX, |c| c.atomic));
        if let Some(left) = left {
            policy = policy.with_budget(left);
        }
        let mut client = Client::new(self.http.clone(), self.signer.clone(), policy);
        if !limits.balances_from.is_empty() {
            client = client.with_balances(self.balances(&limits.balances_from).await?);
        }
        Ok((client, cap))
    }

    /// The wallet's USDC on each chain, so the choice prefers a chain where it holds
    /// enough and refuses (before signing) a price it cannot cover.
    async fn balances(&self, rpcs: &[reqwest::Url]) -> Result<Balances, PayError> {
        let mut balances = Balances::default();
        for rpc in rpcs {
            let chain = wallet::chain::connect(None, Some(rpc))
                .await
                .map_err(other)?;
            let held = chain.balances(self.payer()).await.map_err(other)?;
            balances.insert(chain.network.clone(), held.usdc_address, held.usdc);
        }
        Ok(balances)
    }

    async fn probe(&self, client: &Client, spec: &RequestSpec) -> Result<Probe, PayError> {
        client.probe(self.request(spec)?).await.map_err(stop)
    }

    /// Refuses (before signing) a second payment for a URL while an earlier one is
    /// open: a seller that answers 402 to a signed payment still holds it, and signing
    /// again on every retry is how such a seller would collect many.
    fn refuse_while_open(&self, spec: &RequestSpec) -> Result<(), PayError> {
        let url = spec.url.as_str();
        let open = self
            .ledger()
            .open_payment(&self.wallet, url, unix_now())
            .map_err(other)?;
        match open {
            None => Ok(()),
            Some(entry) => Err(PayError::Refused(Box::new(Refusal::Open {
                wallet: self.wallet.clone(),
                url: url.to_string(),
                entry: Box::new(entry),
            }))),
        }
    }

    /// Writes the ledger row and the signed header before anything is sent; a budget
    /// refusal (another payment spent the remainder meanwhile) drops the signature.
    fn record(&self, spec: &RequestSpec, signed: &SignedPayment) -> Result<i64, PayError> {
        let requirement = &signed.requirement;
        let network = requirement.network.caip2();
        let entry = NewEntry {
            wallet: &self.wallet,
            payer: signed.payer(),
            url: spec.url.as_str(),
            network: &network,
            asset: requirement.asset,
            pay_to: requirement.pay_to,
            amount: requirement.amount,
            nonce: signed.nonce(),
            valid_before: signed.valid_before_secs(),
        };
        let payment = serde_json::to_string(signed).map_err(|e| PayError::Other(Box::new(e)))?;
        self.ledger()
            .record_payment_within_budget(&entry, &payment, unix_now())
            .map_err(other)?
            .map_err(|refusal| PayError::Refused(Box::new(Refusal::Budget(refusal))))
    }

    /// Turns the server's answer into a ledger status and the caller's result.
    async fn finish<S: Sink>(
        &self,
        id: i64,
        signed: &SignedPayment,
        outcome: Result<Outcome, ClientError>,
        before: Before,
        sink: &mut S,
    ) -> Result<Paid<S::Output>, PayError> {
        let price = price_of(signed);
        let settled = before == Before::Settled;
        // A settled row keeps its status; every other outcome moves an open row.
        let unknown = || {
            if settled {
                Ok(())
            } else {
                self.ledger().mark_unknown(id, unix_now())
            }
        };
        match outcome {
            Ok(Outcome::Delivered(delivered)) => {
                let tx = delivered.charged_in();
                let Delivered {
                    response,
                    receipt,
                    receipt_error,
                    ..
                } = *delivered;
                // The answer is paid for: it goes to the sink even if the ledger
                // cannot be written, and that failure is reported after it.
                let marked = match tx {
                    Some(tx) => {
                        self.note(&Note::Charged { price: &price, tx });
                        if settled {
                            Ok(())
                        } else {
                            self.ledger().mark_settled(id, &tx.to_string(), unix_now())
                        }
                    }
                    // Charged earlier (a cut answer fetched again): nothing to record.
                    None if settled => Ok(()),
                    None => {
                        self.note(&Note::NoReceipt {
                            status: response.status(),
                            receipt_error: receipt_error.as_deref(),
                        });
                        unknown()
                    }
                };
                let payment = Payment {
                    ledger_id: id,
                    price,
                    payer: signed.payer(),
                    pay_to: signed.requirement.pay_to,
                    asset: signed.requirement.asset,
                    nonce: signed.nonce(),
                    valid_before: signed.valid_before_secs(),
                    tx,
                    receipt,
                };
                let (status, headers) = (response.status(), response.headers().clone());
                let body = match sink.receive(response, Some(&payment)).await {
                    Ok(body) => body,
                    Err(source) => {
                        return Err(PayError::Incomplete {
                            ledger_id: id,
                            price: Box::new(payment.price),
                            source,
                        });
                    }
                };
                marked
                    .and_then(|()| self.ledger().mark_delivered(id, unix_now()))
                    .map_err(|e| PayError::Unrecorded {
                        ledger_id: id,
                        source: boxed(e),
                    })?;
                Ok(Paid {
                    status,
                    headers,
                    body,
                    payment: Some(payment),
                })
            }
            Ok(Outcome::Pending(pending)) => {
                unknown().map_err(other)?;
                Err(PayError::Pending {
                    ledger_id: id,
                    price: Box::new(price),
                    reason: pending.reason,
                    tx: pending.transaction,
                    retry_after: pending.retry_after,
                })
            }
            Err(error @ (ClientError::Rejected { .. } | ClientError::PayToChanged { .. })) => {
                match before {
                    // A refusal is no proof of non-payment: the server holds the
                    // signed authorization and may still submit it before it expires.
                    Before::Fresh => self
                        .ledger()
                        .mark_refused_after_sending(id, &error.to_string(), unix_now())
                        .map_err(other)?,
                    Before::Sent => unknown().map_err(other)?,
                    Before::Settled => {}
                }
                Err(PayError::Rejected {
                    ledger_id: id,
                    error,
                    before,
                    valid_before: signed.valid_before_secs(),
                })
            }
            Err(error) => {
                unknown().map_err(other)?;
                Err(PayError::Unknown {
                    ledger_id: id,
                    price: Box::new(price),
                    error,
                })
            }
        }
    }
}

/// The policy's refusal, naming the wallet's per-call budget when it was the cap.
fn refused(cap: Option<Cap>) -> impl Fn(x402::client::Refusal) -> PayError {
    move |refusal| {
        PayError::Refused(Box::new(Refusal::Policy {
            refusal,
            cap_from_wallet: cap.is_some_and(|c| c.from_wallet),
        }))
    }
}

/// A free answer: straight to the sink, nothing recorded.
async fn free<S: Sink>(
    response: reqwest::Response,
    sink: &mut S,
) -> Result<Paid<S::Output>, PayError> {
    let (status, headers) = (response.status(), response.headers().clone());
    let body = sink
        .receive(response, None)
        .await
        .map_err(PayError::Other)?;
    Ok(Paid {
        status,
        headers,
        body,
        payment: None,
    })
}

/// A stored payment's price: known USDC, else a token counted with USDC's decimals
/// and shown by its address (as [`crate::limits::allowed_asset`] allows one).
fn price_of(signed: &SignedPayment) -> Price {
    let r = &signed.requirement;
    let (decimals, symbol) = match r.network.known() {
        Some(chain) if chain.usdc.address == r.asset => {
            (chain.usdc.decimals, chain.usdc.symbol.to_string())
        }
        _ => (
            x402::client::UNLISTED_ASSET_DECIMALS,
            format!("units of {}", r.asset.to_checksum(None)),
        ),
    };
    Price {
        money: Money::from_atomic(r.amount, decimals),
        symbol,
        network: r.network.clone(),
    }
}
