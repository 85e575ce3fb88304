//! The facilitator HTTP API's 503 answers with a test double behind it: when the
//! facilitator fails with an error that names its RPC URL (path and query carry a
//! provider's API key), the client reads at most `scheme://host[:port]`. This tests
//! the router's rendering only; the embedded facilitator's own errors are tested in
//! `embedded.rs`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use x402::facilitator::BoxFuture;
use x402::wire::{SettleResponse, Supported, VerifyResponse};
use x402::{Facilitator, FacilitatorError, FacilitatorRequest, Network, PaymentRequirements};

const RPC: &str = "http://127.0.0.1:1/v2/SECRETKEY?apikey=SECRETQUERY";

/// Every call fails the way an embedded facilitator with a dead RPC does.
struct DeadRpc(FacilitatorError);

impl Facilitator for DeadRpc {
    fn verify<'a>(
        &'a self,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(std::future::ready(Err(self.0.clone())))
    }

    fn settle<'a>(
        &'a self,
        _request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(std::future::ready(Err(self.0.clone())))
    }

    fn supported(&self) -> BoxFuture<'_, Result<Supported, FacilitatorError>> {
        Box::pin(std::future::ready(Err(self.0.clone())))
    }
}

fn request() -> FacilitatorRequest {
    let network = Network::BASE_SEPOLIA;
    let requirement = PaymentRequirements::exact(
        network.clone(),
        &network.default_asset().unwrap(),
        U256::from(1000),
        Address::repeat_byte(0x11),
        300,
    );
    let buyer = PrivateKeySigner::from_bytes(&B256::repeat_byte(7)).unwrap();
    testkit::pay::request(&buyer, &requirement)
}

#[tokio::test]
async fn router_503_shows_only_the_rpc_origin_test_double() {
    let failures = [
        FacilitatorError::Unreachable {
            endpoint: RPC.to_string(),
            message: format!("error sending request for url ({RPC}): connection refused"),
        },
        FacilitatorError::Timeout {
            endpoint: RPC.to_string(),
            seconds: 5,
        },
        FacilitatorError::BadResponse {
            endpoint: RPC.to_string(),
            status: 401,
            body: format!("bad key for {RPC}"),
        },
        FacilitatorError::Internal(format!("cannot serialize for {RPC}")),
    ];
    let http = testkit::http();
    for failure in failures {
        assert!(
            failure.to_string().contains("SECRET"),
            "the double's error names the secret, so the router has something to hide"
        );
        let app = facilitator::router(Arc::new(DeadRpc(failure.clone())));
        let server = testkit::loopback::serve(app).await;
        let base = server.url();
        for (method, path) in [
            ("POST", "/verify"),
            ("POST", "/settle"),
            ("GET", "/supported"),
        ] {
            let response = if method == "POST" {
                http.post(format!("{base}{path}")).json(&request())
            } else {
                http.get(format!("{base}{path}"))
            }
            .send()
            .await
            .unwrap();
            assert_eq!(response.status(), 503, "{path} {failure:?}");
            assert_eq!(response.headers()["retry-after"], "5");
            let headers = format!("{:?}", response.headers());
            let body: serde_json::Value = response.json().await.unwrap();
            let text = format!("{headers} {body}");
            assert!(!text.contains("SECRET"), "{path} leaks: {text}");
            assert!(!text.contains("/v2"), "{path} leaks the path: {text}");
            assert_eq!(body["reason"], "facilitator_unavailable");
            if !matches!(failure, FacilitatorError::Internal(_)) {
                let error = body["error"].as_str().unwrap();
                assert!(error.contains("http://127.0.0.1:1"), "{error}");
                assert!(error.contains("retry later"), "{error}");
            }
        }
    }
}
