//! `agora gateway --from-kubernetes`: the gateway alone, as a Deployment's replica,
//! its route table built from the cluster's ServiceOffers and Services.
//!
//! On one machine `agora serve` runs the gateway with its own offers; this command
//! exists for the cluster, where offers are resources and any number of replicas
//! serve them. Payments go through one shared facilitator (the cross-replica replay
//! guard; see docs/kubernetes.md), so a replica holds no key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use gateway::{Gateway, GatewayConfig, Site};
use reqwest::Url;

use crate::env;

/// `agora gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Build the route table from the cluster's ServiceOffers and Services (the only
    /// source this command has; on one machine use `agora serve`).
    #[arg(long)]
    from_kubernetes: bool,
    /// Address buyers connect to; in a pod, 0.0.0.0:8402.
    #[arg(long, env = env::LISTEN, value_name = "ADDR", default_value = "127.0.0.1:8402")]
    listen: SocketAddr,
    /// The shared x402 facilitator every replica verifies and settles through (in a
    /// cluster, the agora-facilitator Service).
    #[arg(long, env = env::FACILITATOR_URL, value_name = "URL")]
    facilitator: Url,
    /// File (mode 0600) with the API key the facilitator requires as
    /// `Authorization: Bearer` (in a cluster, the agora-facilitator-api-key Secret
    /// mounted as a file).
    #[arg(long, value_name = "PATH")]
    facilitator_api_key_file: Option<PathBuf>,
    /// Public base URL of the gateway (the Ingress or tunnel), used in 402s and the
    /// catalog.
    #[arg(long, value_name = "URL")]
    public_url: Option<Url>,
    /// This replica's payment ledger (SQLite), kept across restarts when on a volume
    /// [default: in memory].
    #[arg(long, value_name = "PATH")]
    ledger: Option<PathBuf>,
    /// DNS suffix of the cluster's Services.
    #[arg(long, value_name = "DOMAIN", default_value = operator::store::DEFAULT_CLUSTER_DOMAIN)]
    cluster_domain: String,
    /// Seller name shown on the storefront.
    #[arg(long, default_value = "agora seller")]
    title: String,
    /// Route offers whose upstream is a Service in another namespace or any URL
    /// (by default an offer sells only Services in its own namespace; give the
    /// operator the same flag).
    #[arg(long)]
    allow_cross_namespace_upstreams: bool,
    /// How many gateway replicas share the payments (a StatefulSet's replicas). Each
    /// payment is served by one home replica, which keeps it in its --ledger; the
    /// others forward its requests there. Needs --replica-url and --replica-index.
    #[arg(long, value_name = "N", requires_all = ["replica_url", "replica_index"])]
    replicas: Option<usize>,
    /// Every replica's base URL, `{}` standing for its index, e.g.
    /// http://agora-gateway-{}.agora-gateway-replicas:8402.
    #[arg(long, value_name = "URL", requires = "replicas")]
    replica_url: Option<String>,
    /// This replica's index, 0 to N-1 (a StatefulSet pod's ordinal).
    #[arg(
        long,
        env = "AGORA_REPLICA_INDEX",
        value_name = "I",
        requires = "replicas"
    )]
    replica_index: Option<usize>,
}

/// Serves the gateway and follows the cluster until SIGINT/SIGTERM.
pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    if !args.from_kubernetes {
        bail!(
            "agora gateway serves offers from a Kubernetes cluster: add --from-kubernetes (on one machine, `agora serve` runs the gateway with its own offers)"
        );
    }
    // The replica set is checked before anything is reached: a wrong flag is named
    // first.
    let replicas = match (args.replicas, &args.replica_url, args.replica_index) {
        (Some(count), Some(template), Some(index)) => {
            if args.ledger.is_none() {
                bail!(
                    "--replicas needs --ledger PATH on the replica's own volume (e.g. --ledger /var/lib/agora/payments.db on a StatefulSet's volumeClaimTemplate): the home replica's ledger is what serves a buyer charged without an answer"
                );
            }
            Some(
                gateway::replicas::Replicas::from_template(template, count, index)
                    .context("--replicas")?,
            )
        }
        _ => None,
    };
    let client = crate::cmd::operator::kube_client().await?;
    let url = env::url_text(&args.facilitator);
    let facilitator: Arc<dyn x402::Facilitator> = Arc::new(crate::cmd::facilitator::remote(
        &url,
        args.facilitator_api_key_file.as_deref(),
    )?);
    let public_url = args.public_url.as_ref().map(env::url_text);
    let gateway = Gateway::new(
        GatewayConfig {
            public_base_url: public_url.clone(),
            ledger: args.ledger.clone(),
            replicas,
            ..GatewayConfig::default()
        },
        facilitator.clone(),
    )?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    let shutdown = crate::signals::shutdown_signal()?;
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_signal.send_replace(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    eprintln!(
        "agora gateway: listening on {}, routes from the cluster's ServiceOffers, facilitator {url}",
        listener.local_addr()?
    );
    let follow = operator::cluster::follow(
        client,
        gateway.clone(),
        facilitator,
        operator::cluster::ClusterConfig {
            cluster_domain: args.cluster_domain,
            site: Site {
                title: args.title,
                base_url: public_url.unwrap_or_default(),
            },
            probe_timeout: Duration::from_secs(2),
            allow_cross_namespace_upstreams: args.allow_cross_namespace_upstreams,
        },
        until_stopped(stopped.clone()),
    );
    // A gateway that can no longer follow the cluster stops (after the calls in
    // flight), so the Deployment restarts it rather than serving a stale table.
    let follow = async {
        let followed = follow.await;
        stop.send_replace(true);
        followed
    };
    let serving = gateway::serve(&gateway, listener, until_stopped(stopped));
    let (followed, served) = tokio::join!(follow, serving);
    followed?;
    served.context("the gateway stopped serving")?;
    Ok(())
}
