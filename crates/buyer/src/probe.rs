//! Probing a sold endpoint the way a buyer first meets it: an unauthenticated request
//! that must come back as a valid x402 challenge with exactly the offer's terms, and
//! optionally one real paid call, made through `x402::client` like every other
//! payment agora sends. Seller tools (`agora sell probe`, the demo, discovery's price
//! probe) use it; no ledger is involved, since the paid probe is a test purchase.

use alloy::signers::local::PrivateKeySigner;
use reqwest::StatusCode;
use serde::Serialize;
use x402::client::{Answer, Client, ClientError, Delivered, Policy, SignedPayment};
use x402::wire::{PaymentRequired, PaymentRequirements, SettleResponse};

use crate::limits::allowed_asset;

/// Why a probe or a paid probe did not come back with an answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// reqwest could not build its client (TLS setup).
    #[error("cannot build an HTTP client")]
    Client(#[source] reqwest::Error),
    /// The unpaid request got no answer.
    #[error("probe failed: cannot reach {url}")]
    Unreachable {
        /// The URL probed.
        url: String,
        /// How it failed.
        #[source]
        source: reqwest::Error,
    },
    /// The URL does not make a request.
    #[error("cannot build a request for {url}")]
    Request {
        /// The URL.
        url: String,
        /// reqwest's reason.
        #[source]
        source: reqwest::Error,
    },
    /// The paid call stopped (refused, rejected, or lost).
    #[error("the paid request to {url} failed")]
    Payment {
        /// The URL.
        url: String,
        /// The client's reason.
        #[source]
        source: ClientError,
    },
    /// The endpoint answered without asking for payment: its offer is not gated.
    #[error(
        "{url} answered HTTP {status} without asking for payment; check the offer with: agora sell status"
    )]
    Free {
        /// The URL.
        url: String,
        /// What it answered.
        status: StatusCode,
    },
    /// The payment was sent and has not settled yet.
    #[error(
        "the payment to {url} was sent but has not settled yet ({}): {message}; see the gateway's log, or try again later",
        reason.as_deref().unwrap_or("pending")
    )]
    Pending {
        /// The URL.
        url: String,
        /// The server's reason code.
        reason: Option<String>,
        /// The server's explanation.
        message: String,
    },
}

/// One thing the probe checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it held.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// The probe's findings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    /// The URL probed.
    pub url: String,
    /// HTTP status of the unpaid request.
    pub status: u16,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// All checks held.
    pub passed: bool,
}

fn check(checks: &mut Vec<Check>, what: &str, ok: bool, detail: impl Into<String>) -> bool {
    checks.push(Check {
        what: what.to_string(),
        ok,
        detail: detail.into(),
    });
    ok
}

fn client() -> Result<reqwest::Client, ProbeError> {
    x402::http::direct()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(ProbeError::Client)
}

/// An endpoint's answer to a request without payment.
#[derive(Debug)]
pub struct Unpaid {
    /// HTTP status.
    pub status: u16,
    /// The `PAYMENT-REQUIRED` header: absent, or decoded (or why it would not decode).
    pub header: Option<Result<PaymentRequired, String>>,
    /// The body as text.
    pub body: String,
}

impl Unpaid {
    /// GETs `url` without payment.
    pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<Self, reqwest::Error> {
        let response = client.get(url).send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Ok(Self::read(status, &headers, body))
    }

    /// Reads an answer already received; separate from [`Unpaid::fetch`] so what a
    /// stranger's endpoint sends can be checked without a network (it must never
    /// panic the reader).
    pub fn read(status: u16, headers: &reqwest::header::HeaderMap, body: String) -> Self {
        let header = headers.get(x402::header::PAYMENT_REQUIRED).map(|v| {
            v.to_str()
                .map_err(|_| "the header is not ASCII".to_string())
                .and_then(|v| x402::header::decode::<PaymentRequired>(v).map_err(|e| e.to_string()))
        });
        Self {
            status,
            header,
            body,
        }
    }

    /// The challenge, from the header, else from the body.
    pub fn required(self) -> Option<PaymentRequired> {
        match self.header {
            Some(Ok(required)) => Some(required),
            _ => body_required(&self.body),
        }
    }
}

/// The body read as an x402 `PaymentRequired`, if it is one.
fn body_required(body: &str) -> Option<PaymentRequired> {
    serde_json::from_str(body).ok()
}

/// Sends an unpaid GET to `url` and compares the challenge with `expected`.
pub async fn probe(url: &str, expected: &PaymentRequirements) -> Result<ProbeReport, ProbeError> {
    let Unpaid {
        status,
        header,
        body,
    } = Unpaid::fetch(&client()?, url)
        .await
        .map_err(|source| ProbeError::Unreachable {
            url: url.to_string(),
            source,
        })?;
    let mut checks = Vec::new();
    let detail = match status {
        200 => "200: the endpoint is not payment-gated".to_string(),
        s => format!("HTTP {s}"),
    };
    if !check(
        &mut checks,
        "status is 402 Payment Required",
        status == 402,
        detail,
    ) {
        return Ok(finish(url, status, checks));
    }
    let what = "PAYMENT-REQUIRED header parses (x402 v2)";
    let required = match header {
        None => {
            check(&mut checks, what, false, "header missing");
            None
        }
        Some(Ok(r)) => {
            let detail = format!("{} payment option(s)", r.accepts.len());
            check(&mut checks, what, true, detail);
            Some(r)
        }
        Some(Err(e)) => {
            check(&mut checks, what, false, e);
            None
        }
    };
    let body_accepts = body_required(&body).map(|r| r.accepts);
    check(
        &mut checks,
        "JSON body parses (x402Version, accepts)",
        body_accepts.is_some(),
        if body_accepts.is_some() {
            "ok".to_string()
        } else {
            format!("body: {}", body.chars().take(200).collect::<String>())
        },
    );
    for (source, accepts) in [
        ("header", required.map(|r| r.accepts)),
        ("body", body_accepts),
    ] {
        let Some(accepts) = accepts else { continue };
        let found = accepts
            .iter()
            .find(|a| a.network == expected.network && a.asset == expected.asset);
        let Some(found) = found else {
            let offered: Vec<String> = accepts
                .iter()
                .map(|a| format!("{} {}", a.network.caip2(), a.asset))
                .collect();
            check(
                &mut checks,
                &format!(
                    "{source}: network {} and asset {}",
                    expected.network.caip2(),
                    expected.asset
                ),
                false,
                format!("offered: {}", offered.join(", ")),
            );
            continue;
        };
        check(
            &mut checks,
            &format!("{source}: network"),
            true,
            found.network.caip2(),
        );
        check(
            &mut checks,
            &format!("{source}: asset"),
            true,
            found.asset.to_string(),
        );
        check(
            &mut checks,
            &format!("{source}: scheme is {}", expected.scheme),
            found.scheme == expected.scheme,
            found.scheme.clone(),
        );
        check(
            &mut checks,
            &format!("{source}: payTo is {}", expected.pay_to),
            found.pay_to == expected.pay_to,
            found.pay_to.to_string(),
        );
        check(
            &mut checks,
            &format!("{source}: amount is {} atomic", expected.amount),
            found.amount == expected.amount,
            found.amount.to_string(),
        );
    }
    Ok(finish(url, status, checks))
}

fn finish(url: &str, status: u16, checks: Vec<Check>) -> ProbeReport {
    let passed = checks.iter().all(|c| c.ok);
    ProbeReport {
        url: url.to_string(),
        status,
        checks,
        passed,
    }
}

/// The outcome of one paid call.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaidCall {
    /// HTTP status of the paid request.
    pub status: u16,
    /// The settlement receipt, when one came back.
    pub receipt: Option<SettleResponse>,
    /// The answer's body.
    pub body: String,
}

/// A buyer that pays `requirement` and nothing else: its network, its token (a
/// devnet's too, which the client's USDC table does not know), at most its amount.
/// The probe has just checked that the endpoint asks exactly this, so anything more
/// expensive or elsewhere is refused by `x402::client` before it signs.
pub fn buyer(
    requirement: &PaymentRequirements,
    signer: PrivateKeySigner,
) -> Result<Client, ProbeError> {
    // Like `x402::client::http_client`, no redirects: one would carry the signed
    // header elsewhere. No proxy, as for the unpaid probe: the gateway may be local.
    let http = x402::http::direct()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(ProbeError::Client)?;
    let policy = Policy::new(requirement.amount)
        .allow_network(requirement.network.clone())
        .allow_asset(allowed_asset(
            requirement.network.clone(),
            requirement.asset,
            requirement.amount,
        ));
    Ok(Client::new(http, signer, policy))
}

/// Pays one GET of `url` through `x402::client` (402, choose, sign, send, receipt)
/// and returns the answer with the authorization that paid it, so a caller can
/// send that same authorization again (the demo's replay).
pub async fn pay(client: &Client, url: &str) -> Result<(PaidCall, SignedPayment), ProbeError> {
    let request = client
        .http()
        .get(url)
        .build()
        .map_err(|source| ProbeError::Request {
            url: url.to_string(),
            source,
        })?;
    let answer = client
        .pay(request)
        .await
        .map_err(|source| ProbeError::Payment {
            url: url.to_string(),
            source,
        })?;
    match answer {
        Answer::Delivered(delivered) => {
            let Delivered {
                response,
                receipt,
                signed,
                ..
            } = *delivered;
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            let call = PaidCall {
                status,
                receipt,
                body,
            };
            Ok((call, signed))
        }
        Answer::Free(response) => Err(ProbeError::Free {
            url: url.to_string(),
            status: response.status(),
        }),
        Answer::Pending(pending) => Err(ProbeError::Pending {
            url: url.to_string(),
            reason: pending.reason,
            message: pending.message,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

    use super::*;

    const CHALLENGE: &str = r#"{"x402Version":2,"error":"","accepts":[{"scheme":"exact","network":"eip155:84532","amount":"1000","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","maxTimeoutSeconds":60}]}"#;

    fn headers(pairs: &[(String, Vec<u8>)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                map.append(name, value);
            }
        }
        map
    }

    #[test]
    fn a_challenge_is_read_from_the_header_or_else_the_body() {
        let mut with_header = HeaderMap::new();
        with_header.insert(
            x402::header::PAYMENT_REQUIRED,
            HeaderValue::from_str(&STANDARD.encode(CHALLENGE)).unwrap(),
        );
        let from_header = Unpaid::read(402, &with_header, "not json".into());
        assert_eq!(from_header.required().unwrap().accepts.len(), 1);
        let from_body = Unpaid::read(402, &HeaderMap::new(), CHALLENGE.into());
        assert_eq!(from_body.required().unwrap().accepts.len(), 1);
        let mut bad = HeaderMap::new();
        bad.insert(
            x402::header::PAYMENT_REQUIRED,
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        let unreadable = Unpaid::read(402, &bad, String::new());
        assert_eq!(
            unreadable.header.as_ref().unwrap().as_ref().unwrap_err(),
            "the header is not ASCII"
        );
        assert!(unreadable.required().is_none());
    }

    /// A PAYMENT-REQUIRED value: raw bytes, base64 of anything, or base64 of JSON
    /// that is nearly a challenge.
    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(any::<u8>(), 0..300)
                .prop_map(|b| STANDARD.encode(b).into_bytes()),
            (".{0,40}", 0..CHALLENGE.len()).prop_map(|(noise, at)| {
                let mut json = CHALLENGE.to_string();
                let at = (0..=at)
                    .rev()
                    .find(|i| json.is_char_boundary(*i))
                    .unwrap_or(0);
                json.insert_str(at, &noise);
                STANDARD.encode(json).into_bytes()
            }),
        ]
    }

    fn body() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,300}",
            (".{0,40}", 0..CHALLENGE.len()).prop_map(|(noise, cut)| {
                let mut json = CHALLENGE.to_string();
                json.truncate(cut);
                json.push_str(&noise);
                json
            }),
            Just(CHALLENGE.replace("1000", "-1")),
            Just(CHALLENGE.replace("\"eip155:84532\"", "null")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn any_unpaid_answer_is_read_without_panicking(
            status in any::<u16>(),
            extra in prop::collection::vec(("[a-zA-Z-]{1,20}", prop::collection::vec(any::<u8>(), 0..40)), 0..4),
            challenge in proptest::option::of(header_value()),
            body in body(),
        ) {
            let mut pairs = extra;
            if let Some(value) = challenge {
                pairs.push((x402::header::PAYMENT_REQUIRED.to_string(), value));
            }
            let unpaid = Unpaid::read(status, &headers(&pairs), body.clone());
            prop_assert_eq!(unpaid.status, status);
            let from_header = matches!(unpaid.header, Some(Ok(_)));
            let required = unpaid.required();
            if !from_header {
                prop_assert_eq!(required.is_some(), body_required(&body).is_some());
            }
        }
    }
}
