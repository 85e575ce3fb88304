//! The `agora` binary as a user runs it: `agora demo` sells, probes and buys on a real local
//! chain, `agora devnet` serves a usable chain until Ctrl-C, bad flags say what to type.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use tokio::process::Command;

fn agora() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agora"));
    command.kill_on_drop(true);
    command
}

#[tokio::test]
async fn demo_json_proves_an_exact_payment_on_chain() {
    let out = agora()
        .args(["demo", "--json", "--price", "0.0025"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let proof: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(proof["network"], "eip155:84532");
    assert_eq!(proof["amountAtomic"], "2500");
    assert_eq!(proof["transferValueAtomic"], "2500");
    assert_eq!(proof["nonceUsedOnChain"], true);
    assert_eq!(proof["replayRejected"], true);
    assert_eq!(proof["sellerBalanceBefore"], "1000");
    assert_eq!(proof["sellerBalanceAfter"], "1000.0025");
    assert_eq!(proof["payerBalanceAfter"], "999.9975");
    assert_ne!(proof["payer"], proof["payTo"]);
    assert_eq!(proof["probePassed"], true);
    assert_eq!(
        proof["agentId"], "0",
        "the demo seller is listed on ERC-8004"
    );
    let conditions = proof["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 6);
    assert!(
        conditions
            .iter()
            .all(|c| c.as_str().unwrap().contains("=True")),
        "{conditions:?}"
    );
    assert_eq!(
        proof["serviceAnswer"]["paidBy"]
            .as_str()
            .unwrap()
            .to_lowercase(),
        proof["payer"].as_str().unwrap().to_lowercase(),
        "the service saw the verified payer"
    );
}

/// Starts `agora devnet --json` and returns it with its summary line and the rest of
/// its stdout (kept open so a later print meets no closed pipe).
async fn spawn_devnet(
    extra: &[&str],
) -> (
    tokio::process::Child,
    serde_json::Value,
    testkit::process::Rest,
) {
    let mut command = agora();
    command
        .args(["devnet", "--json", "--port", "0"])
        .args(extra)
        .stderr(Stdio::null());
    testkit::process::spawn(command, Duration::from_secs(60)).await
}

fn rpc_of(summary: &serde_json::Value) -> impl Provider {
    let rpc = summary["rpcUrl"].as_str().unwrap();
    assert!(rpc.starts_with("http://127.0.0.1:"), "{rpc}");
    ProviderBuilder::new().connect_http(rpc.parse().unwrap())
}

#[tokio::test]
async fn devnet_serves_usdc_and_the_registry_until_interrupted() {
    let (mut child, summary, _stdout) = spawn_devnet(&["--accounts", "2", "--usdc", "5.5"]).await;
    assert_eq!(summary["chainId"], 84532);
    assert_eq!(summary["accounts"].as_array().unwrap().len(), 2);
    assert_eq!(summary["accounts"][1]["usdc"], "5.5");
    assert!(
        summary["keysNote"]
            .as_str()
            .unwrap()
            .contains("local use only")
    );

    let provider = rpc_of(&summary);
    assert_eq!(provider.get_chain_id().await.unwrap(), 84532);
    for contract in [
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "0x8004A818BFB912233c491871b3d84c89A494BD9e",
    ] {
        let code = provider
            .get_code_at(contract.parse::<Address>().unwrap())
            .await
            .unwrap();
        assert!(code.len() > 1000, "no contract at {contract}");
    }
    let account: Address = summary["accounts"][0]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(provider.get_balance(account).await.unwrap() > U256::ZERO);

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("devnet exits after Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        provider.get_chain_id().await.is_err(),
        "anvil must be stopped"
    );
}

#[tokio::test]
async fn anvil_dies_with_a_killed_devnet() {
    let (mut child, summary, _) = spawn_devnet(&["--accounts", "1"]).await;
    let provider = rpc_of(&summary);
    assert_eq!(provider.get_chain_id().await.unwrap(), 84532);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let mut stopped = false;
    for _ in 0..100 {
        if provider.get_chain_id().await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "anvil outlived its SIGKILLed parent");
}

#[tokio::test]
async fn bad_flags_say_what_to_type() {
    let out = agora()
        .args(["demo", "--price", "abc"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--price \"abc\" is not a USDC amount"),
        "{stderr}"
    );
    assert!(stderr.contains("such as 0.001"), "{stderr}");

    let out = agora()
        .args(["devnet", "--usdc", "0.0000001"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("smallest price is 0.000001"), "{stderr}");
}
