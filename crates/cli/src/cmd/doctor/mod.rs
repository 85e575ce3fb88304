//! `agora doctor`: is this machine ready to sell? [`seller::doctor`] runs the checks
//! (the daemon and its gateway, a public URL, a facilitator that settles the network, a
//! funded wallet, the registry key, a model server, the research sandbox, offers that
//! are Ready); this command gives them agora's inputs (the flags, `AGORA_FACILITATOR_URL`,
//! `AGORA_INFERENCE_PORTS`, the worker's default sandbox) and prints each failure with
//! the agora command that fixes it ([`render`]). The agent skills run it first.

mod render;

use clap::Args;
use reqwest::Url;
use seller::doctor::{self, Options};
use wallet::home;

use crate::cmd::serve::DEFAULT_FACILITATOR;
use crate::exit::{Code, Stop};
use crate::output::outln;
use crate::{env, model_lookup};
use render::Shown;

/// Options of `agora doctor`.
#[derive(Debug, Clone, Default, Args)]
pub struct DoctorArgs {
    /// JSON-RPC the wallet's balances are read from [default: the network's public RPC].
    #[arg(long, value_name = "URL")]
    pub rpc: Option<Url>,
    /// Network the seller is paid on [default: `agora sell pricing`, else the --rpc
    /// chain, else base-sepolia].
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    #[arg(long, help = crate::output::JSON_HELP)]
    pub json: bool,
}

/// Runs `agora doctor`: prints the report and fails (exit 1) when a check failed;
/// with `--json` a failure's error object carries the report's fields, so stdout
/// holds one object either way.
pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let report = doctor::diagnose(&options(&args).await).await;
    let shown = Shown::of(&report);
    let failed: Vec<&str> = report.failed().map(|c| c.name).collect();
    if !args.json {
        shown.print()?;
    } else if failed.is_empty() {
        outln!("{}", serde_json::to_string(&shown)?)?;
    }
    if !failed.is_empty() {
        let message = format!(
            "{} check(s) failed: {}; run the fix printed for each, then agora doctor again",
            failed.len(),
            failed.join(", ")
        );
        // A report is a JSON object: its fields join the error object.
        let fields = serde_json::to_value(&shown)?
            .as_object()
            .cloned()
            .unwrap_or_default();
        return Err(Stop::new(Code::Error, "check_failed", message)
            .with_fields(fields)
            .into());
    }
    Ok(())
}

/// What the checks run against: the flags, the facilitator and model servers agora
/// would use, and the sandbox `agora research worker` prepares by default.
async fn options(args: &DoctorArgs) -> Options {
    Options {
        network: args.network.clone(),
        rpc: args.rpc.clone(),
        facilitator_url: facilitator_to_be_used(),
        model_server: model_lookup::detect().await.map_err(|e| format!("{e:#}")),
        sandbox: crate::cmd::research::SandboxArgs::default()
            .sandbox()
            .map_err(|e| format!("{e:#}")),
    }
}

/// The facilitator a daemon started now would use: the flag's variable, else the
/// `agora sell pricing` setting, else the public default.
fn facilitator_to_be_used() -> String {
    if let Some(url) = env::var(env::FACILITATOR_URL) {
        return url;
    }
    // Reading does not create the database in a home that has none.
    let stored = home::agora_home()
        .ok()
        .and_then(|home| seller::stored_settings(&home)?.facilitator);
    stored.unwrap_or_else(|| DEFAULT_FACILITATOR.to_string())
}
