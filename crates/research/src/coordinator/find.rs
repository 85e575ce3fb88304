//! The [`Coordinator`] and how it finds workers: a [`Registry`] (an indexer through
//! `market`, or a front end's own lookup) answers a [`Search`] built from OASF skills
//! and domains, and each worker is sized up by its free `/status` and its probed price.
//! Nothing here signs anything; paying is [`Coordinator::submit`]'s.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use erc8004::AgentRecord;
use erc8004::oasf::{Kind, Taxonomy};
use market::{Answer, IndexerClient, MarketError, Page, Search, Unreadable};

use super::workers::{self, AskError, Candidate, Quote, WorkerStatus};

/// How long a worker's `/status` and probe may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(15);

/// The most agents one lookup asks the registry for.
const LOOKUP_LIMIT: u32 = 100;

/// The client the coordinator asks workers with: no proxy (as `agora` always asked
/// them) and [`ASK_TIMEOUT`] per request.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    x402::http::direct().timeout(ASK_TIMEOUT).build()
}

/// Something the coordinator tells its front end while it looks for a worker.
#[derive(Debug)]
pub enum Note<'a> {
    /// A worker could not be sized up and is passed over this round.
    Skipped {
        /// Its endpoint.
        endpoint: &'a str,
        /// Why.
        error: &'a AskError,
    },
    /// A record the registry sent does not read as an agent's, so it is not a candidate.
    Unreadable(&'a Unreadable),
}

/// Someone to tell about the search.
type Notes = Box<dyn Fn(&Note<'_>) + Send + Sync>;

/// The buying side of autoresearch: asks workers their state and price, picks one
/// ([`Coordinator::next_worker`]), pays one run from a `buyer::Buyer` and records it in
/// the results database ([`Coordinator::submit`]).
pub struct Coordinator {
    http: reqwest::Client,
    results: Option<PathBuf>,
    notes: Option<Notes>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("results", &self.results)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// A coordinator asking workers through `http` (see [`http_client`]). It records
    /// nothing until [`Coordinator::record_in`] names a results database.
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            results: None,
            notes: None,
        }
    }

    /// Records every paid run in the results database at `results` (agora's is
    /// `$AGORA_HOME/research.db`, [`super::store::FILE`]), which the leaderboard reads.
    pub fn record_in(mut self, results: impl Into<PathBuf>) -> Self {
        self.results = Some(results.into());
        self
    }

    /// Calls `notes` with each [`Note`] of a search, for a front end to show.
    pub fn on_note(mut self, notes: impl Fn(&Note<'_>) + Send + Sync + 'static) -> Self {
        self.notes = Some(Box::new(notes));
        self
    }

    pub(super) fn note(&self, note: &Note<'_>) {
        if let Some(notes) = &self.notes {
            notes(note);
        }
    }

    pub(super) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(super) fn results(&self) -> Option<&std::path::Path> {
        self.results.as_deref()
    }

    /// A worker's state and price: its `/status`, then the probe.
    pub async fn size_up(&self, endpoint: &str) -> Result<(WorkerStatus, Quote), AskError> {
        let status = workers::status(&self.http, endpoint).await?;
        let quote = workers::probe(&self.http, endpoint, status.budget_seconds).await?;
        Ok((status, quote))
    }

    /// The registered agents that accept x402 and list every one of `skills`, as the
    /// registry's records (unreadable ones are noted, never dropped silently).
    pub async fn agents<R: Registry>(
        &self,
        registry: &R,
        skills: &[String],
    ) -> Result<Vec<AgentRecord>, R::Error> {
        let page = registry.agents(&search(skills)).await?;
        for unreadable in &page.unreadable {
            self.note(&Note::Unreadable(unreadable));
        }
        Ok(page.agents)
    }

    /// The workers among the registered agents: those that accept x402, list every one
    /// of `skills` and have a `web` endpoint.
    pub async fn candidates<R: Registry>(
        &self,
        registry: &R,
        skills: &[String],
    ) -> Result<Vec<Candidate>, R::Error> {
        Ok(workers::candidates(
            &self.agents(registry, skills).await?,
            skills,
        ))
    }
}

/// Where the coordinator looks workers up: the agents a [`Search`] asks for. An
/// [`IndexerClient`] is one; a front end with a fallback (agora's scan over RPC, a paid
/// indexer bought with its wallet) implements it over `market` itself.
pub trait Registry {
    /// Why a lookup failed.
    type Error;

    /// The records of the agents `search` asks for (the indexer applies the first
    /// skill and domain; the coordinator's filter checks every one).
    fn agents(&self, search: &Search) -> impl Future<Output = Result<Page, Self::Error>>;
}

/// Why an indexer could not be asked for workers.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The query failed.
    #[error(transparent)]
    Market(#[from] MarketError),
    /// The indexer sells its answers: buy `url` with a `buyer::Buyer` and read the
    /// answer with [`IndexerClient::read_paid`] in a [`Registry`] of your own.
    #[error("the indexer sells its answers at {url}; buy them with a wallet to look workers up")]
    PaymentRequired {
        /// The query to buy.
        url: reqwest::Url,
    },
}

impl Registry for IndexerClient {
    type Error = LookupError;

    async fn agents(&self, search: &Search) -> Result<Page, LookupError> {
        match IndexerClient::agents(self, search).await? {
            Answer::Page(page) => Ok(page),
            Answer::PaymentRequired(url) => Err(LookupError::PaymentRequired { url }),
        }
    }
}

/// The registry search for workers listing `skills`: x402 sellers, each name a skill
/// or a domain (workers list one of each). A name that is no domain goes to the
/// skills, whose check suggests the nearest ones.
pub fn search(skills: &[String]) -> Search {
    let mut search = Search::x402(LOOKUP_LIMIT);
    for name in skills {
        let domain = Taxonomy::filter(Kind::Skill, name).is_err()
            && Taxonomy::filter(Kind::Domain, name).is_ok();
        if domain {
            search.domains.push(name.clone());
        } else {
            search.skills.push(name.clone());
        }
    }
    search
}

/// A worker to pay: its endpoint and, when it is registered, its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// The offer URL, without a trailing `/`.
    pub endpoint: String,
    /// `(chain id, agent id)` of its registration, when one lists the endpoint.
    pub agent: Option<(u64, u64)>,
}

impl Worker {
    /// The worker at `endpoint`, with its agent when a candidate lists that endpoint.
    pub fn at(endpoint: &str, candidates: &[Candidate]) -> Self {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let agent = candidates
            .iter()
            .find(|c| c.endpoints.contains(&endpoint))
            .map(|c| (c.chain_id, c.agent_id));
        Self { endpoint, agent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::workers::{WORKER_DOMAIN, WORKER_SKILL};

    #[test]
    fn a_domain_goes_to_the_domains_and_anything_else_to_the_skills() {
        let s = search(&[
            WORKER_SKILL.to_string(),
            WORKER_DOMAIN.to_string(),
            "no/such".to_string(),
        ]);
        assert_eq!(s.skills, [WORKER_SKILL, "no/such"]);
        assert_eq!(s.domains, [WORKER_DOMAIN]);
        assert!(s.x402);
    }

    #[test]
    fn a_worker_carries_the_agent_that_lists_its_endpoint() {
        let candidate = Candidate {
            chain_id: 84532,
            agent_id: 0,
            name: "w".into(),
            endpoints: vec!["http://g/services/w".into()],
            skills: vec![],
            domains: vec![],
        };
        let w = Worker::at("http://g/services/w/", std::slice::from_ref(&candidate));
        assert_eq!(w.endpoint, "http://g/services/w");
        assert_eq!(w.agent, Some((84532, 0)));
        assert_eq!(Worker::at("http://other", &[candidate]).agent, None);
    }
}
