//! `agora sell research`: sell autoresearch experiments from this machine.
//!
//! The offer is an HTTP offer whose upstream is an `agora research worker` that the
//! daemon runs as its own child (`seller::research_supervisor`, with [`AgoraWorker`]): started when the offer appears,
//! restarted when it exits, stopped when the offer goes. What the worker needs
//! (repository, budget, grace, command, address) rides in the offer's annotations, so
//! the offer alone says what to run and a daemon restart brings the worker back (and
//! first stops one that a killed daemon left running, found by its pid file).
//!
//! Price: x402's exact scheme charges per call, so `--per-hour` becomes a per-run
//! price for the worker's time budget, rounded UP to the next whole atomic unit
//! (`research::coordinator::price::per_run`; 0.50/h for 300 s is 41 666.67 atomic
//! units, charged 41 667). The worker's `/status` is the free health path, so a
//! buyer checks it is idle before paying, and one run at a time is admitted.
//!
//! Leaderboard: the registration's `metadata` carries `best_val_bpb`,
//! `total_experiments`, `updated`, `gpu`, `framework`, `best_experiment_hash` and
//! `avg_experiment_time`. The supervisor reads them from the worker's `/status` and
//! writes a change into the offer at most once a minute; the reconciler then
//! publishes the file and writes the changed values on chain (and only those).

mod launcher;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use research::coordinator::price;
use research::coordinator::workers::{WORKER_DOMAIN, WORKER_SKILL};
use seller::research_supervisor::annotations::{
    BUDGET, GRACE, LISTEN, PER_HOUR, REPO, SANDBOX, TRAIN_COMMAND,
};
use x402::Money;
use x402::network::USDC_DECIMALS;

use super::args::{HttpArgs, LimitArgs, PaymentArgs, PriceArgs, RegisterArgs};
use super::{create, spec};
use crate::cmd::research::SandboxArgs;
use crate::output::outln;

pub(crate) use launcher::AgoraWorker;

/// `agora sell research` flags.
#[derive(Debug, Args)]
pub(crate) struct ResearchArgs {
    /// Offer name (lowercase letters, digits, hyphens).
    name: Option<String>,
    /// The repository holding train.py; each experiment runs in a fresh copy of it.
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// Price per hour of GPU time in USDC; one run costs this × --budget / 3600,
    /// rounded up to the next atomic unit (0.50 for 300 s: 0.041667).
    #[arg(long, value_name = "USDC")]
    per_hour: String,
    /// Seconds of training per run (the worker's TIME_BUDGET).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    budget: u64,
    /// Extra seconds for startup and evaluation before the run is killed (the run is
    /// paid after it is served, so --budget + --grace is at most 480).
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    grace: u64,
    /// The command the worker runs in the copy [default: python3 train.py].
    #[arg(long, value_name = "COMMAND")]
    train_command: Option<String>,
    /// Where the worker listens [default: a free port on 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    worker_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    payment: PaymentArgs,
    #[command(flatten)]
    register: RegisterArgs,
    /// Wait until the offer is Ready, showing each stage (seconds).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
    wait: Option<u64>,
}

/// Seconds a killed run gets to have its result written, beyond budget + grace.
const RESULT_SLACK: u64 = 30;

/// How long the gateway lets the worker answer a paid run: budget + grace + slack.
/// The exact scheme settles after the answer, so the buyer's authorization must
/// outlive it plus the gateway's settle and margin; agora's buyer signs for at most
/// `MAX_VALIDITY_SECONDS` (600 s), which leaves 510 s (budget + grace ≤ 480).
fn run_timeout(budget: u64, grace: u64) -> anyhow::Result<u64> {
    let longest = x402::client::MAX_VALIDITY_SECONDS
        - gateway::GatewayConfig::default().settle_timeout.as_secs()
        - gateway::paid::VALIDITY_MARGIN_SECONDS;
    let timeout = budget.saturating_add(grace).saturating_add(RESULT_SLACK);
    if timeout > longest {
        bail!(
            "--budget {budget} + --grace {grace} is too long to be paid after the run: buyers' authorizations last at most {} s, so keep --budget + --grace at most {} (e.g. --budget 300 --grace 120)",
            x402::client::MAX_VALIDITY_SECONDS,
            longest - RESULT_SLACK
        );
    }
    Ok(timeout)
}

/// The per-run price of `per_hour` (a USDC decimal) for a `budget`-second run.
fn per_run_price(per_hour: &str, budget: u64) -> anyhow::Result<Money> {
    let hourly = Money::parse(per_hour, USDC_DECIMALS)
        .map_err(|e| anyhow::anyhow!("--per-hour {per_hour:?}: {e}; write e.g. --per-hour 0.50"))?;
    Ok(price::per_run(hourly, budget)?)
}

/// `agora sell research`.
pub(super) async fn sell(a: ResearchArgs, json_out: bool) -> anyhow::Result<()> {
    let repo = std::fs::canonicalize(&a.repo).with_context(|| {
        format!(
            "--repo {}: no such directory; point it at the checkout holding train.py",
            a.repo.display()
        )
    })?;
    if !repo.join("train.py").is_file() && a.train_command.is_none() {
        bail!(
            "--repo {} holds no train.py; point it at the experiment's checkout, or pass --train-command",
            repo.display()
        );
    }
    // Checked here, so a flag this host cannot honour fails now, not in the daemon.
    a.sandbox.sandbox()?;
    for warning in a.sandbox.warnings() {
        eprintln!("{warning}");
    }
    let run_price = per_run_price(&a.per_hour, a.budget)?;
    let timeout = run_timeout(a.budget, a.grace)?;
    let listen = match a.worker_listen {
        Some(addr) => addr,
        None => free_port()?,
    };
    let mut register = a.register.clone();
    if register.skills.is_empty() {
        register.skills.push(WORKER_SKILL.to_string());
    }
    if register.domains.is_empty() {
        register.domains.push(WORKER_DOMAIN.to_string());
    }
    let http = HttpArgs {
        name: a.name.clone(),
        upstream: Some(
            format!("http://{listen}")
                .parse()
                .context("the worker address is not a URL")?,
        ),
        health_path: "/status".into(),
        price: PriceArgs {
            price: None,
            per_request: Some(run_price.to_string()),
            per_mtok: None,
            per_hour: None,
        },
        payment: a.payment.clone(),
        register,
        limits: LimitArgs {
            rps: None,
            max_in_flight: Some(1),
            path: None,
        },
        // A run takes minutes of GPU: paid on chain before it starts (H4).
        settle_first: true,
        wait: a.wait,
    };
    let draft = spec::http(&http)?;
    if !json_out {
        outln!(
            "one run costs {run_price} USDC: {} USDC/hour × {} s, rounded up to the next atomic unit",
            a.per_hour.trim(),
            a.budget
        )?;
    }
    let annotations = [
        (REPO, repo.display().to_string()),
        (BUDGET, a.budget.to_string()),
        (GRACE, a.grace.to_string()),
        (LISTEN, listen.to_string()),
        (PER_HOUR, a.per_hour.trim().to_string()),
        (SANDBOX, serde_json::to_string(&a.sandbox)?),
    ];
    let train_command = a.train_command.clone();
    // The worker reports the same name, so its first /status changes nothing.
    let gpu = research::worker::detect_gpu().unwrap_or_else(|| "none".to_string());
    create::sell_shaped(draft, &a.payment, a.wait, json_out, move |offer| {
        offer.spec.limits.get_or_insert_default().timeout_seconds = Some(timeout);
        let notes = &mut offer.metadata.annotations;
        for (k, v) in annotations {
            notes.insert(k.to_string(), v);
        }
        if let Some(command) = train_command {
            notes.insert(TRAIN_COMMAND.to_string(), command);
        }
        if let Some(registration) = offer.spec.registration.as_mut() {
            let metadata = &mut registration.metadata;
            metadata.insert("framework".into(), "autoresearch".into());
            metadata.insert("gpu".into(), gpu);
            metadata.insert("total_experiments".into(), "0".into());
            metadata.insert("updated".into(), x402::time::now_rfc3339());
        }
    })
    .await?
    .print(json_out)
}

/// A free loopback port for the worker, chosen now and kept in the offer.
fn free_port() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port for the worker; pass --worker-listen 127.0.0.1:PORT")?;
    Ok(listener.local_addr()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::U256;

    #[test]
    fn the_per_run_price_rounds_up_to_the_next_atomic_unit() {
        let run = per_run_price("0.50", 300).expect("price");
        assert_eq!(run.atomic, U256::from(41_667));
        assert_eq!(run.to_string(), "0.041667");
        assert_eq!(per_run_price("6", 300).expect("price").to_string(), "0.5");
        let e = per_run_price("half", 300).expect_err("not a number");
        assert!(e.to_string().contains("--per-hour"), "{e}");
        let e = per_run_price("0.5", 0).expect_err("no budget");
        // The flag is added where agora prints the error.
        let printed = crate::hint::describe(&e);
        assert!(printed.contains("--budget"), "{printed}");
    }

    #[test]
    fn a_run_must_end_while_the_buyers_authorization_is_valid() {
        assert_eq!(run_timeout(300, 120).expect("default"), 450);
        assert_eq!(run_timeout(360, 120).expect("the longest"), 510);
        let e = run_timeout(300, 300).expect_err("the worker's own default grace");
        assert!(e.to_string().contains("at most 480"), "{e}");
    }
}
