//! `agora research`: autoresearch from the command line — run a GPU worker that sells
//! experiments, and publish the best checkpoint with its provenance.

mod coordinator;
mod publish;
mod worker;

pub(crate) use worker::SandboxArgs;

use clap::{Args, Subcommand};

/// `agora research <worker|publish>`.
#[derive(Debug, Args)]
pub struct ResearchArgs {
    #[command(subcommand)]
    command: ResearchCommand,
}

#[derive(Debug, Subcommand)]
enum ResearchCommand {
    /// Serve the worker API: run one train.py at a time under a time budget and report
    /// val_bpb (/health, /status, /best, /experiments/ID, POST /experiment).
    Worker(worker::WorkerArgs),
    /// Write the provenance of the best result in results.tsv and pick its checkpoint;
    /// with --sell, sell it as an inference offer.
    Publish(publish::PublishArgs),
    /// Buy experiments: discover workers, probe a price, submit a train.py (paid from
    /// the wallet), keep a leaderboard, loop over rounds.
    Coordinator(coordinator::CoordinatorArgs),
}

/// Runs one `agora research` subcommand.
pub async fn run(args: ResearchArgs) -> anyhow::Result<()> {
    match args.command {
        ResearchCommand::Worker(a) => worker::run(a).await,
        ResearchCommand::Coordinator(a) => coordinator::run(a).await,
        ResearchCommand::Publish(a) => publish::run(a).await,
    }
}
