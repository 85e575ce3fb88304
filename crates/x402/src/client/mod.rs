//! The buyer: one x402 call is request → 402 → choose → sign → send → receipt, on
//! reqwest, shared by `agora pay`, `sell probe --paid`, `agora demo`, the
//! autoresearch coordinator and the MCP tools.
//!
//! The steps are public one by one because money safety needs a gap between them: a
//! caller records the [`SignedPayment`] (its ledger) after signing and before
//! sending, and on a lost answer or a [`Pending`] it sends that same payment again
//! ([`Client::resume`]) instead of signing a new one. [`Client::pay_recorded`] runs
//! the whole call with that hook. Every refusal before signing is a typed
//! [`Refusal`] whose message names the price and the limit it met.
//!
//! The 402 is read once per call and the payment is signed for that 402's `payTo`
//! only. A server whose 402 to the paid request offers the same token to another
//! address is refused with [`ClientError::PayToChanged`] and nothing is signed again,
//! so a changed `payTo` can never receive money.

mod answer;
mod challenge;
mod policy;
mod sign;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Request, Response};

pub use answer::{Delivered, Outcome, Pending, receipt};
pub use challenge::{AmountProblem, Challenge, ChallengeError, MAX_CHALLENGE_BODY_BYTES, Offer};
pub use policy::{
    AllowedAsset, Balances, Choice, Policy, Price, Refusal, UNLISTED_ASSET_DECIMALS, choose,
};
pub use sign::{MAX_VALIDITY_SECONDS, SignedPayment, header_name, preview, sign, validity_seconds};

use crate::eip3009::SignError;
use crate::time::UnixTimestamp;

/// The error a caller's record hook may return.
pub type RecordError = Box<dyn std::error::Error + Send + Sync>;

/// Why a call did not end in an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The 402 could not be read; nothing was signed.
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    /// The policy refused every offer; nothing was signed (boxed: it is large and
    /// rare, and `ClientError` is returned on every path).
    #[error(transparent)]
    Refused(Box<Refusal>),
    /// The chosen offer could not be signed; nothing was sent.
    #[error("{0}; nothing was sent")]
    Sign(#[from] SignError),
    /// The request failed on the way (connect, TLS, reset).
    #[error("the request failed: {0}")]
    Http(String),
    /// The request body is a stream, which cannot be sent twice (probe, then pay).
    #[error(
        "the request body is a stream and cannot be sent again with the payment; pass the body as bytes"
    )]
    NotReplayable,
    /// The caller's record hook failed; the signed payment was NOT sent.
    #[error("could not record the signed payment before sending it ({0}); nothing was sent")]
    Record(String),
    /// A stored payment's header no longer makes a valid HTTP header.
    #[error("the stored payment header is unusable ({0}); it was not sent")]
    StoredHeader(String),
    /// The server answered 402 to the payment: it was not accepted.
    #[error(
        "the server refused the payment{}: {message}; the same authorization will not be signed again",
        reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
    )]
    Rejected {
        /// The reason code (`x-payment-invalid-reason`, `paymentFailure.reason`).
        reason: Option<String>,
        /// The server's explanation.
        message: String,
    },
    /// The server's new 402 pays a different address than the one signed for.
    #[error(
        "the server's payTo changed from {signed} to {} after the payment was signed; refusing to pay the new address (no new signature was made)",
        offered.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
    )]
    PayToChanged {
        /// The address the signed authorization pays.
        signed: Address,
        /// What the server offers now.
        offered: Vec<Address>,
    },
}

impl From<Refusal> for ClientError {
    fn from(refusal: Refusal) -> Self {
        ClientError::Refused(Box::new(refusal))
    }
}

impl ClientError {
    /// The policy's refusal, when that is what stopped the call.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            ClientError::Refused(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn http(e: reqwest::Error) -> Self {
        ClientError::Http(e.without_url().to_string())
    }

    /// Whether the call stopped before any signature was made (the CLI's exit 2).
    pub fn signed_nothing(&self) -> bool {
        matches!(
            self,
            ClientError::Challenge(_) | ClientError::Refused(_) | ClientError::Sign(_)
        )
    }
}

/// What the first, unpaid request came to.
#[derive(Debug)]
pub enum Probe {
    /// Not a 402: the answer, body still streaming.
    Answered(Response),
    /// A readable 402.
    PaymentRequired(Challenge),
}

/// What `--dry-run` shows: the offer, its price, and the authorization that would
/// be signed (nonce zero: it is drawn at signing).
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The offer and its price.
    pub choice: Choice,
    /// What would be signed.
    pub authorization: crate::wire::Authorization,
    /// The header it would travel in.
    pub header: &'static str,
}

/// What a whole call came to.
#[derive(Debug)]
pub enum Answer {
    /// No payment was asked.
    Free(Response),
    /// Paid and answered.
    Delivered(Box<Delivered>),
    /// Paid, outcome unknown: resend `Pending::signed` with [`Client::resume`].
    Pending(Box<Pending>),
}

/// A reqwest client fit for paying: it follows no redirects, because a redirect
/// would carry the signed payment header to whatever host the server names, where
/// anyone could settle it without serving the buyer.
pub fn http_client() -> Result<reqwest::Client, ClientError> {
    crate::http::public()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(ClientError::http)
}

/// An x402 buyer: a reqwest client, a key and the user's policy.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    signer: PrivateKeySigner,
    policy: Policy,
    balances: Option<Balances>,
}

impl Client {
    /// A buyer paying with `signer` within `policy`. Give it [`http_client`] (or a
    /// client that follows no redirects) so the payment header goes nowhere else.
    pub fn new(http: reqwest::Client, signer: PrivateKeySigner, policy: Policy) -> Self {
        Self {
            http,
            signer,
            policy,
            balances: None,
        }
    }

    /// Prefer networks where the wallet holds enough, and refuse when none does.
    pub fn with_balances(mut self, balances: Balances) -> Self {
        self.balances = Some(balances);
        self
    }

    /// The payer's address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The reqwest client, for building requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `request` unpaid; a 402 is read into a [`Challenge`].
    pub async fn probe(&self, request: Request) -> Result<Probe, ClientError> {
        let response = self
            .http
            .execute(request)
            .await
            .map_err(ClientError::http)?;
        if response.status().as_u16() != 402 {
            return Ok(Probe::Answered(response));
        }
        let headers = response.headers().clone();
        let body = answer::bounded_body(response).await?;
        Ok(Probe::PaymentRequired(Challenge::read(&headers, &body)?))
    }

    /// The offer this client would pay, or why none (for `--dry-run`).
    pub fn choose(&self, challenge: &Challenge) -> Result<Choice, Refusal> {
        choose(challenge, &self.policy, self.balances.as_ref())
    }

    /// What would be paid and signed, signing nothing (`--dry-run`).
    pub fn dry_run(&self, challenge: &Challenge) -> Result<Preview, Refusal> {
        let choice = self.choose(challenge)?;
        let authorization = preview(self.address(), &choice.offer, UnixTimestamp::now());
        Ok(Preview {
            header: header_name(challenge.version),
            choice,
            authorization,
        })
    }

    /// Chooses and signs (nothing is sent).
    pub fn prepare(&self, challenge: &Challenge) -> Result<SignedPayment, ClientError> {
        let choice = self.choose(challenge)?;
        Ok(sign(
            &self.signer,
            challenge,
            &choice.offer,
            UnixTimestamp::now(),
        )?)
    }

    /// Sends `request` carrying `signed` and reads the answer.
    pub async fn send(
        &self,
        mut request: Request,
        signed: &SignedPayment,
    ) -> Result<Outcome, ClientError> {
        let name = HeaderName::from_bytes(signed.header_name.as_bytes())
            .map_err(|e| ClientError::StoredHeader(e.to_string()))?;
        let value = HeaderValue::from_str(&signed.header_value)
            .map_err(|e| ClientError::StoredHeader(e.to_string()))?;
        request.headers_mut().insert(name, value);
        let response = self
            .http
            .execute(request)
            .await
            .map_err(ClientError::http)?;
        answer::read(response, signed).await
    }

    /// Sends a payment signed earlier again, byte for byte (after a lost answer or a
    /// [`Pending`]); the server answers from the same authorization, charged once.
    pub async fn resume(
        &self,
        request: Request,
        signed: &SignedPayment,
    ) -> Result<Outcome, ClientError> {
        self.send(request, signed).await
    }

    /// The whole call without a ledger; see [`Client::pay_recorded`].
    pub async fn pay(&self, request: Request) -> Result<Answer, ClientError> {
        self.pay_recorded(request, |_| Ok(())).await
    }

    /// The whole call: probe, choose, sign, `record` the signed payment (a failure
    /// stops before sending), send, read the answer. When the connection breaks
    /// after sending, the same payment is sent once more (never a new signature);
    /// if that fails too, the recorded payment is what `--resume` sends later.
    pub async fn pay_recorded(
        &self,
        request: Request,
        record: impl FnOnce(&SignedPayment) -> Result<(), RecordError>,
    ) -> Result<Answer, ClientError> {
        let paid_request = request.try_clone().ok_or(ClientError::NotReplayable)?;
        let challenge = match self.probe(request).await? {
            Probe::Answered(response) => return Ok(Answer::Free(response)),
            Probe::PaymentRequired(challenge) => challenge,
        };
        let signed = self.prepare(&challenge)?;
        record(&signed).map_err(|e| ClientError::Record(e.to_string()))?;
        let retry = paid_request.try_clone();
        let outcome = match (self.send(paid_request, &signed).await, retry) {
            // The connection broke after the header may have arrived: the same
            // payment once more, which the server charges at most once.
            (Err(ClientError::Http(_)), Some(retry)) => self.send(retry, &signed).await?,
            (result, _) => result?,
        };
        Ok(match outcome {
            Outcome::Delivered(d) => Answer::Delivered(d),
            Outcome::Pending(p) => Answer::Pending(p),
        })
    }
}

#[cfg(test)]
mod tests;
