//! The 402 challenge, in every form a client may read it.
//!
//! Everything about the 402 lives here: the requirements offered for a resource URL,
//! the challenge built from them, the refusal that says why a payment was not taken,
//! and the response that carries either.
//!
//! One response serves every official client: the `PAYMENT-REQUIRED` header carries
//! the exact v2 object (current clients read only the header when it is present), and
//! the JSON body is a v1 object (legacy clients read only the body, and only when it
//! says `x402Version: 1`) whose entries also carry the v2 fields (`amount`, CAIP-2
//! network in the header, top-level `resource`) for body-reading agents. A route
//! offering a network that has no v1 name gets a v2 body instead, because no v1
//! client could pay it anyway. Browsers get the paywall page (`paywall.rs`), still with 402.

use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use x402::header::PAYMENT_REQUIRED;
use x402::money::Money;
use x402::reason::Invalid;
use x402::wire::{PaymentRequired, PaymentRequirements, ResourceInfo, X402Version};

use crate::paywall;
use crate::respond;
use crate::route::Route;

/// A built 402: header value, JSON body and the v2 object behind both.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// base64 of the v2 `PaymentRequired`, for `PAYMENT-REQUIRED`.
    pub header: String,
    /// The JSON body.
    pub body: Value,
    /// The v2 object (for the HTML page and tests).
    pub required: PaymentRequired,
}

/// The requirements of `route` as offered for `resource_url`, with the v1 per-entry
/// resource fields filled in. `maxTimeoutSeconds` is at least `floor`, the validity a
/// paid call needs (upstream and settle deadlines plus a margin): clients sign for
/// that long, and an authorization that could expire mid-settlement is refused.
pub fn offered(route: &Route, resource_url: &str, floor: u64) -> Vec<PaymentRequirements> {
    route
        .accepts
        .iter()
        .map(|r| PaymentRequirements {
            resource: Some(resource_url.to_string()),
            description: Some(route.description.clone()),
            mime_type: Some(route.mime_type.clone()),
            max_timeout_seconds: r.max_timeout_seconds.max(floor),
            ..r.clone()
        })
        .collect()
}

/// Builds the challenge for `route` at `resource_url`; `floor` is as in [`offered`],
/// `error` says why payment is required (or why the last one failed) and `failure`
/// lands in `extensions.paymentFailure`.
pub fn build(
    route: &Route,
    resource_url: &str,
    floor: u64,
    error: &str,
    failure: Option<Value>,
) -> Result<Challenge, serde_json::Error> {
    let accepts = offered(route, resource_url, floor);
    let resource = ResourceInfo {
        url: resource_url.to_string(),
        description: Some(route.description.clone()),
        mime_type: Some(route.mime_type.clone()),
    };
    let extensions = failure.map(|f| json!({ "paymentFailure": f }));
    let required = PaymentRequired {
        x402_version: X402Version::V2,
        error: Some(error.to_string()),
        resource: Some(resource.clone()),
        accepts: accepts.clone(),
        extensions: extensions.clone(),
    };
    let header = x402::header::encode(&required)?;
    let body_version = if accepts.iter().all(|r| r.network.known().is_some()) {
        X402Version::V1
    } else {
        X402Version::V2
    };
    let entries: Vec<Value> = accepts
        .iter()
        .map(|r| body_entry(r, body_version))
        .collect();
    let mut body = Map::new();
    body.insert("x402Version".into(), json!(body_version.number()));
    body.insert("error".into(), json!(error));
    body.insert("resource".into(), serde_json::to_value(&resource)?);
    body.insert("accepts".into(), Value::Array(entries));
    if let Some(extensions) = extensions {
        body.insert("extensions".into(), extensions);
    }
    Ok(Challenge {
        header,
        body: Value::Object(body),
        required,
    })
}

/// The 402 for a request that carried no payment: JSON, or the HTML paywall when the
/// client asked for a page.
pub(crate) fn payment_required(
    route: &Route,
    resource_url: &str,
    floor: u64,
    headers: &HeaderMap,
) -> Response {
    respond_402(
        route,
        resource_url,
        floor,
        "payment required",
        None,
        wants_html(headers),
    )
}

/// A 402 that says why the payment was refused, with fresh requirements.
pub(crate) fn refused(
    route: &Route,
    resource_url: &str,
    floor: u64,
    invalid: &Invalid,
) -> Response {
    refused_because(
        route,
        resource_url,
        floor,
        invalid.reason.as_str(),
        &invalid.message,
    )
}

/// [`refused`] for a reason of the gateway's own that no facilitator gives (such as
/// `payment_bound_to_another_request`).
pub(crate) fn refused_because(
    route: &Route,
    resource_url: &str,
    floor: u64,
    reason: &str,
    message: &str,
) -> Response {
    let failure = json!({ "reason": reason, "message": message });
    let mut response = respond_402(route, resource_url, floor, message, Some(failure), false);
    if let Ok(v) = HeaderValue::from_str(reason) {
        response.headers_mut().insert("x-payment-invalid-reason", v);
    }
    response
}

fn respond_402(
    route: &Route,
    resource_url: &str,
    floor: u64,
    error: &str,
    failure: Option<Value>,
    html: bool,
) -> Response {
    let challenge = match build(route, resource_url, floor, error, failure) {
        Ok(c) => c,
        Err(e) => {
            return respond::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "challenge_encoding",
                e.to_string(),
            );
        }
    };
    let mut response = if html {
        let mut page = (
            StatusCode::PAYMENT_REQUIRED,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            paywall::page(route, &challenge),
        )
            .into_response();
        if let Ok(csp) = HeaderValue::from_str(&paywall::CONTENT_SECURITY_POLICY) {
            page.headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        page
    } else {
        (
            StatusCode::PAYMENT_REQUIRED,
            axum::Json(challenge.body.clone()),
        )
            .into_response()
    };
    respond::put(response.headers_mut(), PAYMENT_REQUIRED, &challenge.header);
    response.headers_mut().insert(
        header::LINK,
        HeaderValue::from_static("</api/services.json>; rel=\"catalog\""),
    );
    response
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// One `accepts` entry carrying both amount spellings and the v1 resource fields.
fn body_entry(requirement: &PaymentRequirements, version: X402Version) -> Value {
    let mut entry = requirement.to_wire(X402Version::V1);
    if let Value::Object(map) = &mut entry {
        map.insert("amount".into(), json!(requirement.amount.to_string()));
        if version == X402Version::V2 {
            map.insert("network".into(), json!(requirement.network.caip2()));
        }
    }
    entry
}

/// The price of one requirement for people: "0.001 USDC on Base Sepolia".
pub fn describe_price(requirement: &PaymentRequirements) -> String {
    let chain = requirement.network.known();
    let network = chain.map_or_else(
        || requirement.network.caip2(),
        |c| c.display_name.to_string(),
    );
    match chain.filter(|c| c.usdc.address == requirement.asset) {
        Some(c) => format!(
            "{} {} on {network}",
            Money::from_atomic(requirement.amount, c.usdc.decimals),
            c.usdc.symbol
        ),
        None => format!(
            "{} atomic units of token {} on {network}",
            requirement.amount, requirement.asset
        ),
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{U256, address};
    use reqwest::Url;
    use x402::network::Network;

    use super::*;

    fn route_on(network: Network, asset: &x402::network::Asset) -> Route {
        let req = PaymentRequirements::exact(
            network,
            asset,
            U256::from(1500),
            address!("0x1111111111111111111111111111111111111111"),
            300,
        );
        Route::new(
            "echo",
            "/services/echo",
            Url::parse("http://127.0.0.1:9").unwrap(),
            vec![req],
        )
    }

    #[test]
    fn header_is_exact_v2_and_body_is_v1_with_both_amounts() {
        let net = Network::BASE_SEPOLIA;
        let route = route_on(net.clone(), &net.default_asset().unwrap());
        let c = build(
            &route,
            "http://h/services/echo/x",
            0,
            "payment required",
            None,
        )
        .unwrap();
        let header: Value = serde_json::from_slice(
            &base64_decode(&c.header), // the exact v2 object
        )
        .unwrap();
        assert_eq!(header["x402Version"], 2);
        assert_eq!(header["accepts"][0]["network"], "eip155:84532");
        assert_eq!(header["accepts"][0]["amount"], "1500");
        assert!(header["accepts"][0].get("maxAmountRequired").is_none());
        assert_eq!(header["resource"]["url"], "http://h/services/echo/x");

        let body = &c.body;
        assert_eq!(body["x402Version"], 1);
        let entry = &body["accepts"][0];
        assert_eq!(entry["network"], "base-sepolia");
        assert_eq!(entry["amount"], "1500");
        assert_eq!(entry["maxAmountRequired"], "1500");
        assert_eq!(entry["resource"], "http://h/services/echo/x");
        assert_eq!(entry["extra"]["name"], "USDC");
        assert_eq!(entry["extra"]["version"], "2");
        assert_eq!(body["resource"]["url"], "http://h/services/echo/x");
        let parsed: PaymentRequired = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(parsed.accepts[0].amount, U256::from(1500));
    }

    #[test]
    fn unnamed_network_gets_a_v2_body() {
        let asset = x402::network::Asset {
            address: address!("0x2222222222222222222222222222222222222222"),
            decimals: 6,
            symbol: "TST".into(),
            eip712_name: "Test".into(),
            eip712_version: "1".into(),
        };
        let route = route_on(Network::Eip155(31337), &asset);
        let c = build(
            &route,
            "http://h/services/echo",
            0,
            "payment required",
            None,
        )
        .unwrap();
        assert_eq!(c.body["x402Version"], 2);
        assert_eq!(c.body["accepts"][0]["network"], "eip155:31337");
        assert_eq!(c.body["accepts"][0]["maxAmountRequired"], "1500");
        assert!(describe_price(&route.accepts[0]).contains("atomic units"));
    }

    #[test]
    fn failure_goes_into_extensions_and_html_is_escaped() {
        let net = Network::BASE_SEPOLIA;
        let mut route = route_on(net.clone(), &net.default_asset().unwrap());
        route.description = "<script>alert(1)</script>".into();
        let c = build(
            &route,
            "http://h/services/echo",
            0,
            "amount mismatch",
            Some(json!({"reason": "invalid_exact_evm_payload_authorization_value_mismatch"})),
        )
        .unwrap();
        assert_eq!(
            c.body["extensions"]["paymentFailure"]["reason"],
            "invalid_exact_evm_payload_authorization_value_mismatch"
        );
        let page = paywall::page(&route, &c);
        assert!(page.contains("0.0015 USDC on Base Sepolia"));
        assert!(!page.contains("<script>alert"));
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        let value: Value = x402::header::decode(s).unwrap();
        serde_json::to_vec(&value).unwrap()
    }
}
