//! `agora mcp` driven by a client no one here wrote: the official MCP Python SDK's
//! stdio client (tools/python/mcp_client.py, PyPI `mcp`, installed into tools/.venv
//! by scripts/setup). On a devnet with `agora serve --rpc` it initializes, lists the
//! tools with their schemas, sells an HTTP service (sell_http → sell_status →
//! sell_probe), pays it with a max (the chain shows exactly the price moved; the body
//! arrives byte for byte, an `@` included), and is refused sell_delete without
//! confirm, pay above max and pay above the wallet's per-call budget, nothing moved.
//! Then as a prompt-injected agent would call it: a second payment to a seller that
//! answered 402 to the first is refused until `new: true`; names that look like flags
//! stay names; link-local upstreams, and loopback ones that are no model server, are
//! not sold.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
use crate::pay_servers;

use std::path::{Path, PathBuf};

use crate::support::agora;
use alloy::primitives::U256;
use serde_json::{Value, json};
use testkit::chain::{Parties, parties};
use testkit::daemon;
use testkit::process;
use tokio::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the Python MCP client against `agora mcp` with `home`, calling `plan`.
async fn client(home: &Path, plan: &Value) -> Value {
    let python = root().join("tools/.venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup (it installs the MCP Python SDK from tools/python/requirements.txt)",
        python.display()
    );
    // The same environment as every agora test command, so the server's tools reach
    // this test's daemon and wallet only.
    let template = agora(home);
    let mut command = Command::new(python);
    command
        .arg(root().join("tools/python/mcp_client.py"))
        .arg(env!("CARGO_BIN_EXE_agora"))
        .arg(plan.to_string())
        .kill_on_drop(true);
    for (key, value) in template.as_std().get_envs() {
        match value {
            Some(v) => command.env(key, v),
            None => command.env_remove(key),
        };
    }
    let out = process::run(command, &[], None).await;
    assert!(
        out.success(),
        "the MCP client failed ({:?}):\n{}\n{}",
        out.code,
        out.stdout,
        out.stderr
    );
    out.json()
}

#[tokio::test]
async fn the_python_sdk_sells_probes_and_pays_through_agora_mcp() {
    let dir = tempfile::tempdir().unwrap();
    let Parties {
        chain,
        facilitator_key: key,
        buyer_key,
        payee,
        buyer,
        ..
    } = parties(dir.path()).await;
    let home = dir.path().join("home");

    let (_daemon, started) = daemon::serve(agora(&home), chain.rpc_url(), &key, &[]).await;
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();
    let upstream = testkit::upstream::recording().await;
    process::default_wallet(agora(&home), &buyer_key).await;
    let url = format!("{gateway}/services/echo/anything");
    let payee_before = chain.usdc_balance(payee).await.unwrap();
    let buyer_before = chain.usdc_balance(buyer).await.unwrap();

    let plan = json!([
        {"tool": "sell_http", "arguments": {
            "name": "echo", "upstream": upstream.url.as_str(), "per_request": "0.001",
            "pay_to": payee.to_string(), "no_register": true, "wait_seconds": 30}},
        {"tool": "sell_status", "arguments": {"name": "echo"}},
        {"tool": "sell_probe", "arguments": {"name": "echo", "local": true}},
        {"tool": "pay", "arguments": {"url": url, "max": "0.0005"}},
        {"tool": "pay", "arguments": {"url": url, "max": "0.01", "data": "@/etc/hostname"}},
        {"tool": "sell_delete", "arguments": {"name": "echo"}},
        {"tool": "sell_status", "arguments": {"name": "nosuch"}},
        {"tool": "sell_list", "arguments": {}},
        {"tool": "doctor", "arguments": {"rpc": chain.rpc_url()}},
        {"tool": "pricing_research", "arguments": {
            "indexer": testkit::loopback::dead_url().as_str(), "rpc": chain.rpc_url()}},
    ]);
    let report = client(&home, &plan).await;
    assert_eq!(report["server"], "agora", "{report}");

    // Every tool is listed with an object schema; pay requires max, delete has confirm.
    let tools = report["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for expected in [
        "sell_http",
        "sell_inference",
        "sell_list",
        "sell_status",
        "sell_probe",
        "sell_stop",
        "sell_delete",
        "pricing_research",
        "discover",
        "pay",
        "wallet_balance",
        "doctor",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let schema =
        |name: &str| tools.iter().find(|t| t["name"] == name).unwrap()["inputSchema"].clone();
    for t in tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert!(
            t["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{t}"
        );
    }
    let pay = schema("pay");
    let required: Vec<&str> = pay["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        required.contains(&"max") && required.contains(&"url"),
        "{pay}"
    );
    assert!(schema("sell_delete")["properties"]["confirm"].is_object());
    assert!(schema("sell_http")["properties"]["per_request"].is_object());

    let calls = report["calls"].as_array().unwrap();
    let sold = &calls[0];
    assert_eq!(sold["isError"], false, "{sold}");
    assert_eq!(sold["structured"]["ready"], true, "{sold}");
    let status = &calls[1];
    assert_eq!(status["isError"], false, "{status}");
    assert_eq!(
        status["structured"]["price"], "0.001 USDC/request",
        "{status}"
    );
    let probe = &calls[2];
    assert_eq!(probe["structured"]["probe"]["passed"], true, "{probe}");

    // Above max: a tool error with agora pay's refusal, nothing signed.
    let refused = &calls[3];
    assert_eq!(refused["isError"], true, "{refused}");
    assert_eq!(refused["structured"]["exitCode"], 2, "{refused}");
    let why = refused["structured"]["error"].as_str().unwrap();
    assert!(why.contains("0.001 USDC") && why.contains("--max"), "{why}");

    // Within max: paid once, exactly the price, on chain.
    let paid = &calls[4];
    assert_eq!(paid["isError"], false, "{paid}");
    assert_eq!(paid["structured"]["status"], 200, "{paid}");
    assert_eq!(
        paid["structured"]["body"]["body"], "@/etc/hostname",
        "the data is the body, not a file to read: {paid}"
    );
    assert_eq!(
        chain.usdc_balance(payee).await.unwrap() - payee_before,
        U256::from(1_000),
        "the payee got exactly 0.001 USDC"
    );
    assert_eq!(
        buyer_before - chain.usdc_balance(buyer).await.unwrap(),
        U256::from(1_000)
    );

    // sell_delete without confirm is refused and the offer stays.
    let delete = &calls[5];
    assert_eq!(delete["isError"], true, "{delete}");
    assert!(
        delete["structured"]["error"]
            .as_str()
            .unwrap()
            .contains("confirm: true"),
        "{delete}"
    );
    let missing = &calls[6];
    assert_eq!(missing["isError"], true, "{missing}");
    assert!(
        missing["structured"]["error"]
            .as_str()
            .unwrap()
            .contains("nosuch"),
        "the CLI's message reaches the client: {missing}"
    );
    let listed = &calls[7];
    let offers = listed["structured"]["items"].as_array().unwrap();
    assert_eq!(offers.len(), 1, "{listed}");
    assert_eq!(offers[0]["metadata"]["name"], "echo", "{listed}");

    // doctor answers its report: as the result, or inside the tool error when a check
    // fails, every failure with its fix.
    let doctor = &calls[8];
    let report = match doctor["isError"].as_bool().unwrap() {
        false => &doctor["structured"],
        true => &doctor["structured"]["output"],
    };
    let checks = report["checks"].as_array().unwrap();
    assert!(!checks.is_empty(), "{doctor}");
    assert_eq!(
        report["ok"],
        !doctor["isError"].as_bool().unwrap(),
        "{doctor}"
    );
    for check in checks.iter().filter(|c| c["status"] == "fail") {
        assert!(check["fix"].is_string(), "{check}");
    }

    // pricing_research scans the registry (the offer is unlisted): no comparable, a
    // note, nothing applied.
    let research = &calls[9];
    assert_eq!(research["isError"], false, "{research}");
    assert_eq!(research["structured"]["applied"], false, "{research}");
    assert_eq!(research["structured"]["buckets"], json!([]), "{research}");
    assert!(research["structured"]["note"].is_string(), "{research}");

    // The wallet's per-call budget binds below max: refused, naming the budget.
    process::ok(agora(&home), &["wallet", "budget", "--per-call", "0.0005"]).await;
    let payee_paid = chain.usdc_balance(payee).await.unwrap();
    let plan = json!([{"tool": "pay", "arguments": {"url": url, "max": "0.01"}}]);
    let report = client(&home, &plan).await;
    let over = &report["calls"][0];
    assert_eq!(over["isError"], true, "{over}");
    assert_eq!(over["structured"]["exitCode"], 2, "{over}");
    let why = over["structured"]["error"].as_str().unwrap();
    assert!(why.contains("--per-call"), "{why}");
    assert_eq!(chain.usdc_balance(payee).await.unwrap(), payee_paid);
}

#[tokio::test]
async fn print_config_names_the_claude_mcp_add_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = process::ok(agora(dir.path()), &["mcp", "--print-config"]).await;
    let (entry, line) = out.stdout.trim_end().rsplit_once('\n').unwrap();
    let entry: Value = serde_json::from_str(entry).unwrap();
    assert_eq!(entry["mcpServers"]["agora"]["command"], "agora");
    assert_eq!(entry["mcpServers"]["agora"]["args"], json!(["mcp"]));
    assert_eq!(line, "claude mcp add agora -- agora mcp");
}

#[tokio::test]
async fn the_pay_tool_signs_no_second_payment_while_the_first_is_open() {
    let chain = testkit::chain::devnet(3).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("buyer");
    let key = process::account_key_file(dir.path(), "buyer.key", &chain, 2);
    process::default_wallet(agora(&home), &key).await;
    // A seller that answers 402 to every request, paid or not.
    let requirement = testkit::pay::requirement(&chain, chain.accounts()[1].address(), 600);
    let server = pay_servers::refusing(requirement).await;
    let url = format!("{}/answer", server.url());
    let plan = json!([
        {"tool": "pay", "arguments": {"url": url, "max": "0.01"}},
        {"tool": "pay", "arguments": {"url": url, "max": "0.01"}},
        {"tool": "pay", "arguments": {"url": url, "max": "0.01", "new": true}},
    ]);
    let report = client(&home, &plan).await;
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(calls[0]["structured"]["exitCode"], 4, "{}", calls[0]);
    let again = &calls[1];
    assert_eq!(again["isError"], true, "{again}");
    assert_eq!(again["structured"]["exitCode"], 2, "{again}");
    let why = again["structured"]["error"].as_str().unwrap();
    assert!(
        why.contains("--resume") && why.contains("new: true") && why.contains("nothing was signed"),
        "{why}"
    );
    assert_eq!(calls[2]["structured"]["exitCode"], 4, "{}", calls[2]);
    let out = process::ok(agora(&home), &["wallet", "spent", "--json"]).await;
    let entries = out.json()["entries"].as_array().unwrap().clone();
    assert_eq!(
        entries.len(),
        2,
        "one signature per call that was allowed: {entries:?}"
    );
}

#[tokio::test]
async fn the_mcp_server_refuses_flag_names_and_upstreams_it_may_not_sell() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // Something on loopback that is no model server.
    let other = testkit::loopback::serve(testkit::upstream::echo()).await;
    let plan = json!([
        {"tool": "sell_status", "arguments": {"name": "--help"}},
        {"tool": "sell_http", "arguments": {
            "name": "meta", "upstream": "http://169.254.169.254/latest/meta-data/",
            "per_request": "0.001"}},
        {"tool": "sell_inference", "arguments": {
            "upstream": format!("http://127.0.0.1:{}", other.port()), "per_request": "0.001"}},
        {"tool": "pay", "arguments": {"url": "file:///etc/passwd", "max": "0.01"}},
    ]);
    let report = client(&home, &plan).await;
    let calls = report["calls"].as_array().unwrap();
    // A name is a name: `--help` is not read as the flag (which would print help and
    // succeed).
    assert_eq!(calls[0]["isError"], true, "{}", calls[0]);
    let metadata = calls[1]["structured"]["error"].as_str().unwrap();
    assert!(metadata.contains("link-local"), "{metadata}");
    let loopback = calls[2]["structured"]["error"].as_str().unwrap();
    assert!(loopback.contains("not a model server"), "{loopback}");
    let file = calls[3]["structured"]["error"].as_str().unwrap();
    assert!(file.contains("http(s)"), "{file}");
    for call in calls {
        assert_eq!(call["isError"], true, "{call}");
    }
}
