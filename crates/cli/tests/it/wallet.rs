//! `agora wallet` through the real binary, as a buyer types it: keys on disk with the
//! right modes, refusals that say what to type, balances that match what the devnet
//! says, and the default wallet receiving a first `agora sell` that names no payTo.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::support::agora;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use serde_json::Value;
use testkit::daemon;
use testkit::loopback;
use testkit::process::{self, Output};
use testkit::upstream::echo;

async fn run_with_stdin(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    process::run(agora(home), args, stdin).await
}

async fn run(home: &Path, args: &[&str]) -> Output {
    run_with_stdin(home, args, None).await
}

async fn ok(home: &Path, args: &[&str]) -> Output {
    process::ok(agora(home), args).await
}

async fn refused(home: &Path, args: &[&str]) -> String {
    let out = run(home, args).await;
    assert!(
        !out.success(),
        "agora {args:?} should fail:\n{}",
        out.stdout
    );
    out.stderr
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

#[tokio::test]
async fn wallets_are_private_files_and_only_export_yes_prints_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");

    let none = refused(&home, &["wallet", "address"]).await;
    assert!(none.contains("agora wallet new"), "{none}");

    let created = ok(&home, &["wallet", "new", "--json"]).await.json();
    assert_eq!(created["name"], "default");
    assert_eq!(created["default"], true, "the first wallet is the default");
    let address = created["address"].as_str().unwrap().to_string();
    let key_file = home.join("keys/default.key");
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&home.join("keys")), 0o700);

    let second = ok(&home, &["wallet", "new", "--name", "spare"])
        .await
        .stdout;
    assert!(second.contains("agora wallet use spare"), "{second}");
    assert_eq!(mode(&home.join("keys/spare.key")), 0o600);
    let again = refused(&home, &["wallet", "new"]).await;
    assert!(
        again.contains("already exists") && again.contains("--name NAME"),
        "{again}"
    );
    let bad = refused(&home, &["wallet", "new", "--name", "../x"]).await;
    assert!(bad.contains("--name main"), "{bad}");

    let shown = ok(&home, &["wallet", "address"]).await.stdout;
    assert_eq!(shown.trim(), address);
    let listed = ok(&home, &["wallet", "list", "--json"]).await.json();
    let wallets = listed["wallets"].as_array().unwrap();
    assert_eq!(wallets.len(), 2, "{listed}");
    assert_eq!(wallets[0]["name"], "default");
    assert_eq!(wallets[0]["address"], address.as_str());
    assert_eq!(wallets[0]["default"], true);
    assert_eq!(wallets[1]["default"], false);
    let text = ok(&home, &["wallet", "list"]).await.stdout;
    assert!(
        text.contains("* default") && text.contains(&address),
        "{text}"
    );

    // A key readable by others is refused with the chmod to type, and not imported.
    let key = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let loose = process::key_file(dir.path(), "loose.key", key, 0o644);
    let err = refused(
        &home,
        &[
            "wallet",
            "import",
            "--name",
            "imported",
            "--key-file",
            loose.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        err.contains(&format!("chmod 600 {}", loose.display())),
        "{err}"
    );
    assert!(!err.contains(key), "the key is never echoed: {err}");
    assert!(!home.join("keys/imported.key").exists());
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let imported = ok(
        &home,
        &[
            "wallet",
            "import",
            "--name",
            "imported",
            "--key-file",
            loose.to_str().unwrap(),
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(
        imported["address"],
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    );
    assert_eq!(imported["default"], false);
    assert_eq!(mode(&home.join("keys/imported.key")), 0o600);
    let piped = run_with_stdin(
        &home,
        &[
            "wallet",
            "import",
            "--name",
            "piped",
            "--key-file",
            "-",
            "--json",
        ],
        Some(&format!("0x{key}\n")),
    )
    .await;
    assert!(piped.success(), "{}", piped.stderr);
    assert_eq!(
        piped.json()["address"],
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    );

    // Export: refused without --yes, saying what to type; prints nothing on stdout.
    let out = run(&home, &["wallet", "export"]).await;
    assert!(!out.success());
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("agora wallet export --name default --yes"),
        "{}",
        out.stderr
    );
    let exported = ok(&home, &["wallet", "export", "--name", "imported", "--yes"])
        .await
        .stdout;
    assert_eq!(exported.trim(), format!("0x{key}"));
    // No other command prints it.
    for args in [
        &["wallet", "list"][..],
        &["wallet", "address", "--name", "imported"][..],
    ] {
        let out = ok(&home, args).await;
        assert!(!out.stdout.contains(key) && !out.stderr.contains(key));
    }

    ok(&home, &["wallet", "use", "imported"]).await;
    let shown = ok(&home, &["wallet", "address", "--json"]).await.json();
    assert_eq!(shown["name"], "imported");
    let missing = refused(&home, &["wallet", "use", "nope"]).await;
    assert!(missing.contains("agora wallet list"), "{missing}");

    // Budgets: decimals in, the same decimals out; nothing spent yet.
    let budget = ok(
        &home,
        &[
            "wallet",
            "budget",
            "--daily",
            "1.00",
            "--per-call",
            "0.05",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(budget["budget"]["daily"], "1");
    assert_eq!(budget["budget"]["perCall"], "0.05");
    assert_eq!(budget["remainingDaily"], "1");
    let bad = refused(&home, &["wallet", "budget", "--daily", "0.0000001"]).await;
    assert!(bad.contains("--daily"), "{bad}");
    let spent = ok(&home, &["wallet", "spent", "--since", "24h", "--json"])
        .await
        .json();
    assert_eq!(spent["spent"], "0");
    assert_eq!(spent["entries"].as_array().unwrap().len(), 0);
    assert_eq!(
        mode(&home.join("wallet.db")) & 0o077,
        0,
        "the wallet store is private"
    );
}

#[tokio::test]
async fn balance_is_what_the_chain_says() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let created = ok(&home, &["wallet", "new", "--json"]).await.json();
    let address: Address = created["address"].as_str().unwrap().parse().unwrap();
    chain
        .mint_usdc(address, U256::from(1_234_567))
        .await
        .unwrap();
    chain
        .set_eth_balance(address, U256::from(10u64).pow(U256::from(16)))
        .await
        .unwrap();

    let shown = ok(
        &home,
        &["wallet", "balance", "--rpc", chain.rpc_url(), "--json"],
    )
    .await
    .json();
    let usdc = chain.usdc_balance(address).await.unwrap();
    let gas = chain
        .provider()
        .unwrap()
        .get_balance(address)
        .await
        .unwrap();
    assert_eq!(usdc, U256::from(1_234_567));
    assert_eq!(shown["usdcAtomic"], usdc.to_string(), "{shown}");
    assert_eq!(shown["usdc"], "1.234567");
    assert_eq!(shown["gasAtomic"], gas.to_string());
    assert_eq!(shown["gas"], "0.01");
    assert_eq!(shown["network"], "eip155:84532");
    assert_eq!(shown["usdcAddress"], chain.usdc().address.to_string());

    // A funded devnet account, by name, with the network named too.
    let funded = process::account_key_file(dir.path(), "funded.key", &chain, 1);
    ok(
        &home,
        &[
            "wallet",
            "import",
            "--name",
            "funded",
            "--key-file",
            funded.to_str().unwrap(),
        ],
    )
    .await;
    let text = ok(
        &home,
        &[
            "wallet",
            "balance",
            "--name",
            "funded",
            "--network",
            "base-sepolia",
            "--rpc",
            chain.rpc_url(),
        ],
    )
    .await
    .stdout;
    let who = chain.accounts()[1].address();
    let usdc = x402::Money::from_atomic(chain.usdc_balance(who).await.unwrap(), 6);
    assert!(text.contains(&format!("{usdc} USDC")), "{text}");
    assert!(text.contains(" ETH"), "{text}");

    let wrong = refused(
        &home,
        &[
            "wallet",
            "balance",
            "--network",
            "base",
            "--rpc",
            chain.rpc_url(),
        ],
    )
    .await;
    assert!(
        wrong.contains("serves eip155:84532 but --network is eip155:8453"),
        "{wrong}"
    );
}

#[tokio::test]
async fn a_first_sell_without_pay_to_pays_the_default_wallet() {
    let chain = testkit::chain::devnet(1).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let created = ok(&home, &["wallet", "new", "--json"]).await.json();
    let address = created["address"].as_str().unwrap().to_string();
    let key = process::account_key_file(dir.path(), "facilitator.key", &chain, 0);
    let (_daemon, started) = daemon::serve(agora(&home), chain.rpc_url(), &key, &[]).await;
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();
    let upstream = loopback::serve(echo()).await;

    let out = ok(
        &home,
        &[
            "sell",
            "http",
            "echo",
            "--upstream",
            &upstream.url(),
            "--per-request",
            "0.001",
            "--no-register",
            "--wait",
            "30",
            "--json",
        ],
    )
    .await;
    assert!(
        out.stderr
            .contains(&format!("paying to wallet default {address}")),
        "{}",
        out.stderr
    );
    let sold = out.json();
    assert_eq!(
        sold["offer"]["spec"]["payment"]["payTo"],
        address.as_str(),
        "{sold}"
    );
    assert_eq!(sold["ready"], true, "{sold}");

    // The 402 buyers see names the wallet too.
    let answer = testkit::http()
        .get(format!("{gateway}/services/echo/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 402);
    let required = answer.headers()["payment-required"]
        .to_str()
        .unwrap()
        .to_string();
    let required: Value = x402::header::decode(&required).unwrap();
    assert_eq!(
        required["accepts"][0]["payTo"],
        address.as_str(),
        "{required}"
    );

    let pricing = ok(&home, &["sell", "pricing"]).await.stdout;
    assert!(
        pricing.contains(&format!("(unset, paying to wallet default {address})")),
        "{pricing}"
    );

    // Text output says so too.
    let text = ok(
        &home,
        &[
            "sell",
            "http",
            "echo2",
            "--upstream",
            &upstream.url(),
            "--per-request",
            "0.001",
            "--no-register",
        ],
    )
    .await
    .stdout;
    assert!(
        text.contains(&format!("paying to wallet default {address}")),
        "{text}"
    );
}

/// Writes a ledger row as `agora pay` will (the binary has no command that signs yet).
fn ledger_row(
    home: &Path,
    payer: Address,
    nonce: B256,
    amount: u64,
    valid_before: u64,
    status: &str,
) {
    let db = rusqlite::Connection::open(home.join("wallet.db")).unwrap();
    let now = x402::UnixTimestamp::now().as_secs();
    db.execute(
        "INSERT INTO spend (wallet, payer, url, network, asset, pay_to, amount, nonce,
             valid_before, status, signed_at, updated_at)
         VALUES ('default', ?1, 'http://seller/x', 'eip155:84532', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        rusqlite::params![
            payer.to_string(),
            "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            amount.to_string(),
            nonce.to_string(),
            valid_before as i64,
            status,
            now as i64,
        ],
    )
    .unwrap();
}

#[tokio::test]
async fn spent_asks_authorization_state_about_payments_whose_answer_was_lost() {
    use x402::Facilitator;

    let chain = testkit::chain::devnet(3).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&home, &["wallet", "new"]).await;
    ok(&home, &["wallet", "budget", "--daily", "1"]).await;

    // One authorization really settled on chain, its answer lost by the buyer.
    let facilitator = testkit::embedded::facilitator(&chain, dir.path()).await;
    let buyer = chain.accounts()[1].signer();
    let requirement = testkit::pay::requirement(&chain, chain.accounts()[2].address(), 300);
    let payload = testkit::pay::authorize(&buyer, &requirement);
    let settled = facilitator
        .settle(&x402::FacilitatorRequest::v2(&requirement, payload.clone()))
        .await
        .unwrap();
    assert!(settled.success, "{settled:?}");
    let valid_before: u64 = payload.authorization.valid_before.to::<u64>();
    let now = x402::UnixTimestamp::now().as_secs();
    ledger_row(
        &home,
        buyer.address(),
        payload.authorization.nonce,
        1000,
        valid_before,
        "unknown",
    );
    // One never used and expired; one never used and still valid.
    ledger_row(
        &home,
        buyer.address(),
        B256::repeat_byte(7),
        20_000,
        now - 10,
        "sent",
    );
    ledger_row(
        &home,
        buyer.address(),
        B256::repeat_byte(8),
        300_000,
        now + 600,
        "unknown",
    );

    let before = ok(&home, &["wallet", "spent", "--json"]).await.json();
    assert_eq!(
        before["spentAtomic"], "301000",
        "open rows count until validBefore: {before}"
    );

    let after = ok(
        &home,
        &["wallet", "spent", "--rpc", chain.rpc_url(), "--json"],
    )
    .await
    .json();
    let statuses: Vec<&str> = after["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["settled", "refused", "unknown"], "{after}");
    assert_eq!(after["spentAtomic"], "301000");
    assert_eq!(after["remainingDaily"], "0.699");
    let text = ok(&home, &["wallet", "spent"]).await.stdout;
    assert!(
        text.contains("expired") || text.contains("refused"),
        "{text}"
    );
}
