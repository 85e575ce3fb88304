//! The devnet against real anvil: EIP-3009 payments signed by agora and by the official
//! Python x402 SDK settle on the installed USDC, replays and wrong domains revert, and
//! the ERC-8004 registry mints agent ids from 0.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{SolCall, SolEvent};
use devnet::{Devnet, IDENTITY_REGISTRY_ADDRESS};
use testkit::pay::PRICE;
use tokio::io::AsyncWriteExt;
use x402::eip3009::{self, IEip3009Token};
use x402::{ExactEvmPayload, PaymentPayload, PaymentRequirements, X402Version};

sol! {
    #[sol(rpc)]
    interface IIdentityRegistry {
        event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
        function register(string agentURI) external returns (uint256 agentId);
        function tokenURI(uint256 tokenId) external view returns (string);
        function ownerOf(uint256 tokenId) external view returns (address);
        function getVersion() external pure returns (string);
    }
}

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn requirement(chain: &Devnet, pay_to: Address) -> PaymentRequirements {
    testkit::pay::requirement(chain, pay_to, 60)
}

fn as_payment(requirement: &PaymentRequirements, payload: ExactEvmPayload) -> PaymentPayload {
    PaymentPayload::v2(requirement, payload)
}

/// Sends `transferWithAuthorization(v,r,s)` from `relayer`; Err carries the revert.
async fn settle(
    chain: &Devnet,
    relayer: PrivateKeySigner,
    payload: &ExactEvmPayload,
) -> Result<TransactionReceipt, String> {
    let provider = chain.provider_for(relayer).unwrap();
    let call = eip3009::settlement_call(payload).map_err(|e| e.to_string())?;
    let tx = TransactionRequest::default()
        .to(chain.usdc().address)
        .input(call.abi_encode().into());
    let pending = provider
        .send_transaction(tx)
        .await
        .map_err(|e| e.to_string())?;
    let receipt = pending.get_receipt().await.map_err(|e| e.to_string())?;
    if receipt.status() {
        Ok(receipt)
    } else {
        Err(format!("reverted in {}", receipt.transaction_hash))
    }
}

fn transfers(receipt: &TransactionReceipt) -> Vec<IEip3009Token::Transfer> {
    receipt
        .inner
        .logs()
        .iter()
        .filter_map(|log| IEip3009Token::Transfer::decode_log_data(log.data()).ok())
        .collect()
}

#[tokio::test]
async fn agora_signed_authorization_moves_exactly_the_value_and_cannot_be_replayed() {
    let chain = testkit::chain::devnet(3).await;
    let (relayer, buyer, seller) = (
        &chain.accounts()[0],
        &chain.accounts()[1],
        &chain.accounts()[2],
    );
    let req = requirement(&chain, seller.address());
    let payload = testkit::pay::authorize(&buyer.signer(), &req);
    let payer = eip3009::verify_offline(
        &as_payment(&req, payload.clone()),
        &req,
        x402::time::unix_now(),
    )
    .expect("agora verifies its own signature");
    assert_eq!(payer, buyer.address());

    let buyer_before = chain.usdc_balance(buyer.address()).await.unwrap();
    let seller_before = chain.usdc_balance(seller.address()).await.unwrap();
    let receipt = settle(&chain, relayer.signer(), &payload)
        .await
        .expect("settles");
    let logs = transfers(&receipt);
    assert_eq!(logs.len(), 1);
    assert_eq!(
        (logs[0].from, logs[0].to, logs[0].value),
        (buyer.address(), seller.address(), U256::from(PRICE))
    );
    assert_eq!(
        chain.usdc_balance(seller.address()).await.unwrap() - seller_before,
        U256::from(PRICE)
    );
    assert_eq!(
        buyer_before - chain.usdc_balance(buyer.address()).await.unwrap(),
        U256::from(PRICE)
    );
    let token = IEip3009Token::new(chain.usdc().address, chain.provider().unwrap());
    assert!(
        token
            .authorizationState(buyer.address(), payload.authorization.nonce)
            .call()
            .await
            .unwrap()
    );

    let replay = settle(&chain, relayer.signer(), &payload)
        .await
        .unwrap_err();
    assert!(
        replay.contains("authorization is used or canceled"),
        "{replay}"
    );
    assert_eq!(
        chain.usdc_balance(seller.address()).await.unwrap() - seller_before,
        U256::from(PRICE),
        "a replay must not move money"
    );
    chain.stop().await;
}

#[tokio::test]
async fn wrong_domain_name_is_refused_by_agora_and_reverts_on_chain() {
    let chain = testkit::chain::devnet(3).await;
    let (relayer, buyer, seller) = (
        &chain.accounts()[0],
        &chain.accounts()[1],
        &chain.accounts()[2],
    );
    let mut wrong = requirement(&chain, seller.address());
    wrong.extra.as_mut().unwrap().name = Some("USD Coin".into());
    let payload = testkit::pay::authorize(&buyer.signer(), &wrong);

    let right = requirement(&chain, seller.address());
    let refusal = eip3009::verify_offline(
        &as_payment(&right, payload.clone()),
        &right,
        x402::time::unix_now(),
    )
    .unwrap_err();
    assert_eq!(refusal.reason, x402::ErrorReason::InvalidSignature);

    let seller_before = chain.usdc_balance(seller.address()).await.unwrap();
    let revert = settle(&chain, relayer.signer(), &payload)
        .await
        .unwrap_err();
    assert!(revert.contains("invalid signature"), "{revert}");
    assert_eq!(
        chain.usdc_balance(seller.address()).await.unwrap(),
        seller_before
    );
    chain.stop().await;
}

#[tokio::test]
async fn expired_authorization_reverts_on_chain() {
    let chain = testkit::chain::devnet(3).await;
    let (relayer, buyer, seller) = (
        &chain.accounts()[0],
        &chain.accounts()[1],
        &chain.accounts()[2],
    );
    let req = requirement(&chain, seller.address());
    let payload = testkit::pay::authorize(&buyer.signer(), &req);
    chain
        .advance_time(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    let revert = settle(&chain, relayer.signer(), &payload)
        .await
        .unwrap_err();
    assert!(revert.contains("authorization is expired"), "{revert}");
    chain.stop().await;
}

/// Runs the official Python SDK's buyer path (tools/python/sign_exact.py) on a 402.
async fn python_sign(required: &serde_json::Value, key: B256) -> PaymentPayload {
    let root = project_root();
    let python = root.join("tools/.venv/bin/python");
    assert!(
        python.is_file(),
        "the official Python x402 client is not installed: run scripts/setup"
    );
    let mut child = tokio::process::Command::new(python)
        .arg(root.join("tools/python/sign_exact.py"))
        .env("X402_PRIVATE_KEY", key.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(required.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "python signer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the SDK printed an x402 payment payload")
}

#[tokio::test]
async fn official_python_x402_payment_is_verified_by_agora_and_settles() {
    let chain = testkit::chain::devnet(3).await;
    let (relayer, buyer, seller) = (
        &chain.accounts()[0],
        &chain.accounts()[1],
        &chain.accounts()[2],
    );
    let req = requirement(&chain, seller.address());
    let required = x402::PaymentRequired {
        x402_version: X402Version::V2,
        error: Some("payment required".into()),
        resource: Some(x402::ResourceInfo {
            url: "http://127.0.0.1/paid".into(),
            description: Some("test".into()),
            mime_type: Some("application/json".into()),
        }),
        accepts: vec![req.clone()],
        extensions: None,
    };
    let payment = python_sign(
        &serde_json::to_value(&required).unwrap(),
        buyer.private_key(),
    )
    .await;
    assert_eq!(payment.x402_version, X402Version::V2);
    assert_eq!(
        payment.accepted.as_ref(),
        Some(&req),
        "the SDK echoes the requirement"
    );
    let payer = eip3009::verify_offline(&payment, &req, x402::time::unix_now())
        .expect("agora verifies the official SDK's signature");
    assert_eq!(payer, buyer.address());

    let seller_before = chain.usdc_balance(seller.address()).await.unwrap();
    let receipt = settle(&chain, relayer.signer(), &payment.payload)
        .await
        .unwrap();
    assert_eq!(transfers(&receipt)[0].value, U256::from(PRICE));
    assert_eq!(
        chain.usdc_balance(seller.address()).await.unwrap() - seller_before,
        U256::from(PRICE)
    );
    chain.stop().await;
}

#[tokio::test]
async fn registry_register_emits_registered_with_agent_ids_from_zero() {
    let chain = testkit::chain::devnet(2).await;
    let owner = &chain.accounts()[1];
    let registry = IIdentityRegistry::new(
        IDENTITY_REGISTRY_ADDRESS,
        chain.provider_for(owner.signer()).unwrap(),
    );
    assert_eq!(registry.getVersion().call().await.unwrap(), "2.0.0");
    assert_eq!(
        IIdentityRegistry::Registered::SIGNATURE_HASH,
        "0xca52e62c367d81bb2e328eb795f7c7ba24afb478408a26c0e201d155c449bc4a"
            .parse::<B256>()
            .unwrap()
    );
    assert_eq!(
        keccak256("Registered(uint256,string,address)"),
        IIdentityRegistry::Registered::SIGNATURE_HASH
    );
    for expected_id in [0u64, 1] {
        let uri = format!("https://x/y{expected_id}.json");
        let receipt = registry
            .register(uri.clone())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        let log = receipt
            .inner
            .logs()
            .iter()
            .find(|l| l.topic0() == Some(&IIdentityRegistry::Registered::SIGNATURE_HASH))
            .expect("a Registered event");
        assert_eq!(log.address(), IDENTITY_REGISTRY_ADDRESS);
        let event = IIdentityRegistry::Registered::decode_log_data(log.data()).unwrap();
        assert_eq!(event.agentId, U256::from(expected_id));
        assert_eq!(event.agentURI, uri);
        assert_eq!(event.owner, owner.address());
        assert_eq!(registry.tokenURI(event.agentId).call().await.unwrap(), uri);
        assert_eq!(
            registry.ownerOf(event.agentId).call().await.unwrap(),
            owner.address()
        );
    }
    chain.stop().await;
}

#[test]
fn committed_contract_artifacts_match_a_fresh_build() {
    let root = project_root();
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("node")
        .arg(root.join("contracts/build.mjs"))
        .arg("--out")
        .arg(out.path())
        .status()
        .expect("node runs (run scripts/setup)");
    assert!(status.success(), "contracts/build.mjs failed");
    for artifact in [devnet::LOCAL_USDC, devnet::IDENTITY_REGISTRY] {
        let fresh =
            std::fs::read_to_string(out.path().join(format!("{}.json", artifact.name))).unwrap();
        assert!(
            fresh == artifact.json,
            "contracts/out/{}.json differs from a fresh build: run `node contracts/build.mjs` and commit",
            artifact.name
        );
    }
}
