//! `agora demo`: the whole seller and buyer story on a local chain, with the proof.
//!
//! It starts a devnet, the seller daemon with the embedded facilitator, and a small
//! sample service; sells the service; waits for the offer to be Ready; probes its
//! 402; pays it as a buyer through the gateway; and checks the USDC Transfer on chain
//! and both balances. A replay of the same payment is shown to be refused. Everything
//! it started is stopped on exit, and its state lives in a temporary directory.

use std::path::PathBuf;
use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolEvent;
use anyhow::{Context, bail, ensure};
use axum::Router;
use axum::http::HeaderMap;
use clap::Args;
use devnet::{Devnet, DevnetConfig};
use facilitator::{ChainConfig, EmbeddedConfig, EmbeddedFacilitator};
use offers::ServiceOffer;
use offers::spec::{OfferSpec, PaymentSpec, PriceSpec, RegistrationSpec, UpstreamSpec};
use seller::{Daemon, DaemonConfig, FacilitatorInfo};
use serde::Serialize;
use serde_json::json;
use x402::Money;
use x402::eip3009::IEip3009Token;
use x402::network::USDC_DECIMALS;

use crate::env;
use crate::output::outln;

/// Options of `agora demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Price of the sample service per request, in USDC.
    #[arg(long, default_value = "0.001")]
    price: String,
    /// The anvil binary [default: PATH, then the project's tools/ install].
    #[arg(long, env = env::ANVIL)]
    anvil: Option<PathBuf>,
    #[arg(long, help = crate::output::JSON_HELP)]
    json: bool,
}

/// What the demo proved, for `--json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DemoProof {
    rpc_url: String,
    network: String,
    asset: Address,
    offer: String,
    url: String,
    conditions: Vec<String>,
    probe_passed: bool,
    agent_id: Option<String>,
    price: String,
    amount_atomic: String,
    payer: Address,
    pay_to: Address,
    transaction: B256,
    block_number: u64,
    transfer_value_atomic: String,
    payer_balance_before: String,
    payer_balance_after: String,
    seller_balance_before: String,
    seller_balance_after: String,
    service_answer: serde_json::Value,
    nonce_used_on_chain: bool,
    replay_rejected: bool,
}

/// Runs the demo and prints the proof.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let say = |line: String| -> anyhow::Result<()> {
        if !args.json {
            outln!("{line}")?;
        }
        Ok(())
    };
    let price = Money::parse(&args.price, USDC_DECIMALS)
        .with_context(|| format!("--price {:?} is not a USDC amount", args.price))?;
    ensure!(
        !price.is_zero(),
        "--price must be above zero to demonstrate a payment"
    );

    say("1. starting a local Base Sepolia look-alike (anvil, chain id 84532, USDC, ERC-8004 registry)".into())?;
    let chain = Devnet::start(DevnetConfig {
        accounts: 3,
        anvil: args.anvil.clone(),
        ..DevnetConfig::default()
    })
    .await
    .context("could not start the devnet")?;
    let home = tempfile::tempdir().context("cannot create a temporary AGORA_HOME")?;
    let result = sell_and_buy(&chain, home.path(), &args.price, price, args.json, &say).await;
    chain.stop().await;
    let proof = result?;
    if args.json {
        outln!("{}", serde_json::to_string(&proof)?)?;
    } else {
        outln!(
            "\nproof: tx {} in block {} on {}",
            proof.transaction,
            proof.block_number,
            proof.network
        )?;
        outln!(
            "  seller {} USDC -> {} USDC (+{} USDC, exactly the price)",
            proof.seller_balance_before,
            proof.seller_balance_after,
            proof.price
        )?;
        outln!(
            "  buyer  {} USDC -> {} USDC",
            proof.payer_balance_before,
            proof.payer_balance_after
        )?;
        outln!("  everything stopped; run `agora devnet` and `agora serve` to keep them running")?;
    }
    Ok(())
}

/// The built-in service being sold: it greets whoever paid.
async fn sample_service() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let app = Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .fallback(|headers: HeaderMap, uri: axum::http::Uri| async move {
            let payer = headers
                .get("x-payment-payer")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nobody")
                .to_string();
            axum::Json(json!({
                "message": "hello from agora's sample service",
                "path": uri.path(),
                "paidBy": payer,
            }))
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("sample service stopped: {e}");
        }
    });
    Ok((url, task))
}

async fn sell_and_buy(
    chain: &Devnet,
    home: &std::path::Path,
    price_text: &str,
    price: Money,
    quiet: bool,
    say: &impl Fn(String) -> anyhow::Result<()>,
) -> anyhow::Result<DemoProof> {
    let [relayer, buyer, seller] = chain.accounts() else {
        bail!("the demo devnet should have exactly three accounts");
    };
    let facilitator = EmbeddedFacilitator::open(EmbeddedConfig::new(
        vec![ChainConfig {
            network: chain.network(),
            rpc_url: chain.rpc_url().to_string(),
        }],
        relayer.signer(),
        home.join("facilitator.db"),
    ))
    .await
    .context("cannot start the embedded facilitator")?;
    let facilitator_info = FacilitatorInfo::Embedded {
        networks: vec![chain.network()],
        signer: facilitator.signer_address(),
    };
    let daemon = Daemon::start(DaemonConfig {
        home: home.to_path_buf(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        public_url: None,
        facilitator: Arc::new(facilitator),
        facilitator_info,
        title: "agora demo seller".into(),
        pull_models: false,
        registry: Some(
            crate::cmd::serve::registry_config(chain.rpc_url(), seller.signer(), None, false)
                .await?,
        ),
        tunnel: None,
        workers: None,
    })
    .await?;
    say(format!(
        "2. seller daemon up: gateway {}, facilitator settles as {}",
        daemon.gateway_url,
        relayer.address()
    ))?;
    let (service_url, service) = sample_service().await?;
    let story = Story {
        chain,
        daemon: &daemon,
        service_url: &service_url,
        price_text,
        price,
        buyer,
        seller,
        quiet,
    };
    let outcome = story.run(say).await;
    service.abort();
    daemon.shutdown().await;
    outcome
}

/// Everything the selling-and-buying story works with.
struct Story<'a> {
    chain: &'a Devnet,
    daemon: &'a Daemon,
    service_url: &'a str,
    price_text: &'a str,
    price: Money,
    buyer: &'a devnet::DevAccount,
    seller: &'a devnet::DevAccount,
    quiet: bool,
}

impl Story<'_> {
    async fn run(&self, say: &impl Fn(String) -> anyhow::Result<()>) -> anyhow::Result<DemoProof> {
        let Story {
            chain,
            daemon,
            service_url,
            price_text,
            price,
            buyer,
            seller,
            quiet,
        } = *self;
        let name = "hello";
        let offer = ServiceOffer::new(
            name,
            OfferSpec {
                upstream: UpstreamSpec {
                    url: Some(service_url.to_string()),
                    health_path: Some("/health".into()),
                    ..UpstreamSpec::default()
                },
                payment: PaymentSpec {
                    network: "base-sepolia".into(),
                    pay_to: seller.address().to_string(),
                    scheme: "exact".into(),
                    max_timeout_seconds: 300,
                    price: PriceSpec {
                        per_request: Some(price_text.to_string()),
                        ..PriceSpec::default()
                    },
                    asset: None,
                },
                registration: Some(RegistrationSpec {
                    enabled: true,
                    name: Some("agora demo hello service".into()),
                    skills: vec![
                        "natural_language_processing/natural_language_generation/text_completion"
                            .into(),
                    ],
                    domains: vec!["technology/data_science".into()],
                    ..RegistrationSpec::default()
                }),
                ..OfferSpec::default()
            },
        );
        let client = daemon.admin();
        client.put_offer(&offer).await?;
        say(format!(
            "3. selling the sample service {service_url} as `{name}` for {price} USDC per request to {}",
            seller.address()
        ))?;
        let ready =
            crate::cmd::sell::wait_ready(&client, name, std::time::Duration::from_secs(60), quiet)
                .await?;
        let conditions: Vec<String> = ready
            .status
            .conditions
            .iter()
            .map(|c| format!("{}={} ({})", c.kind, c.status, c.reason))
            .collect();
        let resolved = offers::validate::resolve(&ready)?;
        let requirement = resolved.requirement();
        let path = ready
            .status
            .endpoint
            .clone()
            .context("the Ready offer has no endpoint")?;
        let url = format!("{}{path}/greeting", daemon.gateway_url);

        say(format!(
            "   listed on ERC-8004 as agent {} (registration file at {}/.well-known/agent-registration.json)",
            ready.status.agent_id.as_deref().unwrap_or("?"),
            daemon.gateway_url
        ))?;
        let report = buyer::probe::probe(&url, &requirement).await?;
        ensure!(
            report.passed,
            "the probe failed: {:?}",
            report.checks.iter().filter(|c| !c.ok).collect::<Vec<_>>()
        );
        say(format!(
            "4. probe: {url} answers 402 with the offer's exact terms ({} checks passed)",
            report.checks.len()
        ))?;

        let payer_before = chain.usdc_balance(buyer.address()).await?;
        let seller_before = chain.usdc_balance(seller.address()).await?;
        let client = buyer::probe::buyer(&requirement, buyer.signer())?;
        let (paid, signed) = buyer::probe::pay(&client, &url)
            .await
            .context("the paid request failed")?;
        ensure!(
            (200..300).contains(&paid.status),
            "the paid request answered HTTP {}",
            paid.status
        );
        let receipt = paid
            .receipt
            .context("the paid answer carries no PAYMENT-RESPONSE receipt")?;
        let answer: serde_json::Value =
            serde_json::from_str(&paid.body).context("the service's answer is not JSON")?;
        let transaction = receipt
            .transaction
            .context("the receipt names no transaction")?;
        say(format!(
            "5. buyer {} paid through the gateway; the service answered {answer}",
            buyer.address()
        ))?;

        let provider = chain.provider()?;
        let mined = provider
            .get_transaction_receipt(transaction)
            .await?
            .context("the receipt's transaction is not on chain")?;
        ensure!(
            mined.status(),
            "settlement transaction {transaction} reverted"
        );
        let transfer = transfer_log(&mined, requirement.asset)?;
        ensure!(
            transfer.from == buyer.address()
                && transfer.to == seller.address()
                && transfer.value == price.atomic,
            "the Transfer log ({} -> {}, {}) does not match the payment",
            transfer.from,
            transfer.to,
            transfer.value
        );
        say(format!(
            "6. on chain: tx {transaction} moved exactly {} atomic USDC {} -> {}",
            transfer.value, transfer.from, transfer.to
        ))?;

        // The same authorization, byte for byte: the gateway must answer 402.
        let replay_request = client.http().get(&url).build()?;
        let replay = client.send(replay_request, &signed).await;
        let replay_rejected = matches!(replay, Err(x402::client::ClientError::Rejected { .. }));
        let token = IEip3009Token::new(requirement.asset, &provider);
        let nonce_used = token
            .authorizationState(buyer.address(), signed.nonce())
            .call()
            .await?;
        ensure!(
            replay_rejected,
            "the gateway did not refuse the same payment sent twice: {}",
            match &replay {
                Ok(x402::client::Outcome::Delivered(d)) => format!("HTTP {}", d.response.status()),
                Ok(x402::client::Outcome::Pending(p)) => format!("pending ({})", p.message),
                Err(e) => e.to_string(),
            }
        );
        ensure!(nonce_used, "the token does not mark the nonce as used");
        say("7. sending the same payment again is refused (402, nonce already used)".into())?;

        let payer_after = chain.usdc_balance(buyer.address()).await?;
        let seller_after = chain.usdc_balance(seller.address()).await?;
        ensure!(
            seller_after - seller_before == price.atomic
                && payer_before - payer_after == price.atomic,
            "balances moved by something other than the price"
        );
        let show = |atomic: U256| Money::from_atomic(atomic, resolved.asset.decimals).to_string();
        Ok(DemoProof {
            rpc_url: chain.rpc_url().to_string(),
            network: requirement.network.caip2(),
            asset: requirement.asset,
            offer: name.to_string(),
            url,
            conditions,
            probe_passed: report.passed,
            agent_id: ready.status.agent_id.clone(),
            price: price.to_string(),
            amount_atomic: price.atomic.to_string(),
            payer: buyer.address(),
            pay_to: seller.address(),
            transaction,
            block_number: mined.block_number.unwrap_or_default(),
            transfer_value_atomic: transfer.value.to_string(),
            payer_balance_before: show(payer_before),
            payer_balance_after: show(payer_after),
            seller_balance_before: show(seller_before),
            seller_balance_after: show(seller_after),
            service_answer: answer,
            nonce_used_on_chain: nonce_used,
            replay_rejected,
        })
    }
}

fn transfer_log(
    receipt: &TransactionReceipt,
    token: Address,
) -> anyhow::Result<IEip3009Token::Transfer> {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|log| log.address() == token)
        .find_map(|log| IEip3009Token::Transfer::decode_log_data(log.data()).ok())
        .context("the settlement emitted no USDC Transfer log")
}
