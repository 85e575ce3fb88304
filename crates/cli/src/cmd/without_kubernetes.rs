//! `agora crd`, `agora operator` and `agora gateway` in a build without the
//! `kubernetes` feature.
//!
//! kube and k8s-openapi are the largest crates of a first build, and a laptop seller
//! never runs them, so they are off by default. The commands stay in `--help` and
//! answer with how to get them, so skills, docs and scripts never meet an unknown
//! command.

use clap::Args;

/// What every command here answers, whatever its flags.
const UNSUPPORTED: &str = "this agora was built without Kubernetes support; build with `cargo build -p agora --features kubernetes` (the container image has it)";

/// The flags of a command this build lacks: any are taken, so the answer is always
/// how to get the command, never a flag error.
#[derive(Debug, Args)]
#[command(after_help = UNSUPPORTED)]
pub struct Unsupported {
    #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
    _flags: Vec<String>,
}

/// `agora crd`.
pub type CrdArgs = Unsupported;
/// `agora operator`.
pub type OperatorArgs = Unsupported;
/// `agora gateway`.
pub type GatewayArgs = Unsupported;

/// `agora crd` without the feature: says how to get it.
pub fn crd(_: &CrdArgs) -> anyhow::Result<()> {
    anyhow::bail!(UNSUPPORTED)
}

/// `agora operator` without the feature: says how to get it.
pub async fn operator(_: OperatorArgs) -> anyhow::Result<()> {
    anyhow::bail!(UNSUPPORTED)
}

/// `agora gateway` without the feature: says how to get it.
pub async fn run(_: GatewayArgs) -> anyhow::Result<()> {
    anyhow::bail!(UNSUPPORTED)
}

#[cfg(test)]
mod tests {
    use clap::{Parser, Subcommand};

    use super::*;

    /// The three commands as the default build's `Cli` wires them (main.rs, cmd/mod.rs),
    /// so this test runs in every build, the `kubernetes` one included.
    #[derive(Debug, Parser)]
    struct Agora {
        #[command(subcommand)]
        command: Left,
    }

    #[derive(Debug, Subcommand)]
    enum Left {
        Crd(CrdArgs),
        Operator(Box<OperatorArgs>),
        Gateway(Box<GatewayArgs>),
    }

    #[tokio::test]
    async fn each_command_takes_its_usual_flags_and_says_how_to_get_it() {
        for argv in [
            vec!["agora", "crd", "--json"],
            vec!["agora", "operator", "--facilitator", "http://127.0.0.1:9"],
            vec![
                "agora",
                "gateway",
                "--from-kubernetes",
                "--facilitator",
                "http://127.0.0.1:9",
            ],
        ] {
            let error = match Agora::try_parse_from(&argv).unwrap().command {
                Left::Crd(args) => crd(&args),
                Left::Operator(args) => operator(*args).await,
                Left::Gateway(args) => run(*args).await,
            }
            .unwrap_err();
            assert_eq!(error.to_string(), UNSUPPORTED, "{argv:?}");
        }
    }
}
