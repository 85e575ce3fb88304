//! `agora doctor` through the binary: on a broken setup (no daemon, an unfunded wallet,
//! a facilitator that does not answer) it names each problem with the command that
//! fixes it and exits 1; on a healthy devnet seller (embedded facilitator, funded
//! wallet, registered agent, a Ready offer, a model server) every check passes, and an
//! offer whose upstream went away is named with its stuck stage.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use testkit::daemon;
use testkit::loopback::{self, free_port};
use testkit::process::{self, Output};
use testkit::upstream::{echo, ollama};
use tokio::process::Command;

/// `agora` with no model server on the usual ports, so a developer's own Ollama cannot
/// change the verdict.
fn agora(home: &Path, inference_port: u16) -> Command {
    let mut command = process::agora(env!("CARGO_BIN_EXE_agora"), home);
    command.env("AGORA_INFERENCE_PORTS", inference_port.to_string());
    command
}

async fn ok(home: &Path, args: &[&str]) -> Output {
    process::ok(agora(home, free_port()), args).await
}

/// The check named `name` of a `doctor --json` report.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

fn status<'a>(report: &'a Value, name: &str) -> &'a str {
    check(report, name)["status"].as_str().unwrap()
}

fn text<'a>(report: &'a Value, name: &str, field: &str) -> &'a str {
    check(report, name)[field].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_broken_setup_names_each_problem_and_the_command_that_fixes_it() {
    let chain = testkit::chain::devnet(1).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let wallet = ok(&home, &["wallet", "new", "--json"]).await.json();
    let address = wallet["address"].as_str().unwrap().to_string();
    let dead_facilitator = loopback::dead_url().to_string();
    let dead_facilitator = dead_facilitator.trim_end_matches('/');

    let mut command = agora(&home, free_port());
    command.env("AGORA_FACILITATOR_URL", dead_facilitator);
    let out = process::run(
        command,
        &["doctor", "--json", "--rpc", chain.rpc_url()],
        None,
    )
    .await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    // --json: one object, the failure's, carrying the report.
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let report = out.json();
    assert_eq!(report["kind"], "check_failed", "{report}");
    assert_eq!(report["exitCode"], 1, "{report}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["network"], "eip155:84532");

    assert_eq!(status(&report, "daemon"), "fail");
    assert!(
        text(&report, "daemon", "summary").contains(&format!(
            "no agora daemon is listening on {}",
            home.join("agora.sock").display()
        )),
        "{report}"
    );
    assert_eq!(text(&report, "daemon", "fix"), "agora serve");

    assert_eq!(status(&report, "facilitator"), "fail");
    assert!(
        text(&report, "facilitator", "summary")
            .contains(&format!("{dead_facilitator}/supported did not answer")),
        "{report}"
    );
    assert!(
        text(&report, "facilitator", "fix").starts_with("agora sell pricing --facilitator-url "),
        "{report}"
    );

    assert_eq!(status(&report, "wallet"), "fail");
    assert!(
        text(&report, "wallet", "summary")
            .contains(&format!("({address}) holds no USDC on eip155:84532")),
        "{report}"
    );
    assert!(
        text(&report, "wallet", "fix")
            .starts_with(&format!("send USDC on eip155:84532 to {address}")),
        "{report}"
    );
    // What needs the daemon is not guessed at; the recipient is the new wallet.
    for name in ["gateway", "public_url", "registry", "offers"] {
        assert_eq!(status(&report, name), "skip", "{name}: {report}");
    }
    assert_eq!(status(&report, "recipient"), "ok");
    assert_eq!(status(&report, "models"), "warn");
    assert!(stderr_names(&out, &["daemon", "facilitator", "wallet"]));

    // The same verdicts for a person: every failure followed by its fix.
    let mut command = agora(&home, free_port());
    command.env("AGORA_FACILITATOR_URL", dead_facilitator);
    let human = process::run(command, &["doctor", "--rpc", chain.rpc_url()], None).await;
    assert_eq!(human.code, Some(1));
    let lines: Vec<&str> = human.stdout.lines().collect();
    for name in ["daemon", "facilitator", "wallet"] {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("✗ {name} ")))
            .unwrap_or_else(|| panic!("no ✗ {name} line:\n{}", human.stdout));
        assert!(
            lines[at + 1].trim_start().starts_with("fix: "),
            "{}",
            human.stdout
        );
    }
    assert!(
        human.stdout.contains("fix: agora serve\n"),
        "{}",
        human.stdout
    );
}

fn stderr_names(out: &Output, names: &[&str]) -> bool {
    out.stderr.contains("3 check(s) failed") && names.iter().all(|n| out.stderr.contains(n))
}

#[tokio::test]
async fn a_healthy_devnet_seller_passes_and_a_stuck_offer_is_named_with_its_fix() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("seller");
    let facilitator_key = process::account_key_file(dir.path(), "facilitator.key", &chain, 0);
    let wallet_key = process::account_key_file(dir.path(), "wallet.key", &chain, 1);
    let models = loopback::serve(ollama(&["qwen3:8b"])).await;

    let (_daemon, _started) = daemon::serve(
        agora(&home, models.port()),
        chain.rpc_url(),
        &facilitator_key,
        &["--registry-key-file", wallet_key.to_str().unwrap()],
    )
    .await;

    process::default_wallet(agora(&home, free_port()), &wallet_key).await;
    let upstream = loopback::serve(echo()).await;
    ok(
        &home,
        &[
            "sell",
            "http",
            "echo",
            "--upstream",
            &upstream.url(),
            "--per-request",
            "0.001",
            "--wait",
            "30",
            "--json",
        ],
    )
    .await;
    ok(&home, &["sell", "register", "--json"]).await;

    let doctor = ["doctor", "--json", "--rpc", chain.rpc_url()];
    let out = process::run(agora(&home, models.port()), &doctor, None).await;
    let report = out.json();
    assert_eq!(out.code, Some(0), "{report}\n{}", out.stderr);
    assert_eq!(report["ok"], true);
    for name in [
        "daemon",
        "gateway",
        "facilitator",
        "recipient",
        "wallet",
        "settlement_gas",
        "registry",
        "models",
        "offers",
    ] {
        assert_eq!(status(&report, name), "ok", "{name}: {report}");
    }
    // A gateway only this machine reaches is a warning with the fix, not a failure.
    assert_eq!(status(&report, "public_url"), "warn");
    assert!(text(&report, "public_url", "fix").contains("agora serve --public-url"));
    assert!(text(&report, "public_url", "fix").contains("agora serve --tunnel auto"));
    assert!(text(&report, "facilitator", "summary").contains("settles eip155:84532 itself"));
    assert!(
        text(&report, "wallet", "summary").contains("holds 1000 USDC"),
        "{report}"
    );
    assert!(
        text(&report, "registry", "summary").starts_with("agent #"),
        "{report}"
    );
    assert_eq!(
        check(&report, "models")["details"][0]["models"][0],
        "qwen3:8b"
    );
    assert_eq!(text(&report, "offers", "summary"), "all Ready: echo");

    // The upstream goes away: the offer is named with the stage it is stuck at.
    let upstream_url = upstream.url();
    upstream.stop().await;
    let out = process::run(agora(&home, models.port()), &doctor, None).await;
    assert_eq!(out.code, Some(1));
    let report = out.json();
    assert_eq!(status(&report, "offers"), "fail");
    let stuck = &check(&report, "offers")["details"][0];
    assert_eq!(stuck["name"], "echo");
    assert_eq!(stuck["stage"], "UpstreamHealthy");
    assert!(
        text(&report, "offers", "fix").starts_with(&format!("start the service at {upstream_url}")),
        "{report}"
    );
}

#[tokio::test]
async fn a_remote_facilitator_is_judged_by_its_supported_list_for_the_network() {
    let chain = testkit::chain::devnet(1).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let key = process::account_key_file(dir.path(), "facilitator.key", &chain, 0);
    let mut command = agora(&dir.path().join("facilitator"), free_port());
    command
        .args(["facilitator", "--json", "--listen", "127.0.0.1:0", "--rpc"])
        .arg(chain.rpc_url())
        .arg("--key-file")
        .arg(&key)
        .stderr(std::process::Stdio::null());
    let (_facilitator, started, _) = process::spawn(command, Duration::from_secs(60)).await;
    let url = started["url"].as_str().unwrap();
    let rpc = chain.rpc_url();

    let report = |network: Option<&'static str>| {
        let mut command = agora(&home, free_port());
        command.env("AGORA_FACILITATOR_URL", url);
        // The devnet RPC for balances, so nothing here reaches a public RPC.
        let mut args = vec!["doctor", "--json", "--rpc", rpc];
        args.extend(network.map(|n| ["--network", n]).into_iter().flatten());
        async move { process::run(command, &args, None).await.json() }
    };
    let settles = report(Some("base-sepolia")).await;
    assert_eq!(status(&settles, "facilitator"), "ok", "{settles}");
    assert_eq!(
        text(&settles, "facilitator", "summary"),
        format!("{url} settles eip155:84532 (/supported)")
    );

    let elsewhere = report(Some("base")).await;
    assert_eq!(status(&elsewhere, "facilitator"), "fail", "{elsewhere}");
    assert!(
        text(&elsewhere, "facilitator", "summary").contains(
            "does not settle exact payments on eip155:8453; its /supported lists: exact eip155:84532"
        ),
        "{elsewhere}"
    );
    assert!(
        text(&elsewhere, "facilitator", "fix").contains("agora sell pricing --network NAME"),
        "{elsewhere}"
    );
}
