//! `agora pay` through the real binary against `agora serve --rpc` on a devnet, as a
//! buyer types it: a paid call prints the body, moves exactly the price and leaves a
//! settled ledger row with the tx; refusals exit 2 before anything is signed (no
//! ledger row, no USDC moves); a dry run signs nothing; and an answer lost while the
//! chain stalls is fetched later with `--resume`, the same nonce, one transfer.

#![allow(clippy::unwrap_used)]

use crate::pay_servers;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use alloy::primitives::{B256, U256};
use serde_json::Value;
use support::{Market, PRICE};
use testkit::process::{self, Output};

async fn run(home: &Path, args: &[&str]) -> Output {
    process::run(support::agora(home), args, None).await
}

async fn ok(home: &Path, args: &[&str]) -> Output {
    process::ok(support::agora(home), args).await
}

/// A buyer home whose default wallet is devnet account 2 (funded with USDC).
async fn buyer_home(m: &Market) -> PathBuf {
    let home = m.dir.path().join("buyer");
    let key = testkit::process::account_key_file(m.dir.path(), "buyer.key", &m.chain, 2);
    process::default_wallet(support::agora(&home), &key).await;
    home
}

async fn ledger(home: &Path) -> Vec<Value> {
    ok(home, &["wallet", "spent", "--json"]).await.json()["entries"]
        .as_array()
        .unwrap()
        .clone()
}

async fn paid_so_far(m: &Market) -> U256 {
    m.chain.usdc_balance(m.payee).await.unwrap() - m.payee_before
}

/// The tx of a `paid 0.001 USDC on base-sepolia, tx 0x…` line.
fn receipt_tx(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("paid 0.001 USDC on base-sepolia, tx 0x"))
        .unwrap_or_else(|| panic!("no receipt line on stderr:\n{stderr}"));
    line.rsplit(' ').next().unwrap().to_string()
}

#[tokio::test]
async fn pays_agoras_gateway_once_per_call_and_refuses_before_signing() {
    let m = support::market("echo", 1, 600).await;
    let home = buyer_home(&m).await;
    let url = format!("{}/hello", m.url);

    // Not a 402: printed like curl, nothing paid, no ledger row.
    let healthz = format!("{}/healthz", m.seller.url);
    let file = m.dir.path().join("health.txt");
    let free = ok(
        &home,
        &["pay", &healthz, "-i", "-o", file.to_str().unwrap()],
    )
    .await;
    assert!(free.stdout.is_empty(), "{}", free.stdout);
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.starts_with("HTTP/1.1 200 OK\r\n"), "{saved}");

    // A dry run shows the price and what would be signed, and signs nothing.
    let dry = ok(&home, &["pay", &url, "--dry-run", "--json"])
        .await
        .json();
    assert_eq!(dry["price"], "0.001", "{dry}");
    assert_eq!(dry["network"], "base-sepolia", "{dry}");
    assert_eq!(dry["signed"], false, "{dry}");
    assert_eq!(
        dry["authorization"]["to"],
        m.payee.to_checksum(None),
        "{dry}"
    );
    let text = ok(&home, &["pay", &url, "--dry-run"]).await.stdout;
    assert!(text.contains("price: 0.001 USDC on base-sepolia"), "{text}");
    assert!(text.contains("nothing was signed"), "{text}");

    // Above --max: exit 2, the price and the flag named, no row, no USDC.
    let above = run(&home, &["pay", &url, "--max", "0.0005"]).await;
    above.exits_saying(2, &["0.001 USDC", "--max"]);
    assert!(above.stdout.is_empty(), "{}", above.stdout);
    // No cap at all: exit 2 saying what to type.
    let uncapped = run(&home, &["pay", &url]).await;
    uncapped.exits_saying(2, &["--max 0.01"]);
    // A network that is not offered.
    let elsewhere = run(&home, &["pay", &url, "--max", "0.01", "--network", "base"]).await;
    elsewhere.exits_saying(2, &["--network base-sepolia"]);
    // The wallet's per-call budget below --max: it is the cap, and it is named.
    ok(&home, &["wallet", "budget", "--per-call", "0.0005"]).await;
    let per_call = run(&home, &["pay", &url, "--max", "0.01"]).await;
    assert_eq!(per_call.code, Some(2), "{}", per_call.stderr);
    assert!(
        per_call
            .stderr
            .contains("agora wallet budget --per-call 0.001"),
        "{}",
        per_call.stderr
    );
    ok(&home, &["wallet", "budget", "--per-call", "0.01"]).await;
    // A wallet without USDC, balances read over --rpc: refused, naming the funding.
    ok(&home, &["wallet", "new", "--name", "empty"]).await;
    let rpc = [
        "--rpc",
        m.chain.rpc_url(),
        "--wallet",
        "empty",
        "--max",
        "0.01",
    ];
    let poor = run(&home, &[&["pay", url.as_str()][..], &rpc[..]].concat()).await;
    poor.exits_saying(2, &["fund the wallet"]);
    assert!(ledger(&home).await.is_empty());
    assert_eq!(paid_so_far(&m).await, U256::ZERO);

    // Paid: the body on stdout, the receipt line on stderr, exactly the price moved,
    // the row settled with that tx.
    let rpc = m.chain.rpc_url();
    let paid = ok(
        &home,
        &[
            "pay",
            &url,
            "--max",
            "0.01",
            "--rpc",
            rpc,
            "-d",
            r#"{"q":1}"#,
        ],
    )
    .await;
    assert!(paid.stdout.contains(r#""ok":true"#), "{}", paid.stdout);
    assert!(paid.stdout.contains("/hello"), "{}", paid.stdout);
    let tx = receipt_tx(&paid.stderr);
    assert_eq!(paid_so_far(&m).await, U256::from(PRICE));
    let rows = ledger(&home).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "settled", "{rows:?}");
    assert_eq!(rows[0]["tx"], tx.as_str(), "{rows:?}");
    assert_eq!(rows[0]["amount"], PRICE.to_string(), "{rows:?}");
    assert_eq!(rows[0]["url"], url.as_str(), "{rows:?}");

    // --json: status, body and receipt in one object.
    let json = ok(&home, &["pay", &url, "--max", "0.01", "--json"])
        .await
        .json();
    assert_eq!(json["status"], 200, "{json}");
    assert_eq!(json["body"]["ok"], true, "{json}");
    assert_eq!(json["receipt"]["network"], "base-sepolia", "{json}");
    assert_eq!(json["receipt"]["amountAtomic"], PRICE.to_string(), "{json}");
    assert_eq!(json["receipt"]["amount"], "0.001", "{json}");
    assert_eq!(json["receipt"]["symbol"], "USDC", "{json}");
    let payer = m.chain.accounts()[2].address().to_checksum(None);
    assert_eq!(json["receipt"]["payer"], payer.as_str(), "{json}");
    assert!(
        json["receipt"]["tx"].as_str().unwrap().starts_with("0x"),
        "{json}"
    );
    assert_eq!(paid_so_far(&m).await, U256::from(2 * PRICE));

    // Above what is left of the daily budget (0.002 spent of 0.0025): exit 2.
    ok(&home, &["wallet", "budget", "--daily", "0.0025"]).await;
    let over = run(&home, &["pay", &url, "--max", "0.01", "--json"]).await;
    over.exits_saying(2, &["0.001 USDC", "--daily"]);
    assert_eq!(over.json()["kind"], "refused");
    assert_eq!(ledger(&home).await.len(), 2);
    assert_eq!(paid_so_far(&m).await, U256::from(2 * PRICE));
}

#[tokio::test]
async fn a_lost_answer_is_resumed_with_the_same_authorization_and_charged_once() {
    let m = support::market("echo", 1, 600).await;
    let home = buyer_home(&m).await;
    let url = format!("{}/slow", m.url);
    let payer = m.chain.accounts()[2].address();

    // Blocks stop: the settlement cannot be confirmed, the gateway answers pending.
    m.chain.set_automine(false).await.unwrap();
    let pending = run(&home, &["pay", &url, "--max", "0.01"]).await;
    assert_eq!(
        pending.code,
        Some(3),
        "{}\n{}",
        pending.stdout,
        pending.stderr
    );
    assert!(
        pending
            .stderr
            .contains(&format!("agora pay --resume {url}")),
        "{}",
        pending.stderr
    );
    let rows = ledger(&home).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "unknown", "{rows:?}");
    let nonce: B256 = rows[0]["nonce"].as_str().unwrap().parse().unwrap();

    m.chain.set_automine(true).await.unwrap();
    m.chain.mine().await.unwrap();
    let resumed = ok(&home, &["pay", &url, "--resume"]).await;
    assert!(resumed.stdout.contains("/slow"), "{}", resumed.stdout);
    assert!(
        resumed.stderr.contains(&format!("nonce {nonce}")),
        "{}",
        resumed.stderr
    );
    let tx = receipt_tx(&resumed.stderr);
    let rows = ledger(&home).await;
    assert_eq!(rows.len(), 1, "no new authorization: {rows:?}");
    assert_eq!(rows[0]["status"], "settled", "{rows:?}");
    assert_eq!(rows[0]["tx"], tx.as_str(), "{rows:?}");
    assert_eq!(paid_so_far(&m).await, U256::from(PRICE), "charged once");
    let used = support::used_events(&m.chain).await;
    assert_eq!(used.get(&(payer, nonce)), Some(&1), "{used:?}");
    assert_eq!(used.len(), 1, "exactly one transfer: {used:?}");

    // Nothing open is left to resume.
    let again = run(&home, &["pay", &url, "--resume"]).await;
    again.exits_saying(1, &["whose answer is missing"]);
}

#[tokio::test]
async fn sse_tokens_are_printed_while_the_upstream_streams_and_curl_flags_reach_it() {
    use tokio::io::AsyncBufReadExt;

    let m = support::market("echo", 1, 600).await;
    let sse = testkit::upstream::recording().await;
    m.seller
        .sell("chat", sse.url.as_str().trim_end_matches('/'), m.payee, 600)
        .await;
    let home = buyer_home(&m).await;
    let url = format!("{}/services/chat/v1/chat/completions", m.seller.url);
    let mut child = support::agora(&home)
        .args(["pay", &url, "--max", "0.01", "-d", r#"{"stream":true}"#])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut first_at = None;
    let mut printed = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if first_at.is_none() && line.contains("token0") {
            first_at = Some(std::time::Instant::now());
        }
        printed.push_str(&line);
        printed.push('\n');
    }
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{printed}\n{stderr}");
    assert!(printed.contains("[DONE]"), "{printed}");
    receipt_tx(&stderr);
    let first_at = first_at.unwrap_or_else(|| panic!("no token0 in {printed}"));
    let finished = sse.state.stream_finished.lock().unwrap().unwrap();
    let gap = finished.duration_since(first_at);
    println!("agora pay printed the first SSE token {gap:?} before the upstream finished");
    assert!(gap >= std::time::Duration::from_millis(500), "gap {gap:?}");
    assert_eq!(paid_so_far(&m).await, U256::from(PRICE));

    // curl habits: -X, -H and a body from stdin reach the upstream.
    let echo = format!("{}/services/chat/echo", m.seller.url);
    let mut child = support::agora(&home)
        .args(["pay", &echo, "--max", "0.01", "-X", "PUT", "-d", "@-"])
        .args(["-H", "Content-Type: text/plain"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello from stdin").await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let echoed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(echoed["body"], "hello from stdin", "{echoed}");
    assert_eq!(echoed["path"], "/echo", "{echoed}");
    assert_eq!(paid_so_far(&m).await, U256::from(2 * PRICE));

    // A reader that stops early (`| head -1`): agora pay ends quietly, exit 0, and
    // the charged answer stays resumable since it was not delivered whole.
    let mut child = support::agora(&home)
        .args(["pay", &url, "--max", "0.01", "-d", r#"{"stream":true}"#])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(head.next_line().await.unwrap().unwrap().contains("token0"));
    drop(head);
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("error"),
        "{stderr}"
    );
    let rows = ledger(&home).await;
    assert_eq!(rows.last().unwrap()["status"], "settled", "{rows:?}");
    assert_eq!(paid_so_far(&m).await, U256::from(3 * PRICE));
}

#[tokio::test]
async fn a_402_after_paying_and_a_malformed_402_move_nothing() {
    let m = support::market("echo", 1, 600).await;
    let home = buyer_home(&m).await;
    let server = pay_servers::refusing(testkit::pay::requirement(&m.chain, m.payee, 600)).await;

    // Unreadable: exit 2 before signing, no row.
    let bad = run(
        &home,
        &["pay", &format!("{}/bad", server.url()), "--max", "0.01"],
    )
    .await;
    bad.exits_saying(2, &["nothing was signed"]);
    assert!(ledger(&home).await.is_empty());

    // Signed once, refused by the server: exit 4 with its reason. The server holds the
    // signature, so the row stays open (unknown, counting), never "refused".
    let url = format!("{}/x", server.url());
    let refused = run(&home, &["pay", &url, "--max", "0.01", "--json"]).await;
    refused.exits_saying(4, &["insufficient_funds", "counts against your budget"]);
    assert_eq!(refused.json()["kind"], "rejected");
    let rows = ledger(&home).await;
    assert_eq!(rows.len(), 1, "one signature only: {rows:?}");
    assert_eq!(rows[0]["status"], "unknown", "{rows:?}");
    assert!(
        rows[0]["reason"]
            .as_str()
            .unwrap()
            .contains("insufficient_funds"),
        "{rows:?}"
    );
    assert_eq!(paid_so_far(&m).await, U256::ZERO);
    // It can be resent as it is: refused again, still one row, still open.
    let again = run(&home, &["pay", &url, "--resume"]).await;
    assert_eq!(again.code, Some(4), "{}", again.stderr);
    let rows = ledger(&home).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "unknown", "{rows:?}");
}

/// The spent total `agora wallet spent --json` reports, in atomic units.
async fn spent_atomic(home: &Path) -> String {
    ok(home, &["wallet", "spent", "--json"]).await.json()["spentAtomic"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_seller_answering_402_to_signed_payments_cannot_bypass_the_daily_budget() {
    let m = support::market("echo", 1, 600).await;
    let home = buyer_home(&m).await;
    // A malicious seller: 402 to every request, paid or not.
    let server = pay_servers::refusing(testkit::pay::requirement(&m.chain, m.payee, 600)).await;
    let url = format!("{}/answer", server.url());
    ok(&home, &["wallet", "budget", "--daily", "0.0025"]).await;

    // The first call: signed, sent, refused. Its row still counts.
    let first = run(&home, &["pay", &url, "--max", "0.01"]).await;
    assert_eq!(first.code, Some(4), "{}", first.stderr);
    assert_eq!(spent_atomic(&home).await, PRICE.to_string());

    // The agent retries: refused before signing, naming what to type.
    let retry = run(&home, &["pay", &url, "--max", "0.01"]).await;
    retry.exits_saying(2, &["--resume", "--new", "nothing was signed"]);
    assert_eq!(ledger(&home).await.len(), 1, "nothing new was signed");

    // --new signs a second one anyway; both count.
    let second = run(&home, &["pay", &url, "--max", "0.01", "--new"]).await;
    assert_eq!(second.code, Some(4), "{}", second.stderr);
    assert_eq!(spent_atomic(&home).await, (2 * PRICE).to_string());
    // A third would pass 0.0025 a day: the budget trips before signing.
    let third = run(&home, &["pay", &url, "--max", "0.01", "--new"]).await;
    third.exits_saying(2, &["daily"]);
    assert_eq!(ledger(&home).await.len(), 2);
    assert_eq!(paid_so_far(&m).await, U256::ZERO);
}

#[tokio::test]
async fn a_cut_connection_or_body_is_retried_with_the_same_header_then_resumed() {
    let chain = testkit::chain::devnet(3).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("buyer");
    let key = testkit::process::account_key_file(dir.path(), "buyer.key", &chain, 2);
    process::default_wallet(support::agora(&home), &key).await;
    let requirement = testkit::pay::requirement(&chain, chain.accounts()[1].address(), 600);
    let tx = format!("0x{}", "ab".repeat(32));

    // Cut once: the automatic retry sends the same header and gets the answer.
    let (once, headers) = pay_servers::cutting(requirement.clone(), 1, 0).await;
    let url = format!("{once}/x");
    let paid = ok(&home, &["pay", &url, "--max", "0.01"]).await;
    assert_eq!(paid.stdout, "the paid answer");
    assert!(
        paid.stderr
            .contains("sending the same authorization once more"),
        "{}",
        paid.stderr
    );
    assert_eq!(receipt_tx(&paid.stderr), tx);
    let sent = headers.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], sent[1], "the retry resends the same header");

    // Cut twice: unknown, exit 3; --resume sends the same header a third time.
    let (twice, headers) = pay_servers::cutting(requirement.clone(), 2, 0).await;
    let url = format!("{twice}/x");
    let lost = run(&home, &["pay", &url, "--max", "0.01"]).await;
    assert_eq!(lost.code, Some(3), "{}", lost.stderr);
    assert!(
        lost.stderr.contains(&format!("agora pay --resume {url}")),
        "{}",
        lost.stderr
    );
    let rows = ledger(&home).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1]["status"], "unknown", "{rows:?}");
    let resumed = ok(&home, &["pay", &url, "--resume"]).await;
    assert_eq!(resumed.stdout, "the paid answer");
    let sent = headers.lock().unwrap().clone();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(
        sent.iter().all(|h| h == &sent[0]),
        "never a new signature: {sent:?}"
    );
    let rows = ledger(&home).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1]["status"], "settled", "{rows:?}");
    assert_eq!(rows[1]["tx"], tx.as_str(), "{rows:?}");

    // Charged, body cut: exit 3, the row settled; --resume fetches the whole answer
    // with the same header, then there is nothing left to resume.
    let (cut_body, headers) = pay_servers::cutting(requirement, 0, 1).await;
    let url = format!("{cut_body}/x");
    let cut = run(&home, &["pay", &url, "--max", "0.01"]).await;
    cut.exits_saying(3, &["--resume"]);
    let rows = ledger(&home).await;
    assert_eq!(rows[2]["status"], "settled", "{rows:?}");
    let whole = ok(&home, &["pay", &url, "--resume"]).await;
    assert_eq!(whole.stdout, "the paid answer");
    let sent = headers.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], sent[1], "never a new signature: {sent:?}");
    assert_eq!(ledger(&home).await.len(), 3);
    let none = run(&home, &["pay", &url, "--resume"]).await;
    assert_eq!(none.code, Some(1), "{}", none.stderr);
}
