//! `agora sell ...`: what a seller types. The flags (`args`) become an offer spec
//! without I/O (`spec`); the command modules then hand it to the daemon over its admin
//! socket, starting the daemon in the background when none runs, and render the answer.

mod args;
mod create;
mod lifecycle;
mod pricing_survey;
mod probe;
mod register;
pub(crate) mod research;
mod show;
mod spec;

use anyhow::anyhow;
use seller::admin::Stored;
use seller::{AdminClient, AdminError, socket_path};
use wallet::home;

use crate::cmd::serve;

pub(crate) use args::PublishedModel;
pub use args::SellArgs;
use args::SellCommand;
pub(crate) use create::Sold;
pub use create::wait_ready;
pub(crate) use research::AgoraWorker;

/// Runs one `agora sell` command.
pub async fn run(args: SellArgs) -> anyhow::Result<()> {
    let json_out = args.json;
    match args.command {
        SellCommand::Http(a) => create::http(a, json_out).await?.print(json_out),
        SellCommand::Inference(a) => create::inference(a, json_out).await?.print(json_out),
        SellCommand::Research(a) => research::sell(a, json_out).await,
        SellCommand::List => show::list(json_out).await,
        SellCommand::Status(a) => show::status(&a.name, json_out).await,
        SellCommand::Update(a) => lifecycle::update(a, json_out).await,
        SellCommand::Stop(a) => lifecycle::stop(a, json_out).await,
        SellCommand::Delete(a) => lifecycle::delete(a, json_out).await,
        SellCommand::Pricing(a) if a.research.research => {
            pricing_survey::run(a.research, json_out).await
        }
        SellCommand::Pricing(a) => lifecycle::pricing(a, json_out).await,
        SellCommand::Get(a) => show::get(a).await,
        SellCommand::Apply(a) => lifecycle::apply(a, json_out).await,
        SellCommand::Probe(a) => probe::probe(a, json_out).await,
        SellCommand::Register => register::register(json_out).await,
    }
}

/// Sells a model `agora research publish` made, as `agora sell inference` does; the
/// sale comes back for publish's one `--json` object.
pub(crate) async fn sell_published(model: PublishedModel, json_out: bool) -> anyhow::Result<Sold> {
    create::inference(args::InferenceArgs::published(model)?, json_out).await
}

/// Connects to the daemon, starting one in the background when none answers.
async fn daemon(json_out: bool) -> anyhow::Result<AdminClient> {
    let home = home::agora_home()?;
    let client = AdminClient::new(&socket_path(&home));
    if client.is_up().await {
        return Ok(client);
    }
    let args = serve::ServeArgs::from_env()?;
    let started = serve::start_background(&home, &args).await?;
    if !json_out {
        eprintln!(
            "started the agora daemon in the background (gateway {}, facilitator {}, log {})",
            started.info.gateway_url,
            started.info.facilitator,
            started.log.display(),
        );
    }
    Ok(client)
}

/// An offer and its recent events, as the daemon stores them.
async fn fetch(
    client: &AdminClient,
    name: &str,
) -> anyhow::Result<(offers::ServiceOffer, Vec<offers::Event>)> {
    let view = client.offer(name).await.map_err(unknown_offer)?;
    Ok((view.offer, view.events))
}

/// Stores `offer` in the daemon, after the daemon's own first check (`resolve`) is
/// made here: a refusal is then the typed offer error agora adds its flag hint to
/// (the daemon's path-in-use refusal comes back typed too).
async fn put(client: &AdminClient, offer: &offers::ServiceOffer) -> anyhow::Result<Stored> {
    offers::validate::resolve(offer)?;
    client.put_offer(offer).await.map_err(|e| match e {
        AdminError::Invalid(invalid) => invalid.into(),
        other => other.into(),
    })
}

/// The daemon's refusal, naming the command that lists the offers when the one asked
/// for does not exist.
fn unknown_offer(e: AdminError) -> anyhow::Error {
    if e.status() == Some(404) {
        anyhow!("{e}; list them with: agora sell list")
    } else {
        e.into()
    }
}

/// What a write did, as the daemon words it on the wire: created, updated or unchanged.
fn change_text(change: offers::Change) -> String {
    serde_json::to_value(change)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `value` as one line of JSON with its keys sorted, as the daemon's answers were
/// always printed.
fn json_line(value: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_value(value)?.to_string())
}
