//! The fallback when no indexer answers: index the registry over RPC into a temporary
//! database with agora's indexer, and ask it the same query in process.

use alloy::primitives::Address;
use erc8004::AgentRecord;
use indexer::{AgentQuery, Indexer, IndexerConfig, TagFilter, TagKind};

use crate::{MarketError, Search};

/// The agents matching `search`'s first skill and domain and its other filters on the
/// registry `rpc` serves ([`Search::matches`] applies the rest): `registry`, or the
/// chain's ERC-8004 deployment. Every registration document is read before answering,
/// from loopback too when the RPC is a local chain.
pub async fn scan(
    rpc: &str,
    registry: Option<Address>,
    search: &Search,
) -> Result<Vec<AgentRecord>, MarketError> {
    let query = query(search)?;
    let dir = tempfile::tempdir().map_err(MarketError::TempDir)?;
    let mut config = IndexerConfig::new(rpc, dir.path().join("scan.db"));
    config.registry = registry;
    config.fetch.allow_private_addresses = indexer::is_local_rpc(rpc);
    let indexer = Indexer::open(config).await?;
    loop {
        let report = indexer.sync().await?;
        if report.indexed_block >= Some(report.target_block) {
            break;
        }
    }
    indexer.fetch_pending().await?;
    let (agents, _total) = indexer.agents(query).await?;
    Ok(agents)
}

/// The indexer query an indexer's API would build from [`Search::params`].
fn query(search: &Search) -> Result<AgentQuery, MarketError> {
    let text = match &search.text {
        Some(text) if text.trim().is_empty() => return Err(MarketError::BlankText),
        Some(text) => Some(text.trim().to_lowercase()),
        None => None,
    };
    let tags = (search.skills.first().map(|s| (TagKind::Skill, s)))
        .into_iter()
        .chain(search.domains.first().map(|d| (TagKind::Domain, d)))
        .map(|(kind, filter)| (kind, TagFilter::new(filter)))
        .collect();
    Ok(AgentQuery {
        owner: search.owner,
        x402: search.x402.then_some(true),
        search: text,
        tags,
        limit: u64::from(search.page_size()),
        ..AgentQuery::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_the_one_the_api_builds() {
        let search = Search {
            skills: vec!["devops_mlops/*".into(), "x".into()],
            domains: vec!["technology/data_science".into()],
            text: Some("  Qwen ".into()),
            ..Search::x402(0)
        };
        let built = query(&search).expect("a query");
        assert_eq!(built.search.as_deref(), Some("qwen"));
        assert_eq!((built.x402, built.limit, built.offset), (Some(true), 1, 0));
        assert_eq!(
            built.tags,
            [
                (TagKind::Skill, TagFilter::Under("devops_mlops".into())),
                (
                    TagKind::Domain,
                    TagFilter::Exact("technology/data_science".into())
                ),
            ]
        );
        let blank = Search {
            text: Some(" ".into()),
            ..Search::default()
        };
        assert!(matches!(query(&blank), Err(MarketError::BlankText)));
    }
}
