//! `agora sell register`: lists this seller on the ERC-8004 Identity Registry now, or
//! says why it cannot.

use anyhow::bail;

use super::{daemon, json_line};
use crate::output::outln;

/// `agora sell register`.
pub(super) async fn register(json_out: bool) -> anyhow::Result<()> {
    let client = daemon(json_out).await?;
    let info = client.status().await?;
    let answer = client.registration().await?;
    let document = format!("{}/.well-known/agent-registration.json", info.public_url);
    if !answer.on_chain {
        bail!(
            "this daemon has no registry key, so the registration file is only published at {document}; restart it with agora serve --registry-key-file KEY (and --registry-rpc URL) to list it on ERC-8004"
        );
    }
    let Some(agent_id) = answer.agent_id.as_deref() else {
        let offers = client.offers().await?;
        let why = offers
            .iter()
            .filter_map(|o| o.condition("Registered"))
            .map(|c| format!("{} ({})", c.message, c.reason))
            .next()
            .unwrap_or_else(|| "no offer has registration enabled and a published route".into());
        bail!("not registered: {why}");
    };
    if json_out {
        outln!("{}", json_line(&answer)?)?;
    } else {
        outln!(
            "Agent {agent_id} on eip155:{}:{} -> {}",
            answer.agent_chain_id.as_deref().unwrap_or("?"),
            answer.agent_registry.as_deref().unwrap_or("?"),
            answer.agent_uri.as_deref().unwrap_or("?")
        )?;
        if let Some(tx) = &answer.registration_tx {
            outln!("Registration Tx: {tx}")?;
        }
    }
    Ok(())
}
