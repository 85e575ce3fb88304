//! Shared harness for the money-safety checks of the `agora` binary (the crash test,
//! the CI soak test and the soak bench include this file): a devnet, `agora serve
//! --rpc` on a loopback port chosen up front so it can be SIGKILLed and restarted on
//! the same `AGORA_HOME` and port, a loopback upstream that fails when asked to, the
//! buyer's side (signing, sending, reading the answer) and the chain as the judge of
//! who was charged. Nothing here trusts what the gateway says about money: charges are
//! read from the token (`authorizationState` and `AuthorizationUsed` events).

#![allow(dead_code, clippy::unwrap_used)]

pub mod soak;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use devnet::Devnet;
use serde_json::{Value, json};
use testkit::loopback::Server;
use tokio::process::{Child, Command};
use x402::eip3009::IEip3009Token;
use x402::{PaymentRequired, PaymentRequirements};

/// Price of every route sold here: 0.001 USDC.
pub const PRICE_DECIMAL: &str = "0.001";
/// The same price in atomic units.
pub const PRICE: u64 = 1000;
/// What the upstream's own failure says, so a 500 from the upstream can be told
/// apart from one the gateway made up.
pub const UPSTREAM_FAILURE: &str = "upstream failed on purpose";

/// `agora` with `AGORA_HOME=home`, and nothing from the environment that could point
/// it at a real facilitator or wallet. Killed when dropped.
pub fn agora(home: &Path) -> Command {
    testkit::process::agora(env!("CARGO_BIN_EXE_agora"), home)
}

/// A small deterministic PRNG (SplitMix64), so a failing run can be replayed from the
/// seed it printed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed from `var` if set, else from the clock.
    pub fn seed_from_env(var: &str) -> u64 {
        match std::env::var(var) {
            Ok(v) => v
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{var}={v:?} is not an unsigned integer seed")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(42),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A loopback service for the sold route: `/health` for UpstreamHealthy; anything
/// else answers 200 JSON, or 500 with [`UPSTREAM_FAILURE`] when the query has
/// `fail=1`; `delay_ms=N` makes it wait first. It counts what it served.
pub struct Upstream {
    pub url: String,
    /// Calls answered, failures included (health checks excluded).
    pub calls: Arc<AtomicUsize>,
    _server: Server,
}

async fn upstream_answer(calls: Arc<AtomicUsize>, request: Request) -> Response {
    let query = request.uri().query().unwrap_or_default().to_string();
    let mut fail = false;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("fail", "1")) => fail = true,
            Some(("delay_ms", ms)) => {
                if let Ok(ms) = ms.parse::<u64>() {
                    tokio::time::sleep(Duration::from_millis(ms.min(5_000))).await;
                }
            }
            _ => {}
        }
    }
    calls.fetch_add(1, Ordering::SeqCst);
    if fail {
        (StatusCode::INTERNAL_SERVER_ERROR, UPSTREAM_FAILURE).into_response()
    } else {
        axum::Json(json!({"ok": true, "path": request.uri().path()})).into_response()
    }
}

/// Starts [`Upstream`] on an ephemeral loopback port.
pub async fn upstream() -> Upstream {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(move |request: Request| upstream_answer(counted.clone(), request));
    let server = testkit::loopback::serve(app).await;
    Upstream {
        url: server.url(),
        calls,
        _server: server,
    }
}

/// `agora serve --foreground --rpc` on a fixed loopback port and a fixed home, which
/// can be killed and started again; its stderr (and any stdout after the startup
/// line) goes to `log`.
pub struct Seller {
    pub home: PathBuf,
    pub port: u16,
    pub url: String,
    pub log: PathBuf,
    key: PathBuf,
    rpc: String,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: usize,
    /// More `agora serve` flags (e.g. `--batch-max 16`), passed on every start.
    pub extra_args: Vec<String>,
}

impl Seller {
    /// A seller living under `dir` that settles with devnet account 0.
    pub fn new(dir: &Path, chain: &Devnet) -> Self {
        let port = testkit::loopback::free_port();
        Self {
            home: dir.join("home"),
            port,
            url: format!("http://127.0.0.1:{port}"),
            log: dir.join("serve.log"),
            key: testkit::process::account_key_file(dir, "facilitator.key", chain, 0),
            rpc: chain.rpc_url().to_string(),
            child: None,
            starts: 0,
            extra_args: Vec::new(),
        }
    }

    /// Starts the daemon and waits for its startup line; retries a few times while
    /// the port is still held by the previous (killed) process.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "the seller daemon is already running");
        let mut last = String::new();
        for _ in 0..50 {
            match self.try_start().await {
                Ok(child) => {
                    self.child = Some(child);
                    self.starts += 1;
                    return;
                }
                Err(e) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!(
            "agora serve did not start on port {} (start #{}): {last}\n--- log tail ---\n{}",
            self.port,
            self.starts + 1,
            self.log_tail(40)
        );
    }

    async fn try_start(&self) -> Result<Child, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let mut command = agora(&self.home);
        command
            .env_remove("AGORA_FACILITATOR_URL")
            .args(["serve", "--foreground", "--json", "--rpc", &self.rpc])
            .arg("--key-file")
            .arg(&self.key)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command.spawn().map_err(|e| format!("spawn: {e}"))?;
        let (started, mut lines) =
            match testkit::process::startup_line(&mut child, Duration::from_secs(30)).await {
                Ok(started) => started,
                Err(e) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Err(e);
                }
            };
        if started["gatewayUrl"] != self.url.as_str() {
            let _ = child.start_kill();
            return Err(format!(
                "the daemon listens on {} instead of {}",
                started["gatewayUrl"], self.url
            ));
        }
        // Keep draining stdout, so a later print never meets a closed pipe.
        let log = self.log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                use std::io::Write;
                if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&log) {
                    let _ = writeln!(f, "[stdout] {line}");
                }
            }
        });
        Ok(child)
    }

    /// SIGKILL, no warning, then reap it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL the seller daemon");
            tokio::time::timeout(Duration::from_secs(20), child.wait())
                .await
                .expect("a SIGKILLed daemon exits at once")
                .unwrap();
        }
    }

    /// SIGTERM (lets calls in flight settle), SIGKILL after 30 s.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }

    /// The last `n` lines of the daemon's log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `agora sell http <name>` in front of `upstream`, paid to `pay_to`, waiting until
    /// Ready. `max_timeout` is the longest validity a buyer may sign.
    pub async fn sell(&self, name: &str, upstream: &str, pay_to: Address, max_timeout: u64) {
        let pay_to = pay_to.to_string();
        let max_timeout = max_timeout.to_string();
        let args = [
            "sell",
            "http",
            name,
            "--upstream",
            upstream,
            "--per-request",
            PRICE_DECIMAL,
            "--pay-to",
            &pay_to,
            "--network",
            "base-sepolia",
            "--max-timeout",
            &max_timeout,
            "--no-register",
            "--wait",
            "60",
            "--json",
        ];
        let out = agora(&self.home)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "agora {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("agora sell printed no JSON ({e}): {stdout}"));
        assert_eq!(
            result["ready"], true,
            "the offer did not become Ready: {result}"
        );
    }
}

impl Drop for Seller {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// What the crash test and the soak start from: a devnet (account 1 is the payee,
/// the next `buyers` accounts buy), a loopback upstream, and `agora serve --rpc`
/// selling it at `/services/<name>` with `max_timeout` seconds of validity.
pub struct Market {
    pub chain: Devnet,
    pub payee: Address,
    pub buyers: Vec<PrivateKeySigner>,
    pub upstream: Upstream,
    pub seller: Seller,
    /// The route, `<gateway>/services/<name>`.
    pub url: String,
    pub client: reqwest::Client,
    /// What the route's 402 asks for.
    pub requirement: PaymentRequirements,
    /// The payee's balance before any call.
    pub payee_before: U256,
    /// Holds `AGORA_HOME`; keep it bound while the seller runs.
    pub dir: tempfile::TempDir,
}

/// Starts a [`Market`].
pub async fn market(name: &str, buyers: usize, max_timeout: u64) -> Market {
    market_with(name, buyers, max_timeout, &[]).await
}

/// Starts a [`Market`] whose `agora serve` also gets `serve_args`.
pub async fn market_with(
    name: &str,
    buyers: usize,
    max_timeout: u64,
    serve_args: &[&str],
) -> Market {
    let chain = testkit::chain::devnet(2 + buyers).await;
    let payee = chain.accounts()[1].address();
    let buyer_keys = (0..buyers)
        .map(|i| chain.accounts()[2 + i].signer())
        .collect();
    let upstream = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut seller = Seller::new(dir.path(), &chain);
    seller.extra_args = serve_args.iter().map(|a| a.to_string()).collect();
    seller.start().await;
    seller.sell(name, &upstream.url, payee, max_timeout).await;
    let url = format!("{}/services/{name}", seller.url);
    let client = client();
    let requirement = requirement(&client, &format!("{url}/x"))
        .await
        .expect("the sold route answers an unpaid request with its 402");
    assert_eq!(requirement.amount, U256::from(PRICE), "the route's price");
    let payee_before = chain.usdc_balance(payee).await.unwrap();
    Market {
        chain,
        payee,
        buyers: buyer_keys,
        upstream,
        seller,
        url,
        client,
        requirement,
        payee_before,
        dir,
    }
}

/// An HTTP client for buyers: loopback only, no proxies, a bound on every call.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// The requirement the route at `url` asks for (from its 402), or `None` while it
/// answers anything else (not Ready yet, daemon down).
pub async fn requirement(client: &reqwest::Client, url: &str) -> Option<PaymentRequirements> {
    let response = client.get(url).send().await.ok()?;
    if response.status().as_u16() != 402 {
        return None;
    }
    let header = response.headers().get("payment-required")?.to_str().ok()?;
    let required: PaymentRequired = x402::header::decode(header).ok()?;
    required.accepts.into_iter().next()
}

/// Waits until the route at `url` answers an unpaid request with its 402.
pub async fn wait_for_402(client: &reqwest::Client, url: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if requirement(client, url).await.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// What a paid request got back, as a buyer must read it.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200. `receipt_ok`: a `PAYMENT-RESPONSE` with success true and a transaction.
    Served { receipt_ok: bool, receipt: String },
    /// 402: not charged; `reason` from `x-payment-invalid-reason` (or the body).
    Refused { reason: String },
    /// 503 `settlement_pending`: unknown, retry the same header later.
    Pending { retry_after: Duration },
    /// 400.
    BadRequest { body: String },
    /// Anything else with a status (404/503 while the route comes back, the
    /// upstream's own 500, ...).
    Other { status: u16, body: String },
    /// No answer at all (connection refused or reset, timeout): unknown.
    NoReply { error: String },
}

impl Answer {
    /// A one-line description for tables and failure messages.
    pub fn label(&self) -> String {
        match self {
            Answer::Served { receipt_ok, .. } => {
                format!(
                    "200{}",
                    if *receipt_ok {
                        ""
                    } else {
                        " (no valid receipt)"
                    }
                )
            }
            Answer::Refused { reason } => format!("402 {reason}"),
            Answer::Pending { .. } => "503 settlement_pending".into(),
            Answer::BadRequest { .. } => "400".into(),
            Answer::Other { status, .. } => format!("{status}"),
            Answer::NoReply { .. } => "no answer".into(),
        }
    }
}

/// Sends one paid GET of `url` with `header` in `PAYMENT-SIGNATURE`.
pub async fn send(client: &reqwest::Client, url: &str, header: &str) -> Answer {
    let response = match client
        .get(url)
        .header("PAYMENT-SIGNATURE", header)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return Answer::NoReply {
                error: format!("{e:?}"),
            };
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let receipt = text("payment-response").unwrap_or_default();
    let invalid_reason = text("x-payment-invalid-reason");
    let retry_after = text("retry-after")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1);
    // A body cut off by a kill is still an answer's status; read what there is.
    let body = match response.text().await {
        Ok(b) => b,
        Err(e) if status == 200 => {
            return Answer::NoReply {
                error: format!("200 whose body was cut off: {e:?}"),
            };
        }
        Err(_) => String::new(),
    };
    match status {
        200 => {
            let receipt_ok = x402::header::decode::<Value>(&receipt)
                .map(|r| {
                    r["success"] == true && r["transaction"].as_str().is_some_and(|t| t.len() > 2)
                })
                .unwrap_or(false);
            Answer::Served {
                receipt_ok,
                receipt,
            }
        }
        402 => {
            let reason = invalid_reason.unwrap_or_else(|| {
                let parsed: Value = serde_json::from_str(&body).unwrap_or_default();
                [
                    &parsed["reason"],
                    &parsed["failure"]["reason"],
                    &parsed["error"],
                ]
                .into_iter()
                .find_map(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
            });
            Answer::Refused { reason }
        }
        400 => Answer::BadRequest { body },
        503 => {
            let parsed: Value = serde_json::from_str(&body).unwrap_or_default();
            if parsed["reason"] == "settlement_pending" {
                Answer::Pending {
                    retry_after: Duration::from_secs(retry_after),
                }
            } else {
                Answer::Other { status, body }
            }
        }
        _ => Answer::Other { status, body },
    }
}

/// Whether the token marks `(payer, nonce)` as used, i.e. the buyer was charged.
pub async fn authorization_used(chain: &Devnet, payer: Address, nonce: B256) -> bool {
    let provider = chain.provider().unwrap();
    IEip3009Token::new(chain.usdc().address, &provider)
        .authorizationState(payer, nonce)
        .call()
        .await
        .unwrap_or_else(|e| panic!("authorizationState({payer}, {nonce}) failed: {e}"))
}

/// `authorizationState` of many authorizations, a few calls at a time.
pub async fn authorizations_used(chain: &Devnet, which: &[(Address, B256)]) -> Vec<bool> {
    let provider = chain.provider().unwrap();
    let token = IEip3009Token::new(chain.usdc().address, provider);
    let mut out = Vec::with_capacity(which.len());
    for batch in which.chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for (i, &(payer, nonce)) in batch.iter().enumerate() {
            let token = token.clone();
            set.spawn(async move {
                let used = token
                    .authorizationState(payer, nonce)
                    .call()
                    .await
                    .unwrap_or_else(|e| panic!("authorizationState({payer}, {nonce}): {e}"));
                (i, used)
            });
        }
        let mut results = vec![false; batch.len()];
        while let Some(done) = set.join_next().await {
            let (i, used) = done.unwrap();
            results[i] = used;
        }
        out.extend(results);
    }
    out
}

/// Every `AuthorizationUsed` the token emitted, counted per `(authorizer, nonce)`.
pub async fn used_events(chain: &Devnet) -> HashMap<(Address, B256), usize> {
    let provider = chain.provider().unwrap();
    let filter = Filter::new()
        .address(chain.usdc().address)
        .event_signature(IEip3009Token::AuthorizationUsed::SIGNATURE_HASH)
        .from_block(0u64);
    let logs = provider
        .get_logs(&filter)
        .await
        .unwrap_or_else(|e| panic!("reading AuthorizationUsed logs failed: {e}"));
    let mut used = HashMap::new();
    for log in logs {
        let event = IEip3009Token::AuthorizationUsed::decode_log_data(log.data())
            .unwrap_or_else(|e| panic!("undecodable AuthorizationUsed log: {e}"));
        *used.entry((event.authorizer, event.nonce)).or_insert(0) += 1;
    }
    used
}
