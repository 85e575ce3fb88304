//! `agora crd` and `agora operator`: agora's ServiceOffer model on Kubernetes.
//!
//! Thin wiring over `crates/operator`, which holds the CRD types, the controller and
//! the cluster store; this file only turns flags into its configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use reqwest::Url;
use x402::HttpFacilitator;

use crate::env;

/// `agora crd`.
#[derive(Debug, Args)]
pub struct CrdArgs {
    /// Print JSON instead of YAML.
    #[arg(long)]
    json: bool,
}

/// Prints the ServiceOffer CRD, generated from agora's types.
pub fn crd(args: &CrdArgs) -> anyhow::Result<()> {
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&operator::crd())?;
        json.push('\n');
        json
    } else {
        operator::crd_yaml().context("cannot render the CRD as YAML")?
    };
    crate::output::write_bytes(text.as_bytes())
}

/// `agora operator`.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// x402 facilitator the PaymentGateReady stage asks which networks it settles
    /// (in a cluster, the agora-facilitator Service).
    #[arg(long, env = env::FACILITATOR_URL, value_name = "URL")]
    facilitator: Url,
    /// DNS suffix of the cluster's Services, for `{service, namespace, port}`
    /// upstreams.
    #[arg(long, value_name = "DOMAIN", default_value = operator::store::DEFAULT_CLUSTER_DOMAIN)]
    cluster_domain: String,
    /// Seconds the health and model probes may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    probe_timeout: u64,
    /// Accept offers whose upstream is a Service in another namespace or any URL.
    /// Without it an offer may only sell Services in its own namespace, so a tenant
    /// who can write offers cannot sell 169.254.169.254 or kube-system. Pass the same
    /// to the gateways.
    #[arg(long)]
    allow_cross_namespace_upstreams: bool,
}

/// Reconciles every ServiceOffer in the cluster (in-cluster config, else the
/// kubeconfig) until SIGINT/SIGTERM.
pub async fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    let client = kube_client().await?;
    let url = env::url_text(&args.facilitator);
    let facilitator =
        Arc::new(HttpFacilitator::new(&url).with_context(|| format!("--facilitator {url}"))?);
    let ctx = operator::controller::Context::new(
        client,
        facilitator,
        operator::controller::OperatorConfig {
            cluster_domain: args.cluster_domain,
            probe_timeout: Duration::from_secs(args.probe_timeout),
            allow_cross_namespace_upstreams: args.allow_cross_namespace_upstreams,
            ..operator::controller::OperatorConfig::default()
        },
    )?;
    let shutdown = crate::signals::shutdown_signal()?;
    eprintln!("agora operator: reconciling ServiceOffers, facilitator {url}");
    operator::controller::run(Arc::new(ctx), shutdown).await?;
    Ok(())
}

/// The cluster's client: the pod's ServiceAccount inside a cluster, else the
/// current kubeconfig context.
pub async fn kube_client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default().await.context(
        "cannot reach a Kubernetes API server: run inside a cluster, or point KUBECONFIG at one (`kubectl config current-context` should answer)",
    )
}
