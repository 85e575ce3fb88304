//! `agora research publish`: turns the best kept experiment of a repo's `results.tsv`
//! into provenance (with the hash of `train.py` as committed) and a GGUF checkpoint,
//! and with `--sell` sells it as an inference offer carrying that provenance (under
//! `--json`, one object: the publication, with the sale in `sale`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use offers::validate::parse_wallet;
use research::publish;
use serde_json::json;

use crate::output::outln;

/// `agora research publish` flags.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The git repository whose results.tsv and commits hold the experiments.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// The results file [default: DIR/results.tsv].
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
    /// Where to write the provenance [default: DIR/provenance.json].
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The checkpoint to serve (must be .gguf) [default: the newest .gguf in DIR].
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Also sell the model: `ollama create` it from the checkpoint, then
    /// `agora sell inference` with the provenance in the registration.
    #[arg(long, requires = "price")]
    pub sell: bool,
    /// Price per request in USDC, with --sell.
    #[arg(long, value_name = "USDC")]
    pub price: Option<String>,
    /// Offer and model name with --sell [default: autoresearch-<commit, 8 chars>].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// With --sell: the model is already served under --name; skip `ollama create`.
    #[arg(long)]
    pub no_create: bool,
    /// With --sell: the model server's base URL [default: detected].
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// With --sell: who receives the payments [default: `agora sell pricing`'s, else
    /// the default wallet].
    #[arg(long, value_name = "ADDR")]
    pub pay_to: Option<String>,
    /// With --sell: wait until the offer is Ready (seconds).
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
    #[arg(long, help = crate::output::JSON_HELP)]
    pub json: bool,
}

/// Runs `agora research publish`.
pub async fn run(a: PublishArgs) -> anyhow::Result<()> {
    let results = a
        .results
        .clone()
        .unwrap_or_else(|| a.repo.join("results.tsv"));
    let text = std::fs::read_to_string(&results).with_context(|| {
        format!(
            "cannot read {}: run experiments first (each a commit, one row in results.tsv), or pass --results FILE",
            results.display()
        )
    })?;
    let rows = publish::parse_results(&text).map_err(anyhow::Error::msg)?;
    let Some(best) = publish::best(&rows) else {
        bail!(
            "{} has no row with status keep and a val_bpb above 0: nothing to publish",
            results.display()
        );
    };
    let provenance = publish::provenance(&a.repo, best).map_err(anyhow::Error::msg)?;
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| a.repo.join("provenance.json"));
    let mut bytes = serde_json::to_vec_pretty(&provenance)?;
    bytes.push(b'\n');
    std::fs::write(&output, bytes).with_context(|| format!("cannot write {}", output.display()))?;
    let checkpoint = publish::checkpoint(&a.repo, a.checkpoint.as_deref())
        .map_err(|e| anyhow::anyhow!("{e} (the provenance is in {})", output.display()))?;
    let checkpoint = std::fs::canonicalize(&checkpoint)?;
    let modelfile = output.with_file_name("Modelfile");
    std::fs::write(&modelfile, format!("FROM {}\n", checkpoint.display()))
        .with_context(|| format!("cannot write {}", modelfile.display()))?;
    let name = a.name.clone().unwrap_or_else(|| {
        format!(
            "autoresearch-{}",
            best.commit.chars().take(8).collect::<String>()
        )
    });
    let create = format!("ollama create {name} -f {}", modelfile.display());
    // `--json`'s one object, printed at the end: with `--sell`, the sale joins it.
    let mut published = json!({
        "experiment": {
            "commit": best.commit,
            "val_bpb": best.val_bpb,
            "description": best.description,
        },
        "provenance": provenance,
        "provenanceFile": output,
        "checkpoint": checkpoint,
        "modelfile": modelfile,
        "name": name,
    });
    if !a.json {
        outln!(
            "best experiment {} (val_bpb {}, {}): provenance in {}, trainHash {}",
            best.commit,
            best.val_bpb_text,
            best.description,
            output.display(),
            provenance
                .get("trainHash")
                .map(String::as_str)
                .unwrap_or("?")
        )?;
        outln!(
            "checkpoint {} (Modelfile {})",
            checkpoint.display(),
            modelfile.display()
        )?;
        if !a.sell {
            outln!("to serve it: {create}; to sell it: add --sell --price P")?;
        }
    }
    if !a.sell {
        return if a.json {
            outln!("{published}")
        } else {
            Ok(())
        };
    }
    let Some(price) = a.price else {
        bail!("--sell needs --price, e.g. --price 0.001");
    };
    if !a.no_create {
        let status = tokio::process::Command::new("ollama")
            .args(["create", &name, "-f"])
            .arg(&modelfile)
            .status()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot run `{create}` ({e}): install Ollama, or import the model yourself and pass --no-create --name NAME"
                )
            })?;
        if !status.success() {
            bail!(
                "`{create}` failed ({status}); fix it and rerun, or pass --no-create --name NAME"
            );
        }
    }
    let invalid = |flag: &str, value: &str, e: &dyn std::fmt::Display| {
        anyhow::anyhow!("invalid value '{value}' for '{flag}': {e}")
    };
    let upstream = a
        .upstream
        .map(|u| u.parse().map_err(|e| invalid("--upstream <URL>", &u, &e)))
        .transpose()?;
    let pay_to = a
        .pay_to
        .map(|p| parse_wallet(&p).map_err(|e| invalid("--pay-to <ADDR>", &p, &e)))
        .transpose()?;
    let model = crate::cmd::sell::PublishedModel {
        name,
        price,
        provenance_file: output,
        upstream,
        pay_to,
        wait: a.wait,
    };
    let sold = crate::cmd::sell::sell_published(model, a.json).await?;
    if a.json {
        published["sale"] = serde_json::to_value(&sold)?;
        outln!("{published}")?;
    }
    Ok(())
}
