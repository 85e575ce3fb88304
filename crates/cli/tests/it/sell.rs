//! Selling through the `agora` binary as a user does: `agora serve` with the embedded
//! facilitator on a devnet, `agora sell ...` against loopback upstreams, the official
//! Python client paying, and every claim about money checked on chain.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::agora;
use alloy::primitives::U256;
use devnet::Devnet;
use serde_json::{Value, json};
use testkit::daemon::{self, stop};
use testkit::loopback::{self, serve_on};
use testkit::process::{self, Output};
use testkit::upstream::{echo, ollama};
use tokio::process::{Child, Command};

async fn run(home: &Path, args: &[&str]) -> Output {
    process::run(agora(home), args, None).await
}

async fn ok(home: &Path, args: &[&str]) -> Output {
    process::ok(agora(home), args).await
}

/// `agora serve --foreground` on a devnet, and what its startup line said.
async fn serve(home: &Path, chain: &Devnet, key_file: &Path) -> (Child, Value) {
    serve_with(home, chain, key_file, &[]).await
}

async fn serve_with(
    home: &Path,
    chain: &Devnet,
    key_file: &Path,
    extra: &[&str],
) -> (Child, Value) {
    daemon::serve(agora(home), chain.rpc_url(), key_file, extra).await
}

fn key_file(dir: &Path, chain: &Devnet) -> PathBuf {
    process::account_key_file(dir, "facilitator.key", chain, 0)
}

async fn http_status(url: &str) -> (u16, Option<String>) {
    let r = testkit::http().get(url).send().await.unwrap();
    let required = r
        .headers()
        .get("payment-required")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), required)
}

async fn python_pay(url: &str, key: &str) -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("tools/.venv/bin/python"))
        .arg(root.join("tools/python/pay.py"))
        .arg(url)
        .env("X402_PRIVATE_KEY", key)
        .output()
        .await
        .expect("the official Python client runs (run scripts/setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn conditions(status: &Value) -> Vec<(String, String)> {
    status["offer"]["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn sell_http_end_to_end_through_the_binary() {
    let chain = testkit::chain::devnet(3).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let key = key_file(dir.path(), &chain);
    let seller = chain.accounts()[1].address();
    let buyer_key = chain.accounts()[2].private_key().to_string();
    let upstream = loopback::serve(echo()).await;
    let port = upstream.port();
    let (daemon, started) = serve(&home, &chain, &key).await;
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join("agora.sock"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "the admin socket is private");
    }

    let seller_text = seller.to_string();
    let created = ok(
        &home,
        &[
            "sell",
            "http",
            "echo",
            "--upstream",
            &upstream.url(),
            "--per-request",
            "0.001",
            "--pay-to",
            &seller_text,
            "--network",
            "base-sepolia",
            "--no-register",
            "--wait",
            "30",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(created["ready"], true, "{created}");
    let status = ok(&home, &["sell", "status", "echo", "--json"])
        .await
        .json();
    assert!(
        conditions(&status).iter().all(|(_, s)| s == "True"),
        "{status}"
    );
    assert_eq!(conditions(&status).len(), 6);
    assert_eq!(status["url"], format!("{gateway}/services/echo"));
    assert_eq!(status["price"], "0.001 USDC/request");
    let text = ok(&home, &["sell", "status", "echo"]).await.stdout;
    assert!(
        text.contains("✓ UpstreamHealthy") && text.contains("ℹ Registered"),
        "{text}"
    );

    let probe = ok(&home, &["sell", "probe", "echo", "--local", "--json"])
        .await
        .json();
    assert_eq!(probe["probe"]["passed"], true, "{probe}");
    assert!(probe["paid"].is_null());
    let before = chain.usdc_balance(seller).await.unwrap();
    let buyer_file = process::account_key_file(dir.path(), "buyer.key", &chain, 2);
    let paid_probe = ok(
        &home,
        &[
            "sell",
            "probe",
            "echo",
            "--local",
            "--paid",
            "--key-file",
            buyer_file.to_str().unwrap(),
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(paid_probe["paid"]["status"], 200, "{paid_probe}");
    assert_eq!(paid_probe["paid"]["receipt"]["success"], true);
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - before,
        U256::from(1000)
    );

    let before = chain.usdc_balance(seller).await.unwrap();
    let paid = python_pay(&format!("{gateway}/services/echo/hello"), &buyer_key).await;
    assert_eq!(paid["status"], 200, "{paid}");
    assert_eq!(paid["paymentResponse"]["success"], true);
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap() - before,
        U256::from(1000)
    );

    ok(&home, &["sell", "update", "echo", "--per-request", "0.002"]).await;
    let (code, required) = http_status(&format!("{gateway}/services/echo/x")).await;
    assert_eq!(code, 402);
    let required: Value = x402::header::decode(&required.unwrap()).unwrap();
    assert_eq!(
        required["accepts"][0]["amount"], "2000",
        "the next 402 shows the new price"
    );

    upstream.stop().await;
    let down = ok(&home, &["sell", "status", "echo", "--json"])
        .await
        .json();
    assert_eq!(down["ready"], false);
    assert!(
        conditions(&down).contains(&("UpstreamHealthy".into(), "False".into())),
        "{down}"
    );
    let before = chain.usdc_balance(seller).await.unwrap();
    let refused = python_pay(&format!("{gateway}/services/echo/hello"), &buyer_key).await;
    assert_eq!(refused["status"], 503, "{refused}");
    assert_eq!(
        chain.usdc_balance(seller).await.unwrap(),
        before,
        "nothing charged while down"
    );

    // The daemon restarts midway and loses nothing.
    stop(daemon).await;
    let (daemon, started) = serve(&home, &chain, &key).await;
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();
    let listed = ok(&home, &["sell", "list", "--json"]).await.json();
    let listed = &listed["items"];
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["spec"]["payment"]["price"]["perRequest"], "0.002");
    assert_eq!(listed[0]["metadata"]["generation"], 2);

    let _back = serve_on(echo(), port).await;
    let up = ok(&home, &["sell", "status", "echo", "--json"])
        .await
        .json();
    assert_eq!(up["ready"], true, "{up}");
    assert_eq!(
        http_status(&format!("{gateway}/services/echo/x")).await.0,
        402
    );

    ok(&home, &["sell", "stop", "echo", "--now"]).await;
    let stopped = ok(&home, &["sell", "status", "echo", "--json"])
        .await
        .json();
    assert!(conditions(&stopped).contains(&("RoutePublished".into(), "False".into())));
    assert_eq!(
        http_status(&format!("{gateway}/services/echo/x")).await.0,
        404
    );

    let refused = run(&home, &["sell", "delete", "echo"]).await;
    refused.fails_saying(&["pass --yes"]);
    ok(&home, &["sell", "delete", "echo", "--yes"]).await;
    let listed = ok(&home, &["sell", "list", "--json"]).await.json();
    assert_eq!(listed, json!({"items": []}));
    stop(daemon).await;
}

#[tokio::test]
async fn sell_inference_detects_the_model_server_and_reference_manifests_apply() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let key = key_file(dir.path(), &chain);
    let seller = chain.accounts()[1].address().to_string();
    let server = loopback::serve(ollama(&["qwen3:0.6b"])).await;
    let (daemon, started) = serve(&home, &chain, &key).await;
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();
    let ports = format!("1,{}", server.port());

    let mut command = agora(&home);
    command.env("AGORA_INFERENCE_PORTS", &ports).args([
        "sell",
        "inference",
        "qwen",
        "--per-mtok",
        "0.50",
        "--pay-to",
        &seller,
        "--wait",
        "30",
        "--json",
    ]);
    let out = command.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["ready"], true, "{created}");
    assert_eq!(
        created["offer"]["spec"]["model"]["name"], "qwen3:0.6b",
        "the only model was picked"
    );
    assert_eq!(created["offer"]["spec"]["model"]["runtime"], "ollama");
    // The inference API is sold with its own method (a GET here would be 404, M5).
    let chat = testkit::http()
        .post(format!("{gateway}/services/qwen/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 402);

    let missing = run(
        &home,
        &[
            "sell",
            "inference",
            "big",
            "--upstream",
            &server.url(),
            "--model",
            "llama3:70b",
            "--price",
            "0.01",
            "--pay-to",
            &seller,
            "--wait",
            "3",
        ],
    )
    .await;
    assert!(!missing.success());
    assert!(
        missing
            .stderr
            .contains("ModelReady is False (ModelNotFound)"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("qwen3:0.6b"),
        "the error lists what is served: {}",
        missing.stderr
    );

    let manifest = dir.path().join("offer.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: obol.org/v1alpha1\nkind: ServiceOffer\nmetadata:\n  name: tagged\n  namespace: llm\nspec:\n  type: inference\n  model:\n    name: qwen3:0.6b\n    runtime: ollama\n  upstream:\n    service: ollama\n    namespace: llm\n    port: {}\n    healthPath: /api/tags\n  payment:\n    network: base-sepolia\n    payTo: \"{seller}\"\n    price:\n      perRequest: \"0.0005\"\n  path: /services/tagged\n  registration:\n    enabled: true\n    skills: [\"natural_language_processing/natural_language_generation/text_completion\"]\n    domains: [\"technology/data_science\"]\n",
            server.port()
        ),
    )
    .unwrap();
    let applied = ok(&home, &["sell", "apply", "-f", manifest.to_str().unwrap()]).await;
    assert!(
        applied.stdout.contains("ServiceOffer tagged created"),
        "{}",
        applied.stdout
    );
    let status = ok(&home, &["sell", "status", "tagged", "--json"])
        .await
        .json();
    assert_eq!(status["ready"], true, "{status}");
    let yaml = ok(&home, &["sell", "get", "tagged", "-o", "yaml"])
        .await
        .stdout;
    assert!(
        yaml.contains("apiVersion: obol.org/v1alpha1") && yaml.contains("perRequest: '0.0005'"),
        "{yaml}"
    );
    let registration: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{gateway}/.well-known/agent-registration.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        registration["type"],
        "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
    );
    stop(daemon).await;
}

#[tokio::test]
async fn every_validation_error_says_what_to_type() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let wallet = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
    let first = ok(&home, &["sell", "pricing", "--network", "base-sepolia"]).await;
    assert!(
        first
            .stderr
            .contains("started the agora daemon in the background"),
        "{}",
        first.stderr
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["sell", "http"],
            "name required: agora sell http <name> --upstream <url> --per-request <price>",
        ),
        (
            vec![
                "sell",
                "http",
                "Bad_Name",
                "--upstream",
                "http://127.0.0.1:1",
                "--price",
                "1",
            ],
            "invalid name \"Bad_Name\": must be lowercase alphanumeric with hyphens, 1-63 chars, starting with a letter or digit",
        ),
        (
            vec![
                "sell",
                "http",
                "a",
                "--upstream",
                "http://127.0.0.1:1",
                "--price",
                "1",
                "--pay-to",
                "0x1234",
            ],
            "invalid wallet address \"0x1234\": must be 0x-prefixed 40-char hex",
        ),
        (
            vec![
                "sell",
                "http",
                "a",
                "--upstream",
                "http://127.0.0.1:1",
                "--price",
                "1",
            ],
            "recipient required: use --pay-to <addr> or set X402_WALLET",
        ),
        (
            vec!["sell", "http", "a", "--upstream", "http://127.0.0.1:1"],
            "price required: use --price, --per-request, --per-mtok, or --per-hour",
        ),
        (
            vec!["sell", "inference", "a", "--upstream", "http://127.0.0.1:1"],
            "price required: use --price, --per-request, or --per-mtok",
        ),
        (
            vec![
                "sell",
                "http",
                "a",
                "--upstream",
                "http://127.0.0.1:1",
                "--price",
                "abc",
            ],
            "invalid --price/--per-request value \"abc\"",
        ),
        (
            vec![
                "sell",
                "http",
                "a",
                "--upstream",
                "http://127.0.0.1:1",
                "--per-mtok=-1",
            ],
            "invalid --per-mtok value \"-1\"",
        ),
        (
            vec!["sell", "http", "a", "--price", "1"],
            "upstream required: use --upstream <url> (e.g. http://127.0.0.1:8080)",
        ),
        (
            vec![
                "sell",
                "http",
                "a",
                "--upstream",
                "http://127.0.0.1:1",
                "--price",
                "1",
                "--no-register",
                "--register-skills",
                "devops_mlops/model_versioning",
            ],
            "--no-register cannot be combined with registration-specific flags",
        ),
        (
            vec![
                "sell",
                "http",
                "a",
                "--upstream",
                "http://127.0.0.1:1",
                "--price",
                "1",
                "--register-metadata",
                "novalue",
            ],
            "invalid --register-metadata value \"novalue\": expected key=value",
        ),
        (
            vec![
                "sell",
                "http",
                "a",
                "--upstream",
                "http://127.0.0.1:1",
                "--price",
                "1",
                "--pay-to",
                wallet,
                "--path",
                "/api/x",
            ],
            "path /api/x collides with the reserved platform path /api; pass --path /services/<name>",
        ),
        (
            vec![
                "sell",
                "http",
                "a",
                "--upstream",
                "http://127.0.0.1:1",
                "--price",
                "1",
                "--pay-to",
                wallet,
                "--path",
                "/services/../x",
            ],
            "invalid path \"/services/../x\": path traversal not allowed",
        ),
        (
            vec![
                "sell",
                "http",
                "a",
                "--upstream",
                "http://127.0.0.1:1",
                "--price",
                "1",
                "--pay-to",
                wallet,
                "--register-skills",
                "devops_mlops/model_versionin",
            ],
            "devops_mlops/model_versioning",
        ),
        (
            vec![
                "sell",
                "http",
                "a",
                "--upstream",
                "http://127.0.0.1:1",
                "--price",
                "1",
                "--pay-to",
                wallet,
                "--network",
                "basse",
            ],
            "unknown network \"basse\"",
        ),
        (
            vec!["sell", "update", "a"],
            "nothing to update: pass at least one of --per-request / --per-mtok / --per-hour / --pay-to / --network",
        ),
        (
            vec!["sell", "stop", "a", "--grace=-1h"],
            "--grace must be >= 0",
        ),
        (
            vec!["sell", "status", "nope"],
            "no offer named \"nope\"; list them with: agora sell list",
        ),
    ];
    for (args, message) in &cases {
        let out = run(&home, args).await;
        assert!(!out.success(), "agora {args:?} should fail");
        assert!(
            out.stderr.contains(message),
            "agora {args:?}\nwanted: {message}\ngot: {}",
            out.stderr
        );
    }
    ok(
        &home,
        &[
            "sell",
            "http",
            "taken",
            "--upstream",
            "http://127.0.0.1:1",
            "--price",
            "1",
            "--pay-to",
            wallet,
        ],
    )
    .await;
    let clash = run(
        &home,
        &[
            "sell",
            "http",
            "other",
            "--upstream",
            "http://127.0.0.1:1",
            "--price",
            "1",
            "--pay-to",
            wallet,
            "--path",
            "/services/taken",
        ],
    )
    .await;
    assert!(
        clash.stderr.contains(
            "path /services/taken is already used by offer taken; pass --path to choose another"
        ),
        "{}",
        clash.stderr
    );
    let pricing = ok(&home, &["sell", "pricing"]).await.stdout;
    assert!(pricing.contains("chain=base-sepolia"), "{pricing}");

    let log = std::fs::read_to_string(home.join("logs/serve.log")).unwrap();
    let started: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    std::process::Command::new("kill")
        .arg(started["pid"].to_string())
        .status()
        .unwrap();
}

#[tokio::test]
async fn the_seller_is_registered_once_on_erc8004_and_its_uri_follows_the_public_url() {
    use alloy::primitives::Bytes;
    use erc8004::IIdentityRegistry;
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let key = key_file(dir.path(), &chain);
    let seller = chain.accounts()[1].address().to_string();
    let registry_key = process::account_key_file(dir.path(), "registry.key", &chain, 1);
    let registry_flags = ["--registry-key-file", registry_key.to_str().unwrap()];
    let upstream = loopback::serve(echo()).await;
    let (daemon, started) = serve_with(&home, &chain, &key, &registry_flags).await;
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();
    let created = ok(
        &home,
        &[
            "sell",
            "http",
            "worker",
            "--upstream",
            &upstream.url(),
            "--per-hour",
            "0.60",
            "--pay-to",
            &seller,
            "--register-skills",
            "devops_mlops/model_versioning",
            "--register-domains",
            "research_and_development/scientific_research",
            "--wait",
            "30",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(created["ready"], true, "{created}");
    let status = ok(&home, &["sell", "status", "worker", "--json"])
        .await
        .json();
    let registered = status["offer"]["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Registered")
        .unwrap()
        .clone();
    assert_eq!(registered["status"], "True", "{registered}");
    assert!(
        ["Registered", "AlreadyRegistered"].contains(&registered["reason"].as_str().unwrap()),
        "{registered}"
    );
    assert_eq!(
        status["offer"]["status"]["agentId"], "0",
        "the first agent id is 0"
    );
    let agent = ok(&home, &["sell", "register", "--json"]).await.json();
    assert_eq!(agent["agentId"], "0");
    let uri = format!("{gateway}/.well-known/agent-registration.json");
    assert_eq!(agent["agentUri"], uri);

    let registry = IIdentityRegistry::new(
        erc8004::identity_registry(&chain.network()).unwrap(),
        chain.provider().unwrap(),
    );
    let zero = U256::ZERO;
    assert_eq!(registry.tokenURI(zero).call().await.unwrap(), uri);
    assert_eq!(
        registry.ownerOf(zero).call().await.unwrap(),
        chain.accounts()[1].address()
    );
    assert_eq!(
        registry
            .getMetadata(zero, "x402.supported".into())
            .call()
            .await
            .unwrap(),
        Bytes::from_static(&[1])
    );
    let document: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(&uri)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["registrations"][0]["agentId"], 0);
    assert_eq!(
        document["registrations"][0]["agentRegistry"],
        "eip155:84532:0x8004A818BFB912233c491871b3d84c89A494BD9e"
    );
    assert_eq!(document["x402Support"], true);
    let oasf = document["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "OASF")
        .unwrap()
        .clone();
    assert_eq!(oasf["skills"][0], "devops_mlops/model_versioning");

    // A new public URL (the daemon restarts on another port): setAgentURI, no second mint.
    stop(daemon).await;
    let (daemon, started) = serve_with(&home, &chain, &key, &registry_flags).await;
    let moved = format!(
        "{}/.well-known/agent-registration.json",
        started["gatewayUrl"].as_str().unwrap()
    );
    assert_ne!(moved, uri);
    let agent = ok(&home, &["sell", "register", "--json"]).await.json();
    assert_eq!(agent["agentId"], "0");
    assert_eq!(registry.tokenURI(zero).call().await.unwrap(), moved);
    assert!(
        registry.ownerOf(U256::from(1)).call().await.is_err(),
        "never minted twice"
    );
    ok(&home, &["sell", "delete", "worker", "--yes"]).await;
    let tombstone: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(&moved)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tombstone["active"], false, "{tombstone}");
    assert_eq!(tombstone["registrations"][0]["agentId"], 0);
    stop(daemon).await;

    let unregistered = tempfile::tempdir().unwrap();
    let (plain, _) = serve(unregistered.path(), &chain, &key).await;
    let refused = run(unregistered.path(), &["sell", "register"]).await;
    refused.fails_saying(&["--registry-key-file"]);
    stop(plain).await;
}

/// Starts `agora index` and waits until it has read `agents` registration files.
async fn index(home: &Path, chain: &Devnet, agents: usize) -> (Child, String) {
    let (child, url) = daemon::index(agora(home), chain.rpc_url()).await;
    testkit::indexed(&url, agents, Duration::from_secs(20)).await;
    (child, url)
}

#[tokio::test]
async fn discover_finds_sellers_by_skill_domain_and_owner_with_their_live_price() {
    let chain = testkit::chain::devnet(4).await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), &chain);
    let sellers = [
        (
            "writer",
            "0.001",
            "natural_language_processing/natural_language_generation/text_completion",
            "technology/data_science",
        ),
        (
            "trainer",
            "0.002",
            "devops_mlops/model_versioning",
            "research_and_development/scientific_research",
        ),
        (
            "watcher",
            "0.003",
            "devops_mlops/monitoring_alerting",
            "technology/blockchain",
        ),
    ];
    let mut running = Vec::new();
    for (i, (name, price, skill, domain)) in sellers.iter().enumerate() {
        let account = &chain.accounts()[i + 1];
        let home = dir.path().join(name);
        let registry_key =
            process::account_key_file(dir.path(), &format!("{name}.key"), &chain, i + 1);
        let upstream = loopback::serve(echo()).await;
        let (daemon, _) = serve_with(
            &home,
            &chain,
            &key,
            &["--registry-key-file", registry_key.to_str().unwrap()],
        )
        .await;
        let pay_to = account.address().to_string();
        let created = ok(
            &home,
            &[
                "sell",
                "http",
                name,
                "--upstream",
                &upstream.url(),
                "--per-request",
                price,
                "--pay-to",
                &pay_to,
                "--register-skills",
                skill,
                "--register-domains",
                domain,
                "--wait",
                "30",
                "--json",
            ],
        )
        .await
        .json();
        assert_eq!(created["ready"], true, "{created}");
        let registered = ok(&home, &["sell", "register", "--json"]).await.json();
        assert!(registered["agentId"].is_string(), "{registered}");
        running.push((daemon, upstream));
    }
    let index_home = dir.path().join("indexer");
    let (indexer, url) = index(&index_home, &chain, 3).await;
    let discover = |args: Vec<String>| {
        let home = index_home.clone();
        async move {
            let mut all = vec!["discover".to_string(), "--json".to_string()];
            all.extend(args);
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            ok(&home, &refs).await.json()["items"].clone()
        }
    };
    let names = |found: &Value| -> Vec<String> {
        let mut n: Vec<String> = found
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let devops = discover(vec![
        "--indexer".into(),
        url.clone(),
        "--skill".into(),
        "devops_mlops/*".into(),
        "--probe".into(),
    ])
    .await;
    assert_eq!(names(&devops), ["trainer", "watcher"], "{devops}");
    for agent in devops.as_array().unwrap() {
        let price = &agent["prices"][0];
        assert_eq!(price["status"], 402, "{agent}");
        let expected = if agent["name"] == "trainer" {
            "0.002 USDC on Base Sepolia"
        } else {
            "0.003 USDC on Base Sepolia"
        };
        assert_eq!(price["price"], expected, "{agent}");
        assert_eq!(
            price["payTo"].as_str().unwrap().to_lowercase(),
            agent["owner"].as_str().unwrap().to_lowercase()
        );
    }
    let tech = discover(vec![
        "--indexer".into(),
        url.clone(),
        "--domain".into(),
        "technology/*".into(),
    ])
    .await;
    assert_eq!(names(&tech), ["watcher", "writer"]);
    let owned = discover(vec![
        "--indexer".into(),
        url.clone(),
        "--owner".into(),
        chain.accounts()[1].address().to_string(),
    ])
    .await;
    assert_eq!(names(&owned), ["writer"]);
    let exact = discover(vec![
        "--indexer".into(),
        url.clone(),
        "--skill".into(),
        "devops_mlops/model_versioning".into(),
        "--x402".into(),
    ])
    .await;
    assert_eq!(names(&exact), ["trainer"]);

    let scanned = discover(vec![
        "--indexer".into(),
        "http://127.0.0.1:9".into(),
        "--rpc".into(),
        chain.rpc_url().to_string(),
        "--skill".into(),
        "natural_language_processing/*".into(),
    ])
    .await;
    assert_eq!(
        names(&scanned),
        ["writer"],
        "the RPC scan finds what the indexer finds"
    );

    let typo = run(
        &index_home,
        &[
            "discover",
            "--indexer",
            &url,
            "--skill",
            "devops_mlops/model_versionin",
        ],
    )
    .await;
    typo.fails_saying(&["devops_mlops/model_versioning"]);
    let nowhere = run(
        &index_home,
        &["discover", "--indexer", "http://127.0.0.1:9"],
    )
    .await;
    assert!(
        nowhere.stderr.contains("agora index --rpc URL"),
        "{}",
        nowhere.stderr
    );

    stop(indexer).await;
    for (daemon, _upstream) in running {
        stop(daemon).await;
    }
}

/// Issue 21, M5, through the binary: `agora sell inference` forwards only the
/// inference API; the model server's admin API answers 404 unpaid, `--allow-path`
/// opens one more request, the list survives a daemon restart, and `sell status`
/// shows it.
#[tokio::test]
async fn sell_inference_forwards_only_the_inference_api_and_allow_path_opens_more() {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let key = key_file(dir.path(), &chain);
    let seller = chain.accounts()[1].address().to_string();
    let server = loopback::serve(ollama(&["qwen3:0.6b"])).await;
    let upstream = server.url();
    let (daemon, started) = serve(&home, &chain, &key).await;
    let gateway = started["gatewayUrl"].as_str().unwrap().to_string();

    let refused = run(
        &home,
        &[
            "sell",
            "inference",
            "qwen",
            "--upstream",
            &upstream,
            "--model",
            "qwen3:0.6b",
            "--price",
            "0.001",
            "--pay-to",
            &seller,
            "--allow-path",
            "api/ps",
        ],
    )
    .await;
    assert!(!refused.success());
    assert!(
        refused.stderr.contains("--allow-path") && refused.stderr.contains("METHOD /path"),
        "{}",
        refused.stderr
    );
    ok(
        &home,
        &[
            "sell",
            "inference",
            "qwen",
            "--upstream",
            &upstream,
            "--model",
            "qwen3:0.6b",
            "--price",
            "0.001",
            "--pay-to",
            &seller,
            "--allow-path",
            "get /api/ps",
            "--wait",
            "30",
            "--json",
        ],
    )
    .await;

    let http = testkit::http();
    let answer = |method: &'static str, path: &'static str| {
        let request = http.request(
            method.parse().unwrap(),
            format!("{gateway}/services/qwen{path}"),
        );
        async move {
            let r = request
                .body(r#"{"model":"qwen3:0.6b"}"#)
                .send()
                .await
                .unwrap();
            let challenged = r.headers().contains_key("payment-required");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, challenged, body)
        }
    };
    let check = || async {
        for (method, path) in [
            ("DELETE", "/api/delete"),
            ("POST", "/api/pull"),
            ("POST", "/api/create"),
            ("POST", "/api/copy"),
            ("DELETE", "/api/ps"),
        ] {
            let (status, challenged, body) = answer(method, path).await;
            assert_eq!(status, 404, "{method} {path}: {body}");
            assert!(!challenged, "{method} {path} asked for a payment");
            assert!(
                body["hint"].as_str().unwrap().contains("--allow-path"),
                "{body}"
            );
        }
        for (method, path) in [
            ("POST", "/api/chat"),
            ("POST", "/v1/chat/completions"),
            ("GET", "/api/ps"),
        ] {
            let (status, challenged, _) = answer(method, path).await;
            assert_eq!((status, challenged), (402, true), "{method} {path} is sold");
        }
    };
    check().await;

    let status = ok(&home, &["sell", "status", "qwen", "--json"])
        .await
        .json();
    assert_eq!(
        status["offer"]["spec"]["allowedPaths"],
        json!(["GET /api/ps"])
    );
    let forwards: Vec<&str> = status["forwards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(forwards.contains(&"POST /api/chat"), "{status}");
    assert!(forwards.contains(&"GET /api/ps"), "{status}");
    assert!(!forwards.iter().any(|f| f.contains("/api/delete")));
    let text = ok(&home, &["sell", "status", "qwen"]).await.stdout;
    assert!(
        text.contains("Forwards:") && text.contains("GET /api/ps"),
        "{text}"
    );

    // The list is part of the stored offer, so a restarted daemon applies it too.
    stop(daemon).await;
    let (daemon, started) = serve(&home, &chain, &key).await;
    let gateway_again = started["gatewayUrl"].as_str().unwrap().to_string();
    testkit::eventually(
        "the restarted daemon to serve qwen",
        Duration::from_secs(30),
        || {
            let url = format!("{gateway_again}/services/qwen/api/chat");
            async move {
                testkit::http()
                    .post(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 402)
            }
        },
    )
    .await;
    let deleted = testkit::http()
        .delete(format!("{gateway_again}/services/qwen/api/delete"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 404, "after the restart too");
    stop(daemon).await;
}
