//! The official x402 clients pay the gate without configuration: the Python SDK
//! (`x402` from PyPI) and the TypeScript client (`@x402/fetch` + `@x402/evm` from
//! npm, run with the machine's node), each through its current v2 path and through
//! its v1 path as a client that predates v2 would take it. The seller's USDC balance
//! must rise by exactly the price per call, read from the chain.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::PathBuf;

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use serde_json::Value;
use support::{Fixture, fixture};
use testkit::pay::PRICE;

enum Sdk {
    Python,
    TypeScript,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the SDK's buyer once against `url`; the tools come from `scripts/setup`.
async fn buy(sdk: &Sdk, url: &str, key: &PrivateKeySigner, legacy_v1: bool) -> Value {
    let root = repo_root();
    let mut command = match sdk {
        Sdk::Python => {
            let mut c = tokio::process::Command::new(root.join("tools/.venv/bin/python"));
            c.arg(root.join("tools/python/pay.py"));
            c
        }
        Sdk::TypeScript => {
            let mut c = tokio::process::Command::new("node");
            c.arg(root.join("tools/node/pay.mjs"));
            c
        }
    };
    command
        .args([url, "--method", "POST", "--data", "{\"q\":\"hi\"}"])
        .env("X402_PRIVATE_KEY", key.to_bytes().to_string());
    if legacy_v1 {
        command.arg("--legacy-v1");
    }
    let output = command
        .output()
        .await
        .expect("the official client runs (run scripts/setup to install it)");
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn pays_v2_and_v1(sdk: Sdk) {
    let f: Fixture = fixture().await;
    let before = f.seller_balance().await;
    let buyer = f.buyer(1);
    // The receipt is written in the version the buyer paid with, so its network
    // spelling tells which path the SDK took.
    for (i, (legacy, network)) in [(false, "eip155:84532"), (true, "base-sepolia")]
        .into_iter()
        .enumerate()
    {
        let result = buy(&sdk, &f.url("/echo"), &buyer, legacy).await;
        assert_eq!(result["status"], 200, "{result}");
        let receipt = &result["paymentResponse"];
        assert_eq!(receipt["success"], true, "{result}");
        assert_eq!(receipt["network"], network, "{result}");
        assert_eq!(
            receipt["payer"].as_str().unwrap().to_lowercase(),
            buyer.address().to_string().to_lowercase()
        );
        let body: Value = serde_json::from_str(result["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["payer"], buyer.address().to_checksum(None));
        assert_eq!(
            f.seller_balance().await - before,
            U256::from(PRICE * (i as u64 + 1)),
            "exactly the price per call, on chain"
        );
    }
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn the_official_python_client_pays() {
    pays_v2_and_v1(Sdk::Python).await;
}

#[tokio::test]
async fn the_official_typescript_client_pays() {
    pays_v2_and_v1(Sdk::TypeScript).await;
}
