//! The flags of `agora sell ...`, exactly as clap reads them. Nothing here checks or
//! combines them: `spec` turns them into an offer without I/O, and the command modules
//! do the talking to the daemon.

use std::path::PathBuf;

use alloy::primitives::Address;
use clap::{Args, Subcommand};
use offers::validate::parse_wallet;
use reqwest::Url;

use crate::env;

/// `agora sell` and its subcommands.
#[derive(Debug, Args)]
pub struct SellArgs {
    #[command(subcommand)]
    pub(super) command: SellCommand,
    #[arg(long, global = true, help = crate::output::JSON_HELP)]
    pub(super) json: bool,
}

#[derive(Debug, Subcommand)]
pub(super) enum SellCommand {
    /// Sell any HTTP service behind the x402 gate.
    Http(HttpArgs),
    /// Sell a local model server (Ollama, vLLM, llama.cpp, LiteLLM; detected if not given).
    Inference(InferenceArgs),
    /// Sell autoresearch experiments: the daemon runs `agora research worker` on --repo
    /// and sells each run at --per-hour × the time budget.
    Research(super::research::ResearchArgs),
    /// List offers with their readiness.
    List,
    /// Show an offer's conditions, public URL, price and recent events.
    Status(NameArg),
    /// Change an offer's price, recipient or network.
    Update(UpdateArgs),
    /// Stop selling: drain the route for --grace, then remove it.
    Stop(StopArgs),
    /// Delete an offer (asks first unless --yes).
    Delete(DeleteArgs),
    /// Show or set the defaults: recipient, network, facilitator; or --research what
    /// comparable offers charge.
    Pricing(PricingArgs),
    /// Print an offer as a manifest.
    Get(GetArgs),
    /// Create or update offers from a ServiceOffer manifest (YAML or JSON; - for stdin).
    Apply(ApplyArgs),
    /// Check that an offer answers with a correct x402 challenge (optionally pay once).
    Probe(ProbeArgs),
    /// Register (or update) this seller's agent on the ERC-8004 Identity Registry now.
    Register,
}

#[derive(Debug, Args)]
pub(super) struct NameArg {
    /// Offer name.
    pub(super) name: String,
}

#[derive(Debug, Clone, Default, Args)]
pub(super) struct PriceArgs {
    /// Price per request in USDC (same as --per-request).
    #[arg(long, value_name = "USDC")]
    pub(super) price: Option<String>,
    /// Price per request in USDC.
    #[arg(long, value_name = "USDC")]
    pub(super) per_request: Option<String>,
    /// Price per million tokens (charged as 1000 tokens per request).
    #[arg(long = "per-mtok", value_name = "USDC")]
    pub(super) per_mtok: Option<String>,
    /// Price per hour (charged as 5 minutes per request).
    #[arg(long, value_name = "USDC")]
    pub(super) per_hour: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub(super) struct PaymentArgs {
    /// Recipient of the payments [default: agora sell pricing].
    #[arg(
        long,
        visible_aliases = ["recipient", "wallet"],
        short = 'w',
        value_name = "ADDR",
        env = env::WALLET,
        value_parser = parse_wallet
    )]
    pub(super) pay_to: Option<Address>,
    /// Network to be paid on [default: agora sell pricing, else base-sepolia].
    #[arg(long, visible_alias = "chain", value_name = "NAME")]
    pub(super) network: Option<String>,
    /// Longest validity of a buyer's authorization, seconds.
    #[arg(long, default_value_t = DEFAULT_MAX_TIMEOUT)]
    pub(super) max_timeout: u64,
}

/// `--max-timeout` when not given.
const DEFAULT_MAX_TIMEOUT: u64 = 300;

#[derive(Debug, Clone, Default, Args)]
pub(super) struct RegisterArgs {
    /// Do not list the offer on the ERC-8004 registry.
    #[arg(long)]
    pub(super) no_register: bool,
    /// Agent name in the registration.
    #[arg(long, value_name = "NAME")]
    pub(super) register_name: Option<String>,
    /// What the service does.
    #[arg(long, visible_alias = "register-description", value_name = "TEXT")]
    pub(super) description: Option<String>,
    /// Image URL for the registration.
    #[arg(long, value_name = "URL")]
    pub(super) register_image: Option<String>,
    /// OASF v0.8.0 skill (repeatable), e.g. devops_mlops/model_versioning.
    #[arg(long = "register-skills", value_name = "SKILL")]
    pub(super) skills: Vec<String>,
    /// OASF v0.8.0 domain (repeatable), e.g. technology/data_science.
    #[arg(long = "register-domains", value_name = "DOMAIN")]
    pub(super) domains: Vec<String>,
    /// Published metadata key=value (repeatable).
    #[arg(long = "register-metadata", value_name = "K=V")]
    pub(super) metadata: Vec<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub(super) struct LimitArgs {
    /// Requests per second admitted.
    #[arg(long)]
    pub(super) rps: Option<u32>,
    /// Paid calls at the upstream at once.
    #[arg(long)]
    pub(super) max_in_flight: Option<u32>,
    /// Public path [default: /services/<name>].
    #[arg(long, value_name = "PATH")]
    pub(super) path: Option<String>,
}

#[derive(Debug, Args)]
pub(super) struct HttpArgs {
    /// Offer name (lowercase letters, digits, hyphens).
    pub(super) name: Option<String>,
    /// The service's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, short = 'u', value_name = "URL")]
    pub(super) upstream: Option<Url>,
    /// Path checked by UpstreamHealthy (served free).
    #[arg(long, default_value = "/health")]
    pub(super) health_path: String,
    #[command(flatten)]
    pub(super) price: PriceArgs,
    #[command(flatten)]
    pub(super) payment: PaymentArgs,
    #[command(flatten)]
    pub(super) register: RegisterArgs,
    #[command(flatten)]
    pub(super) limits: LimitArgs,
    /// Settle each paid call before calling the service, for long or costly jobs: a
    /// buyer who moves the funds away mid-call gets nothing, and one whose call
    /// failed after paying resends the same request with the same header, free.
    #[arg(long)]
    pub(super) settle_first: bool,
    /// Wait until the offer is Ready, showing each stage (seconds).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
    pub(super) wait: Option<u64>,
}

#[derive(Debug, Args)]
pub(super) struct InferenceArgs {
    /// Offer name (lowercase letters, digits, hyphens).
    pub(super) name: Option<String>,
    /// Model id as the server lists it (detected when the server has exactly one).
    #[arg(long)]
    pub(super) model: Option<String>,
    /// The model server's base URL [default: detected on 11434, 8000, 8080, 4000].
    #[arg(long, short = 'u', value_name = "URL")]
    pub(super) upstream: Option<Url>,
    #[command(flatten)]
    pub(super) price: PriceArgs,
    #[command(flatten)]
    pub(super) payment: PaymentArgs,
    #[command(flatten)]
    pub(super) register: RegisterArgs,
    #[command(flatten)]
    pub(super) limits: LimitArgs,
    /// Settle each paid call before calling the service, for long or costly jobs: a
    /// buyer who moves the funds away mid-call gets nothing, and one whose call
    /// failed after paying resends the same request with the same header, free.
    #[arg(long)]
    pub(super) settle_first: bool,
    /// Wait until the offer is Ready, showing each stage (seconds).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
    pub(super) wait: Option<u64>,
    /// A JSON object of strings (e.g. `agora research publish`'s provenance.json)
    /// published as the registration's `provenance`.
    #[arg(long, value_name = "FILE")]
    pub(super) provenance_file: Option<PathBuf>,
    /// Also forward this request (repeatable): 'METHOD /path' (e.g. 'GET /api/ps'),
    /// '/path' for any method, or '/path/*' for everything below it. Only the
    /// inference API is forwarded otherwise; any other path answers 404 unpaid, so a
    /// buyer cannot reach /api/pull, /api/delete or /api/create.
    #[arg(long = "allow-path", value_name = "[METHOD] PATH")]
    pub(super) allow_paths: Vec<String>,
}

#[derive(Debug, Args)]
pub(super) struct UpdateArgs {
    /// Offer name.
    pub(super) name: String,
    #[command(flatten)]
    pub(super) price: PriceArgs,
    /// New recipient.
    #[arg(long, visible_aliases = ["recipient", "wallet"], value_name = "ADDR", value_parser = parse_wallet)]
    pub(super) pay_to: Option<Address>,
    /// New network.
    #[arg(long, visible_alias = "chain", value_name = "NAME")]
    pub(super) network: Option<String>,
}

#[derive(Debug, Args)]
pub(super) struct StopArgs {
    /// Offer name.
    pub(super) name: String,
    /// How long the route keeps serving (e.g. 1h, 30m, 0s).
    #[arg(long, default_value = "1h")]
    pub(super) grace: String,
    /// Stop now (grace 0).
    #[arg(long, visible_alias = "force")]
    pub(super) now: bool,
}

#[derive(Debug, Args)]
pub(super) struct DeleteArgs {
    /// Offer name.
    pub(super) name: String,
    /// Do not ask.
    #[arg(long, short = 'y', visible_aliases = ["force"])]
    pub(super) yes: bool,
}

#[derive(Debug, Args)]
pub(super) struct PricingArgs {
    /// Default recipient.
    #[arg(long, visible_aliases = ["recipient", "wallet"], value_name = "ADDR", value_parser = parse_wallet)]
    pub(super) pay_to: Option<Address>,
    /// Default network.
    #[arg(long, visible_alias = "chain", value_name = "NAME")]
    pub(super) network: Option<String>,
    /// Facilitator URL for daemons started later.
    #[arg(long, env = env::FACILITATOR_URL, value_name = "URL")]
    pub(super) facilitator_url: Option<Url>,
    #[command(flatten)]
    pub(super) research: super::pricing_survey::SurveyArgs,
}

#[derive(Debug, Args)]
pub(super) struct GetArgs {
    /// Offer name.
    pub(super) name: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_parser = ["yaml", "json"], default_value = "yaml")]
    pub(super) output: String,
}

#[derive(Debug, Args)]
pub(super) struct ApplyArgs {
    /// Manifest file (YAML or JSON), or - for stdin; several documents separated by ---.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub(super) file: PathBuf,
}

#[derive(Debug, Args)]
pub(super) struct ProbeArgs {
    /// Offer name.
    pub(super) name: String,
    /// Probe the local gateway instead of the public URL.
    #[arg(long)]
    pub(super) local: bool,
    /// Also send one real paid request.
    #[arg(long)]
    pub(super) paid: bool,
    /// Buyer key file (mode 0600) for --paid [default: AGORA_BUYER_KEY].
    #[arg(long, value_name = "PATH")]
    pub(super) key_file: Option<PathBuf>,
}

/// What `agora research publish --sell` sells: `agora sell inference NAME --model NAME
/// --price PRICE --provenance-file FILE` and the flags below, built without parsing a
/// command line.
#[derive(Debug)]
pub(crate) struct PublishedModel {
    /// Offer and model name.
    pub(crate) name: String,
    /// Price per request in USDC.
    pub(crate) price: String,
    /// The provenance published in the registration.
    pub(crate) provenance_file: PathBuf,
    /// The model server's base URL [default: detected].
    pub(crate) upstream: Option<Url>,
    /// Who receives the payments [default: `--pay-to`'s variable, else as `sell inference`].
    pub(crate) pay_to: Option<Address>,
    /// Wait until the offer is Ready (seconds).
    pub(crate) wait: Option<u64>,
}

impl InferenceArgs {
    /// The flags of a [`PublishedModel`], every other one at its default and the
    /// recipient at its variable's value when not given, as clap would set them.
    pub(super) fn published(model: PublishedModel) -> anyhow::Result<Self> {
        let pay_to = match model.pay_to {
            Some(address) => Some(address),
            None => env::flag_var_with(env::WALLET, parse_wallet)?,
        };
        Ok(Self {
            name: Some(model.name.clone()),
            model: Some(model.name),
            upstream: model.upstream,
            price: PriceArgs {
                price: Some(model.price),
                ..PriceArgs::default()
            },
            payment: PaymentArgs {
                pay_to,
                network: None,
                max_timeout: DEFAULT_MAX_TIMEOUT,
            },
            register: RegisterArgs::default(),
            limits: LimitArgs::default(),
            settle_first: false,
            wait: model.wait,
            provenance_file: Some(model.provenance_file),
            allow_paths: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// A published model's flags are what clap makes of the same command line.
    #[test]
    fn published_is_what_clap_parses() {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            sell: SellArgs,
        }
        let argv = [
            "agora",
            "inference",
            "autoresearch-1234abcd",
            "--model",
            "autoresearch-1234abcd",
            "--price",
            "0.001",
            "--provenance-file",
            "provenance.json",
            "--upstream",
            "http://127.0.0.1:11434",
            "--pay-to",
            "0x1111111111111111111111111111111111111111",
            "--wait",
            "30",
        ];
        let SellCommand::Inference(parsed) = Wrapper::try_parse_from(argv).unwrap().sell.command
        else {
            panic!("not sell inference");
        };
        let built = InferenceArgs::published(PublishedModel {
            name: "autoresearch-1234abcd".into(),
            price: "0.001".into(),
            provenance_file: "provenance.json".into(),
            upstream: Some("http://127.0.0.1:11434".parse().unwrap()),
            pay_to: Some(
                "0x1111111111111111111111111111111111111111"
                    .parse()
                    .unwrap(),
            ),
            wait: Some(30),
        })
        .unwrap();
        assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
    }
}
