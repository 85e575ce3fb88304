//! The 8004scan-shaped HTTP API over the index:
//!
//! - `GET /api/v1/public/agents`: one page of agents; `page`, `limit` (default 20, at
//!   most 100), `chainId`, `protocol`, `search`, `skill` and `domain` (exact or
//!   `prefix/*`), `x402`, `ownerAddress`, `sort` (`registered_desc`, `registered_asc`,
//!   `name`, `updated_desc`; 8004scan's `sortBy`/`sortOrder` are understood too);
//! - `GET /api/v1/public/agents/search?q=`: the same, `q` required;
//! - `GET /api/v1/public/agents/{chainId}/{agentId}`: one agent, 404 when unknown;
//! - `GET /api/v1/public/stats`: totals;
//! - `GET /health`: 503 until the index has caught up with head minus confirmations.
//!
//! Lists answer `{items, total, page, limit}`; a bad parameter answers 400 with
//! `{error, hint}` naming the parameter and what to send instead.

use std::sync::Arc;

use alloy::primitives::Address;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::query::{AgentQuery, Sort, TagFilter, TagKind};
use crate::record::AgentPage;
use crate::store::{Store, StoreError};
use crate::sync::Status;

/// Page size when none is asked for.
pub(crate) const DEFAULT_LIMIT: u64 = 20;

/// Largest page size.
pub(crate) const MAX_LIMIT: u64 = 100;

const LIST_PARAMETERS: &str =
    "page, limit, chainId, protocol, search, skill, domain, x402, ownerAddress, sort";

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) store: Arc<Store>,
    pub(crate) status: Arc<Status>,
    pub(crate) chain_id: u64,
    pub(crate) registry: Address,
    pub(crate) confirmations: u64,
}

/// The API as an axum router.
pub(crate) fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/public/agents", get(list))
        .route("/api/v1/public/agents/search", get(search))
        .route("/api/v1/public/agents/{chain_id}/{agent_id}", get(detail))
        .route("/api/v1/public/stats", get(stats))
        .fallback(unknown_route)
        .layer(axum::middleware::map_response(allow_any_origin))
        .with_state(state)
}

/// Lets browser dashboards and agents on other origins read the public API.
async fn allow_any_origin(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        axum::http::HeaderValue::from_static("*"),
    );
    response
}

/// A JSON error answer.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    error: String,
    hint: String,
}

impl ApiError {
    fn bad(error: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: error.into(),
            hint: hint.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"error": self.error, "hint": self.hint})),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: e.to_string(),
            hint: "retry; if it persists, check the indexer's log".into(),
        }
    }
}

/// Runs a database call off the async workers.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: format!("the query did not finish: {e}"),
            hint: "retry".into(),
        })?
        .map_err(ApiError::from)
}

async fn health(State(state): State<ApiState>) -> Response {
    let s = state.status.snapshot();
    let status = if s.caught_up {
        "ok"
    } else if s.head_block.is_none() {
        "starting"
    } else {
        "syncing"
    };
    let code = if s.caught_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "chain_id": state.chain_id,
        "registry": state.registry,
        "confirmations": state.confirmations,
        "head_block": s.head_block,
        "target_block": s.target_block,
        "indexed_block": s.indexed_block,
        "caught_up": s.caught_up,
        "reorgs": s.reorgs,
        "last_error": s.last_error,
    });
    (code, axum::Json(body)).into_response()
}

type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

async fn list(State(state): State<ApiState>, query: Pairs) -> Result<Response, ApiError> {
    page(&state, query, false).await
}

async fn search(State(state): State<ApiState>, query: Pairs) -> Result<Response, ApiError> {
    page(&state, query, true).await
}

async fn page(state: &ApiState, query: Pairs, need_q: bool) -> Result<Response, ApiError> {
    let Query(pairs) = query.map_err(|e| {
        ApiError::bad(
            format!("the query string cannot be read: {e}"),
            "percent-encode parameter values, e.g. skill=devops_mlops%2Fmodel_versioning",
        )
    })?;
    let (query, page, limit) = parse_list(&pairs, need_q)?;
    let (items, total) = blocking(&state.store, move |s| s.list(&query)).await?;
    Ok(axum::Json(AgentPage {
        items,
        total,
        page,
        limit,
    })
    .into_response())
}

async fn detail(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((chain, agent)) = path.map_err(|e| {
        ApiError::bad(
            e.body_text(),
            "use /api/v1/public/agents/<chainId>/<agentId>",
        )
    })?;
    let chain_id = number("chainId", &chain)?;
    let agent_id = number("agentId", &agent)?;
    match blocking(&state.store, move |s| s.get(chain_id, agent_id)).await? {
        Some(record) => Ok(axum::Json(record).into_response()),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            error: format!("no agent {agent_id} on chain {chain_id} in this index"),
            hint: format!(
                "list the indexed agents with GET /api/v1/public/agents?chainId={chain_id}"
            ),
        }),
    }
}

async fn stats(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let stats = blocking(&state.store, Store::stats).await?;
    Ok(axum::Json(stats).into_response())
}

async fn unknown_route() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        error: "no such endpoint".into(),
        hint: "the API serves /api/v1/public/agents, /api/v1/public/agents/search?q=, /api/v1/public/agents/<chainId>/<agentId>, /api/v1/public/stats and /health".into(),
    }
}

fn number(name: &str, value: &str) -> Result<u64, ApiError> {
    value.trim().parse().map_err(|_| {
        ApiError::bad(
            format!("{name} {value:?} is not a non-negative integer"),
            format!("send {name} as a decimal number, e.g. {name}=84532"),
        )
    })
}

fn non_empty<'a>(name: &str, value: &'a str, example: &str) -> Result<&'a str, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::bad(
            format!("{name} is empty"),
            format!("leave {name} out, or send e.g. {name}={example}"),
        ));
    }
    Ok(value)
}

/// `name` or `prefix/*`, as `erc8004::oasf::matches_filter` reads it.
fn tag_filter(name: &str, value: &str, example: &str) -> Result<TagFilter, ApiError> {
    let value = non_empty(name, value, example)?;
    let bad = |why: &str| {
        ApiError::bad(
            format!("{name} {value:?} {why}"),
            format!("send a full OASF name or a category followed by /*, e.g. {name}={example}"),
        )
    };
    if value.contains(char::is_whitespace) {
        return Err(bad("contains whitespace"));
    }
    match value.strip_suffix("/*") {
        Some(prefix) if prefix.is_empty() || prefix.contains('*') => {
            Err(bad("has no prefix before /*"))
        }
        Some(prefix) => Ok(TagFilter::Under(prefix.to_string())),
        None if value.contains('*') => Err(bad("uses * other than as a trailing /*")),
        None => Ok(TagFilter::Exact(value.to_string())),
    }
}

fn boolean(name: &str, value: &str) -> Result<bool, ApiError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad(
            format!("{name} {value:?} is not a boolean"),
            format!("send {name}=true or {name}=false"),
        )),
    }
}

/// Reads list parameters into a store query plus the page and limit echoed back.
fn parse_list(
    pairs: &[(String, String)],
    need_q: bool,
) -> Result<(AgentQuery, u64, u64), ApiError> {
    let mut query = AgentQuery::default();
    let mut page = 1;
    let mut limit = DEFAULT_LIMIT;
    let mut sort_by: Option<String> = None;
    let mut descending = true;
    for (key, value) in pairs {
        match key.as_str() {
            "page" => {
                page = number("page", value)?;
                if page == 0 {
                    return Err(ApiError::bad(
                        "page 0 does not exist",
                        "pages count from 1: page=1",
                    ));
                }
            }
            "limit" => {
                limit = number("limit", value)?;
                if !(1..=MAX_LIMIT).contains(&limit) {
                    return Err(ApiError::bad(
                        format!("limit {limit} is out of range"),
                        format!("send a limit from 1 to {MAX_LIMIT} and use page for more"),
                    ));
                }
            }
            "chainId" | "chain_id" => query.chain_id = Some(number("chainId", value)?),
            "protocol" => {
                let protocol = non_empty("protocol", value, "MCP")?;
                query
                    .tags
                    .push((TagKind::Protocol, TagFilter::Exact(protocol.to_lowercase())));
            }
            "search" | "q" => {
                query.search = Some(non_empty(key, value, "qwen")?.to_lowercase());
            }
            "skill" => query.tags.push((
                TagKind::Skill,
                tag_filter("skill", value, "natural_language_processing/*")?,
            )),
            "domain" => query.tags.push((
                TagKind::Domain,
                tag_filter("domain", value, "technology/data_science")?,
            )),
            "x402" => query.x402 = Some(boolean("x402", value)?),
            "ownerAddress" | "owner" => {
                let owner: Address = value.trim().parse().map_err(|_| {
                    ApiError::bad(
                        format!("ownerAddress {value:?} is not an address"),
                        "send a 0x-prefixed 20-byte hex address",
                    )
                })?;
                query.owner = Some(owner);
            }
            "sort" => {
                query.sort = match value.trim() {
                    "registered_desc" => Sort::RegisteredDesc,
                    "registered_asc" => Sort::RegisteredAsc,
                    "name" => Sort::Name,
                    "updated_desc" => Sort::UpdatedDesc,
                    other => {
                        return Err(ApiError::bad(
                            format!("sort {other:?} is not known"),
                            "send sort=registered_desc, registered_asc, name or updated_desc",
                        ));
                    }
                };
            }
            "sortBy" => sort_by = Some(value.trim().to_string()),
            "sortOrder" => {
                descending = match value.trim().to_ascii_lowercase().as_str() {
                    "desc" => true,
                    "asc" => false,
                    _ => {
                        return Err(ApiError::bad(
                            format!("sortOrder {value:?} is not asc or desc"),
                            "send sortOrder=asc or sortOrder=desc",
                        ));
                    }
                };
            }
            other => {
                return Err(ApiError::bad(
                    format!("unknown parameter {other:?}"),
                    format!("known parameters: {LIST_PARAMETERS}"),
                ));
            }
        }
    }
    if let Some(by) = sort_by {
        query.sort = match (by.as_str(), descending) {
            ("name", _) => Sort::Name,
            ("updated_at", _) => Sort::UpdatedDesc,
            ("created_at" | "token_id" | "registered", true) => Sort::RegisteredDesc,
            ("created_at" | "token_id" | "registered", false) => Sort::RegisteredAsc,
            (other, _) => {
                return Err(ApiError::bad(
                    format!("sortBy {other:?} is not known"),
                    "send sort=registered_desc, registered_asc, name or updated_desc",
                ));
            }
        };
    }
    if need_q && query.search.is_none() {
        return Err(ApiError::bad(
            "q is required",
            "send the words to look for in names and descriptions: /api/v1/public/agents/search?q=qwen",
        ));
    }
    query.limit = limit;
    query.offset = (page - 1).saturating_mul(limit);
    Ok((query, page, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error(list: &[(&str, &str)]) -> ApiError {
        parse_list(&pairs(list), false).unwrap_err()
    }

    #[test]
    fn parameters_become_a_query() {
        let (query, page, limit) = parse_list(
            &pairs(&[
                ("page", "3"),
                ("limit", "10"),
                ("chainId", "84532"),
                ("skill", "natural_language_processing/*"),
                ("domain", "technology/data_science"),
                ("protocol", "MCP"),
                ("search", "  Qwen "),
                ("x402", "true"),
                ("ownerAddress", "0x00000000000000000000000000000000000000aa"),
                ("sort", "name"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!((page, limit, query.offset, query.limit), (3, 10, 20, 10));
        assert_eq!(query.chain_id, Some(84532));
        assert_eq!(query.search.as_deref(), Some("qwen"));
        assert_eq!(query.x402, Some(true));
        assert_eq!(query.sort, Sort::Name);
        assert_eq!(
            query.tags,
            [
                (
                    TagKind::Skill,
                    TagFilter::Under("natural_language_processing".into())
                ),
                (
                    TagKind::Domain,
                    TagFilter::Exact("technology/data_science".into())
                ),
                (TagKind::Protocol, TagFilter::Exact("mcp".into())),
            ]
        );
        let (defaults, page, limit) = parse_list(&[], false).unwrap();
        assert_eq!((page, limit, defaults.offset), (1, DEFAULT_LIMIT, 0));
        assert_eq!(defaults.sort, Sort::RegisteredDesc);

        let (compat, ..) = parse_list(
            &pairs(&[("sortBy", "created_at"), ("sortOrder", "asc")]),
            false,
        )
        .unwrap();
        assert_eq!(compat.sort, Sort::RegisteredAsc);
    }

    #[test]
    fn bad_values_say_what_to_send() {
        let cases: [(&[(&str, &str)], &str); 10] = [
            (&[("page", "0")], "page=1"),
            (&[("page", "x")], "decimal"),
            (&[("limit", "101")], "from 1 to 100"),
            (&[("limit", "0")], "from 1 to 100"),
            (&[("x402", "maybe")], "x402=true"),
            (&[("ownerAddress", "0x12")], "20-byte"),
            (&[("skill", "*")], "category followed by /*"),
            (&[("domain", "tech*")], "category followed by /*"),
            (&[("sort", "stars")], "registered_desc"),
            (&[("skills", "a")], "known parameters"),
        ];
        for (list, hint) in cases {
            let e = error(list);
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.hint.contains(hint), "{list:?}: {} / {}", e.error, e.hint);
        }
        let e = parse_list(&[], true).unwrap_err();
        assert!(e.error.contains("q is required"));
        assert!(parse_list(&pairs(&[("q", "x")]), true).is_ok());
    }
}
