//! Reading the index: filtered, sorted pages of agents, single agents and totals, for
//! the API and for embedders ([`crate::Indexer::agents`]). Skill, domain and protocol
//! filters run on the tag table's index.

use std::collections::BTreeMap;

use alloy::primitives::{Address, Bytes};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use crate::record::{AgentRecord, ChainStats, FetchError, FetchStatus, MetadataValue, Stats};
use crate::store::{Store, StoreError, address_text, int, json, parse, uint};

/// A skill, domain or protocol filter: one name, or a name and everything under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// Exactly this name.
    Exact(String),
    /// This name and every name under it (`prefix/*`).
    Under(String),
}

impl TagFilter {
    /// Reads a filter as `erc8004::matches_filter` does: `prefix/*` is the prefix and
    /// everything under it, anything else one exact name. Checking the name against
    /// the taxonomy is the caller's (`erc8004::Taxonomy::filter`).
    pub fn new(filter: &str) -> Self {
        match filter.strip_suffix("/*") {
            Some(prefix) => TagFilter::Under(prefix.to_string()),
            None => TagFilter::Exact(filter.to_string()),
        }
    }
}

/// Which tag table rows a [`TagFilter`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// OASF skills.
    Skill,
    /// OASF domains.
    Domain,
    /// Service names, lowercased (`web`, `mcp`, `a2a`, ...).
    Protocol,
}

impl TagKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TagKind::Skill => "skill",
            TagKind::Domain => "domain",
            TagKind::Protocol => "protocol",
        }
    }
}

/// List order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Newest registrations first.
    #[default]
    RegisteredDesc,
    /// Oldest registrations first.
    RegisteredAsc,
    /// By name, case-insensitively; agents without one last.
    Name,
    /// Most recently changed on chain first.
    UpdatedDesc,
}

/// A list query: every filter set must hold. The API builds one from its parameters;
/// embedders build one directly.
#[derive(Debug, Clone, Default)]
pub struct AgentQuery {
    /// Only this chain.
    pub chain_id: Option<u64>,
    /// Only agents owned by this address.
    pub owner: Option<Address>,
    /// Only agents that do (or do not) accept x402.
    pub x402: Option<bool>,
    /// A substring of the name or description, lowercased (the index is).
    pub search: Option<String>,
    /// Tag filters; all must match.
    pub tags: Vec<(TagKind, TagFilter)>,
    /// The order of the list.
    pub sort: Sort,
    /// Agents to skip before the page.
    pub offset: u64,
    /// Page size.
    pub limit: u64,
}

/// How a tag filter is joined to the agents; see [`Store::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagJoin {
    In,
    Exists,
}

/// Matches at least 1 in this many agents count as common (see [`Store::list`]).
const DENSE_SHARE: i64 = 20;

const AGENT_COLUMNS: &str = "a.chain_id, a.agent_id, a.registry, a.owner, a.uri, a.metadata,
    a.registered_block, a.registered_tx, a.updated_block, a.registration, a.name,
    a.description, a.image, a.x402, a.active, a.service_type, a.skills, a.domains,
    a.protocols, a.services, a.fetch_status, a.fetch_error_kind, a.fetch_error, a.fetched_at";

impl Store {
    /// One page of agents matching `query`, and how many match in all.
    ///
    /// Tag filters can be written two ways, and each is fast where the other is slow:
    /// driven from the tag index (`IN`: cost grows with the matches, which are then
    /// sorted) or checked per agent while walking the sort order (`EXISTS`: stops after
    /// one page when matches are common, walks everything when they are rare). The
    /// count is taken the first way, and the page then uses the second way only when
    /// the matches are a large enough share of all agents.
    pub(crate) fn list(&self, query: &AgentQuery) -> Result<(Vec<AgentRecord>, u64), StoreError> {
        self.read(|conn| {
            let (clause, args) = where_clause(query, TagJoin::In);
            let total: i64 = conn
                .prepare_cached(&format!("SELECT COUNT(*) FROM agents a WHERE {clause}"))?
                .query_row(params_from_iter(args.iter()), |row| row.get(0))?;
            let join = if query.tags.is_empty() {
                TagJoin::In
            } else {
                let all: i64 = conn
                    .prepare_cached("SELECT COUNT(*) FROM agents")?
                    .query_row([], |row| row.get(0))?;
                if total.saturating_mul(DENSE_SHARE) >= all {
                    TagJoin::Exists
                } else {
                    TagJoin::In
                }
            };
            Ok((page(conn, query, join)?, uint(total, "count")?))
        })
    }

    /// One agent.
    pub(crate) fn get(
        &self,
        chain_id: u64,
        agent_id: u64,
    ) -> Result<Option<AgentRecord>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {AGENT_COLUMNS} FROM agents a WHERE a.chain_id = ?1 AND a.agent_id = ?2"
            ))?
            .query_row(params![int(chain_id)?, int(agent_id)?], RawAgent::from_row)
            .optional()?
            .map(RawAgent::into_record)
            .transpose()
        })
    }

    /// Totals for `/stats`.
    pub(crate) fn stats(&self) -> Result<Stats, StoreError> {
        self.read(|conn| {
            let (agents, users, x402, active): (i64, i64, i64, i64) = conn.query_row(
                "SELECT COUNT(*), COUNT(DISTINCT owner), COALESCE(SUM(x402), 0),
                        COALESCE(SUM(active), 0) FROM agents",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )?;
            let events: i64 =
                conn.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
            let mut fetch = BTreeMap::new();
            let mut stmt =
                conn.prepare("SELECT fetch_status, COUNT(*) FROM agents GROUP BY fetch_status")?;
            for row in stmt.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })? {
                let (status, count) = row?;
                fetch.insert(status, uint(count, "count")?);
            }
            let mut stmt = conn
                .prepare("SELECT chain_id, registry, cursor_block FROM chains ORDER BY chain_id")?;
            let chains = stmt
                .query_map([], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                    ))
                })?
                .map(|row| {
                    let (chain_id, registry, block) = row?;
                    Ok(ChainStats {
                        chain_id: uint(chain_id, "chain id")?,
                        registry: parse(&registry, "registry")?,
                        indexed_block: block.map(|b| uint(b, "block")).transpose()?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Stats {
                total_agents: uint(agents, "count")?,
                total_users: uint(users, "count")?,
                x402_agents: uint(x402, "count")?,
                active_agents: uint(active, "count")?,
                total_events: uint(events, "count")?,
                fetch,
                chains,
            })
        })
    }
}

/// The agents of one page, with tag filters joined as `join` says.
fn page(
    conn: &Connection,
    query: &AgentQuery,
    join: TagJoin,
) -> Result<Vec<AgentRecord>, StoreError> {
    let order = match query.sort {
        Sort::RegisteredDesc => "a.registered_block DESC, a.chain_id DESC, a.agent_id DESC",
        Sort::RegisteredAsc => "a.registered_block ASC, a.chain_id ASC, a.agent_id ASC",
        Sort::Name => {
            "a.name = '' ASC, a.name COLLATE NOCASE ASC, a.registered_block ASC, a.agent_id ASC"
        }
        Sort::UpdatedDesc => "a.updated_block DESC, a.chain_id DESC, a.agent_id DESC",
    };
    let (clause, mut args) = where_clause(query, join);
    args.push(Value::Integer(localdb::codec::saturating_int(query.limit)));
    args.push(Value::Integer(localdb::codec::saturating_int(query.offset)));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents a WHERE {clause} ORDER BY {order} LIMIT ? OFFSET ?"
    ))?;
    let rows = stmt.query_map(params_from_iter(args.iter()), RawAgent::from_row)?;
    rows.map(|row| row?.into_record()).collect()
}

/// The WHERE clause of a list query and its parameters. A `prefix/*` filter matches
/// the prefix itself and every name starting with `prefix/`, which in byte order is
/// the range `[prefix/, prefix0)` ('0' follows '/'), so it runs on the tag index; the
/// tests check this agrees with `erc8004::oasf::matches_filter`.
fn where_clause(query: &AgentQuery, join: TagJoin) -> (String, Vec<Value>) {
    let mut clauses = vec!["1 = 1".to_string()];
    let mut args = Vec::new();
    if let Some(chain_id) = query.chain_id {
        clauses.push("a.chain_id = ?".into());
        args.push(Value::Integer(localdb::codec::saturating_int(chain_id)));
    }
    if let Some(owner) = &query.owner {
        clauses.push("a.owner = ?".into());
        args.push(Value::Text(address_text(owner)));
    }
    if let Some(x402) = query.x402 {
        clauses.push("a.x402 = ?".into());
        args.push(Value::Integer(i64::from(x402)));
    }
    if let Some(search) = &query.search {
        clauses.push("instr(a.search_text, ?) > 0".into());
        args.push(Value::Text(search.clone()));
    }
    for (kind, filter) in &query.tags {
        let (condition, values) = tag_condition(filter);
        let kind = kind.as_str();
        clauses.push(match join {
            TagJoin::In => format!(
                "(a.chain_id, a.agent_id) IN (SELECT t.chain_id, t.agent_id FROM tags t
                  WHERE t.kind = '{kind}' AND {condition})"
            ),
            TagJoin::Exists => format!(
                "EXISTS (SELECT 1 FROM tags t WHERE t.chain_id = a.chain_id
                  AND t.agent_id = a.agent_id AND t.kind = '{kind}' AND {condition})"
            ),
        });
        args.extend(values);
    }
    (clauses.join(" AND "), args)
}

fn tag_condition(filter: &TagFilter) -> (&'static str, Vec<Value>) {
    match filter {
        TagFilter::Exact(name) => ("t.value = ?", vec![Value::Text(name.clone())]),
        TagFilter::Under(prefix) => (
            "(t.value = ? OR (t.value >= ? AND t.value < ?))",
            vec![
                Value::Text(prefix.clone()),
                Value::Text(format!("{prefix}/")),
                Value::Text(format!("{prefix}0")),
            ],
        ),
    }
}

/// An agent row as read, before its JSON columns are parsed.
struct RawAgent {
    chain_id: i64,
    agent_id: i64,
    registry: String,
    owner: String,
    uri: String,
    metadata: String,
    registered_block: i64,
    registered_tx: String,
    updated_block: i64,
    registration: Option<String>,
    name: String,
    description: String,
    image: Option<String>,
    x402: bool,
    active: bool,
    service_type: Option<String>,
    skills: String,
    domains: String,
    protocols: String,
    services: String,
    fetch_status: String,
    fetch_error_kind: Option<String>,
    fetch_error: Option<String>,
    fetched_at: Option<i64>,
}

impl RawAgent {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            chain_id: row.get(0)?,
            agent_id: row.get(1)?,
            registry: row.get(2)?,
            owner: row.get(3)?,
            uri: row.get(4)?,
            metadata: row.get(5)?,
            registered_block: row.get(6)?,
            registered_tx: row.get(7)?,
            updated_block: row.get(8)?,
            registration: row.get(9)?,
            name: row.get(10)?,
            description: row.get(11)?,
            image: row.get(12)?,
            x402: row.get(13)?,
            active: row.get(14)?,
            service_type: row.get(15)?,
            skills: row.get(16)?,
            domains: row.get(17)?,
            protocols: row.get(18)?,
            services: row.get(19)?,
            fetch_status: row.get(20)?,
            fetch_error_kind: row.get(21)?,
            fetch_error: row.get(22)?,
            fetched_at: row.get(23)?,
        })
    }

    fn into_record(self) -> Result<AgentRecord, StoreError> {
        let chain_id = uint(self.chain_id, "chain id")?;
        let agent_id = uint(self.agent_id, "agent id")?;
        let registry: Address = parse(&self.registry, "registry")?;
        let metadata: BTreeMap<String, Bytes> = json(&self.metadata, "metadata")?;
        Ok(AgentRecord {
            id: format!("{chain_id}:{}:{agent_id}", address_text(&registry)),
            chain_id,
            agent_id,
            agent_registry: erc8004::agent_registry_id(chain_id, registry),
            owner_address: parse(&self.owner, "owner")?,
            uri: self.uri,
            name: self.name,
            description: self.description,
            image_url: self.image,
            active: self.active,
            x402_supported: self.x402,
            service_type: self.service_type,
            supported_protocols: json(&self.protocols, "protocols")?,
            oasf_skills: json(&self.skills, "skills")?,
            oasf_domains: json(&self.domains, "domains")?,
            services: json(&self.services, "services")?,
            metadata: metadata
                .into_iter()
                .map(|(k, v)| (k, MetadataValue::new(v)))
                .collect(),
            registration: self
                .registration
                .as_deref()
                .map(|r| json(r, "registration"))
                .transpose()?,
            fetch_status: FetchStatus::parse(&self.fetch_status).ok_or_else(|| {
                StoreError::Corrupt(format!("fetch status {:?}", self.fetch_status))
            })?,
            fetch_error: self.fetch_error_kind.map(|kind| FetchError {
                kind,
                message: self.fetch_error.unwrap_or_default(),
            }),
            fetched_at: self.fetched_at.map(|t| uint(t, "time")).transpose()?,
            registered_block: uint(self.registered_block, "block")?,
            registered_tx: parse(&self.registered_tx, "tx hash")?,
            updated_block: uint(self.updated_block, "block")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::B256;
    use erc8004::{Registration, Taxonomy, matches_filter};

    use crate::events::{ChainEvent, Change};
    use crate::store::{Batch, Cursor, FetchOutcome};

    /// Both ways of joining tag filters give the same pages, in every order and at
    /// every offset, so the choice between them only changes speed.
    #[test]
    fn both_tag_joins_give_the_same_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("index.db")).unwrap();
        store.bind(1, Address::repeat_byte(1)).unwrap();
        let skills = [
            "devops_mlops/model_versioning",
            "devops_mlops/monitoring_alerting",
            "natural_language_processing/natural_language_generation/text_completion",
        ];
        let mut events = Vec::new();
        for id in 0..60u64 {
            let block = 1 + id / 7;
            events.push(ChainEvent {
                block,
                block_hash: B256::with_last_byte(block as u8),
                log_index: id,
                tx_hash: B256::with_last_byte(id as u8),
                agent_id: id,
                change: Change::Registered {
                    uri: format!("ipfs://{id}"),
                    owner: Address::with_last_byte((id % 4) as u8),
                },
            });
        }
        store
            .apply(
                1,
                &Batch {
                    events,
                    hashes: vec![],
                    cursor: Cursor {
                        block: 10,
                        hash: B256::ZERO,
                    },
                    keep_from: 0,
                },
            )
            .unwrap();
        let results: Vec<_> = store
            .pending_fetches(1, 100)
            .unwrap()
            .into_iter()
            .map(|p| {
                let id = p.agent_id as usize;
                let doc: Registration = serde_json::from_value(serde_json::json!({
                    "name": format!("agent {}", 60 - id),
                    "services": [{"name": "OASF", "skills": [skills[id % 3], skills[(id / 3) % 3]]}]
                }))
                .unwrap();
                (p, FetchOutcome::Fetched(Box::new(doc)))
            })
            .collect();
        store.record_fetches(&results, 1).unwrap();

        let filters = [
            TagFilter::Exact(skills[0].into()),
            TagFilter::Under("devops_mlops".into()),
            TagFilter::Under("natural_language_processing".into()),
            TagFilter::Exact("nothing/here".into()),
        ];
        let sorts = [
            Sort::RegisteredDesc,
            Sort::RegisteredAsc,
            Sort::Name,
            Sort::UpdatedDesc,
        ];
        for filter in &filters {
            for sort in sorts {
                for offset in [0, 7, 35] {
                    let query = AgentQuery {
                        tags: vec![(TagKind::Skill, filter.clone())],
                        owner: (offset == 7).then(|| Address::with_last_byte(2)),
                        sort,
                        offset,
                        limit: 10,
                        ..AgentQuery::default()
                    };
                    let ids = |join| -> Vec<u64> {
                        store
                            .read(|conn| page(conn, &query, join))
                            .unwrap()
                            .iter()
                            .map(|a| a.agent_id)
                            .collect()
                    };
                    assert_eq!(ids(TagJoin::In), ids(TagJoin::Exists), "{query:?}");
                }
            }
        }
        let (items, total) = store
            .list(&AgentQuery {
                tags: vec![(TagKind::Skill, filters[1].clone())],
                limit: 100,
                ..AgentQuery::default()
            })
            .unwrap();
        assert_eq!(items.len() as u64, total);
        assert_eq!(total, 60 - 60 / 9, "every agent with a DevOps skill");
    }

    /// The SQL range used for `prefix/*` selects exactly what `matches_filter` accepts,
    /// over the whole taxonomy plus names built to sit at the range's edges.
    #[test]
    fn tag_ranges_agree_with_matches_filter() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE tags (value TEXT)")
            .unwrap();
        let mut names: Vec<String> = Taxonomy::skills()
            .iter()
            .chain(Taxonomy::domains())
            .map(|e| e.name.clone())
            .collect();
        names.extend(
            [
                "a/b",
                "a/b/",
                "a/b/c",
                "a/bc",
                "a/b0",
                "a/b.",
                "a/b/\u{ff}",
                "a",
                "b/a/b",
            ]
            .map(String::from),
        );
        for name in &names {
            conn.execute("INSERT INTO tags VALUES (?1)", [name])
                .unwrap();
        }
        let filters = [
            "a/b/*",
            "a/b",
            "a/*",
            "natural_language_processing/*",
            "natural_language_processing/natural_language_generation/*",
            "devops_mlops/model_versioning",
            "research_and_development/*",
            "technology/*",
        ];
        for filter in filters {
            let (condition, args) = tag_condition(&TagFilter::new(filter));
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT t.value FROM tags t WHERE {condition} ORDER BY 1"
                ))
                .unwrap();
            let got: Vec<String> = stmt
                .query_map(params_from_iter(args.iter()), |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let mut expected: Vec<String> = names
                .iter()
                .filter(|n| matches_filter(filter, n))
                .cloned()
                .collect();
            expected.sort();
            assert_eq!(got, expected, "{filter}");
            assert!(!got.is_empty(), "{filter} matches something");
        }
    }
}
