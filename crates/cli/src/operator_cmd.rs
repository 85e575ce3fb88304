//! `agora crd` and `agora operator`: agora's ServiceOffer model on Kubernetes.
//!
//! Thin wiring over `crates/operator`, which holds the CRD types, the controller and
//! the cluster store; this file only turns flags into its configuration.

use anyhow::Context;
use clap::Args;

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
