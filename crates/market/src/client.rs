//! Asking an 8004scan-shaped indexer (agora's own `agora index`, or a gateway route
//! selling one) for agents. An indexer sold through x402 answers 402: the client says
//! so rather than paying, because paying is the buyer's (its wallet, budgets and
//! ledger); the caller buys the same URL and hands the answer to
//! [`IndexerClient::read_paid`].

use erc8004::AgentRecord;
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::{MarketError, Search};

/// The list route of an 8004scan-shaped API, under the indexer's address.
const AGENTS_PATH: &str = "/api/v1/public/agents";

/// An indexer to ask.
#[derive(Debug, Clone)]
pub struct IndexerClient {
    base: String,
    http: reqwest::Client,
}

/// What an indexer answered a query with.
#[derive(Debug)]
pub enum Answer {
    /// The agents.
    Page(Page),
    /// 402: the indexer sells its answers; buy this URL, then
    /// [`IndexerClient::read_paid`].
    PaymentRequired(Url),
}

/// The agents of one answer, and those whose records could not be read (reported,
/// never dropped silently).
#[derive(Debug, Default)]
pub struct Page {
    /// The records read.
    pub agents: Vec<AgentRecord>,
    /// The records that are not agent records as agora reads them.
    pub unreadable: Vec<Unreadable>,
}

/// A record in an indexer's answer that does not read as an [`AgentRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// `<chain_id>:<agent_id>` as the record gives them.
    pub agent: String,
    /// Why it does not read.
    pub error: String,
}

impl IndexerClient {
    /// An indexer at `base` (a trailing `/` is ignored), asked through `http`.
    pub fn new(base: &Url, http: reqwest::Client) -> Self {
        Self {
            base: base.as_str().trim_end_matches('/').to_string(),
            http,
        }
    }

    /// The indexer's address, as messages show it.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether anything answers the indexer's `/health` (a syncing indexer answers
    /// 503, and still lists what it has).
    pub async fn answers(&self) -> bool {
        let health = format!("{}/health", self.base);
        self.http.get(health).send().await.is_ok()
    }

    /// The agents matching `search`'s first skill and domain and its other filters;
    /// [`Search::matches`] applies the rest.
    pub async fn agents(&self, search: &Search) -> Result<Answer, MarketError> {
        let mut url =
            Url::parse(&format!("{}{AGENTS_PATH}", self.base)).map_err(|e| MarketError::Url {
                base: self.base.clone(),
                message: e.to_string(),
            })?;
        url.query_pairs_mut().extend_pairs(search.params());
        let response =
            self.http
                .get(url.clone())
                .send()
                .await
                .map_err(|source| MarketError::Unreachable {
                    url: url.clone(),
                    source,
                })?;
        let status = response.status();
        if status == StatusCode::PAYMENT_REQUIRED {
            return Ok(Answer::PaymentRequired(url));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|source| MarketError::NotJson {
                url: url.clone(),
                source,
            })?;
        page(&url, status.is_success(), &body).map(Answer::Page)
    }

    /// The agents of an answer bought from `url` (the body the payment delivered).
    pub fn read_paid(url: &Url, body: &[u8]) -> Result<Page, MarketError> {
        let body: Value =
            serde_json::from_slice(body).map_err(|source| MarketError::PaidNotJson {
                url: url.clone(),
                source,
            })?;
        page(url, body.get("items").is_some(), &body)
    }
}

/// The records of an answer, or the indexer's error with its hint.
fn page(url: &Url, success: bool, body: &Value) -> Result<Page, MarketError> {
    if !success {
        return Err(MarketError::Refused {
            error: body["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string(),
            hint: body["hint"].as_str().unwrap_or_default().to_string(),
        });
    }
    let Some(items) = body["items"].as_array() else {
        return Err(MarketError::NoItems { url: url.clone() });
    };
    let mut page = Page::default();
    for item in items {
        match serde_json::from_value::<AgentRecord>(item.clone()) {
            Ok(record) => page.agents.push(record),
            Err(e) => page.unreadable.push(Unreadable {
                agent: format!("{}:{}", item["chain_id"], item["agent_id"]),
                error: e.to_string(),
            }),
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::tests::record;
    use axum::Router;
    use axum::http::StatusCode as Status;
    use axum::routing::get;
    use serde_json::json;

    /// An indexer that answers every list query with `status` and `body`.
    async fn indexer(status: u16, body: Value) -> (testkit::loopback::Server, IndexerClient) {
        let status = Status::from_u16(status).expect("a status");
        let server = testkit::loopback::serve(Router::new().route(
            AGENTS_PATH,
            get(move || async move { (status, axum::Json(body)) }),
        ))
        .await;
        let base: Url = format!("{}/", server.url()).parse().expect("a URL");
        let client = IndexerClient::new(&base, testkit::http());
        (server, client)
    }

    #[tokio::test]
    async fn records_are_typed_and_unreadable_ones_reported() {
        let good = serde_json::to_value(record(7, &[], &[], &[])).expect("json");
        let bad = json!({"chain_id": 84532, "agent_id": 8, "name": 3});
        let (_server, client) = indexer(200, json!({"items": [good, bad], "total": 2})).await;
        assert!(!client.base().ends_with('/'));
        let Answer::Page(page) = client.agents(&Search::x402(5)).await.expect("answer") else {
            panic!("a page");
        };
        assert_eq!(page.agents.len(), 1);
        assert_eq!(page.agents[0].agent_id, 7);
        assert_eq!(page.unreadable.len(), 1);
        assert_eq!(page.unreadable[0].agent, "84532:8");
    }

    #[tokio::test]
    async fn refusals_payment_and_foreign_answers_are_told_apart() {
        let (_server, client) = indexer(400, json!({"error": "bad skill", "hint": "send x"})).await;
        let e = client
            .agents(&Search::default())
            .await
            .expect_err("refused");
        assert_eq!(
            e.to_string(),
            "the indexer refused the query: bad skill (send x)"
        );

        let (_server, client) = indexer(402, json!({})).await;
        let search = Search {
            skills: vec!["devops_mlops/*".into()],
            ..Search::x402(3)
        };
        let Answer::PaymentRequired(url) = client.agents(&search).await.expect("answer") else {
            panic!("402 is a payment to make");
        };
        assert_eq!(
            url.query(),
            Some("limit=3&skill=devops_mlops%2F*&x402=true")
        );
        let bought = IndexerClient::read_paid(&url, br#"{"items": []}"#).expect("a page");
        assert!(bought.agents.is_empty());
        let e = IndexerClient::read_paid(&url, br#"{"error": "no"}"#).expect_err("refused");
        assert_eq!(e.to_string(), "the indexer refused the query: no ()");
        assert!(matches!(
            IndexerClient::read_paid(&url, b"<html>"),
            Err(MarketError::PaidNotJson { .. })
        ));

        let (_server, client) = indexer(200, json!({"agents": []})).await;
        let e = client
            .agents(&Search::default())
            .await
            .expect_err("no items");
        assert!(matches!(e, MarketError::NoItems { .. }), "{e}");
    }
}
