//! `agora sell register`: lists this seller on the ERC-8004 Identity Registry now, or
//! says why it cannot.

use anyhow::bail;
use offers::ServiceOffer;

use super::daemon;
use crate::output::outln;

/// `agora sell register`.
pub(super) async fn register(json_out: bool) -> anyhow::Result<()> {
    let client = daemon(json_out).await?;
    let info = client.request("GET", "/v1/status", None).await?.ok()?;
    let answer = client
        .request("GET", "/v1/registration", None)
        .await?
        .ok()?;
    let document = format!(
        "{}/.well-known/agent-registration.json",
        info["publicUrl"].as_str().unwrap_or_default()
    );
    if answer["onChain"] != true {
        bail!(
            "this daemon has no registry key, so the registration file is only published at {document}; restart it with agora serve --registry-key-file KEY (and --registry-rpc URL) to list it on ERC-8004"
        );
    }
    let Some(agent_id) = answer["agentId"].as_str() else {
        let offers: Vec<ServiceOffer> =
            serde_json::from_value(client.request("GET", "/v1/offers", None).await?.ok()?)?;
        let why = offers
            .iter()
            .filter_map(|o| o.condition("Registered"))
            .map(|c| format!("{} ({})", c.message, c.reason))
            .next()
            .unwrap_or_else(|| "no offer has registration enabled and a published route".into());
        bail!("not registered: {why}");
    };
    if json_out {
        outln!("{answer}")?;
    } else {
        outln!(
            "Agent {agent_id} on eip155:{}:{} -> {}",
            answer["agentChainId"].as_str().unwrap_or("?"),
            answer["agentRegistry"].as_str().unwrap_or("?"),
            answer["agentUri"].as_str().unwrap_or("?")
        )?;
        if let Some(tx) = answer["registrationTx"].as_str() {
            outln!("Registration Tx: {tx}")?;
        }
    }
    Ok(())
}
