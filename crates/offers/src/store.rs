//! The offer store: SQLite in `$AGORA_HOME/agora.db`, one transaction per change, and
//! an event log per offer so `agora sell status` can say what happened and when. It is
//! the embedded implementation of [`OfferStore`], the reconciler's view of a store.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use x402::time::{format_rfc3339, unix_now};

use crate::offer_store::{AgentRecord, OfferStore};
use crate::spec::{OfferStatus, ServiceOffer};
use crate::validate::{OfferName, ValidationError, check_path};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("offer database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row does not parse.
    #[error("offer database holds an unreadable offer: {0}")]
    Corrupt(String),
    /// The change was refused.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// One line of an offer's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 time.
    pub at: String,
    /// `created`, `updated`, `condition`, `deleted`...
    pub kind: String,
    /// What happened.
    pub message: String,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// A new offer.
    Created,
    /// The spec changed; generation bumped.
    Updated,
    /// Same spec as stored.
    Unchanged,
}

/// SQLite-backed offers, events and settings.
pub struct Store {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS offers (
    name       TEXT PRIMARY KEY,
    manifest   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    offer   TEXT NOT NULL,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_offer ON events (offer, id);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

fn offer_path(offer: &ServiceOffer) -> String {
    offer
        .spec
        .path
        .clone()
        .unwrap_or_else(|| format!("/services/{}", offer.metadata.name))
        .trim_end_matches('/')
        .to_string()
}

fn read_offer(manifest: &str) -> Result<ServiceOffer, StoreError> {
    serde_json::from_str(manifest).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn write_offer(offer: &ServiceOffer) -> Result<String, StoreError> {
    serde_json::to_string(offer).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn log(tx: &Connection, offer: &str, kind: &str, message: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO events (offer, at, kind, message) VALUES (?1, ?2, ?3, ?4)",
        params![
            offer,
            localdb::codec::saturating_int(unix_now()),
            kind,
            message
        ],
    )?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = localdb::open(path, SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn)
    }

    /// Every offer, by name.
    pub fn list(&self) -> Result<Vec<ServiceOffer>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare("SELECT manifest FROM offers ORDER BY name")?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
            rows.map(|r| read_offer(&r?)).collect()
        })
    }

    /// One offer.
    pub fn get(&self, name: &str) -> Result<Option<ServiceOffer>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT manifest FROM offers WHERE name = ?1",
                [name],
                |row| row.get::<_, String>(0),
            )
            .optional()?
            .map(|m| read_offer(&m))
            .transpose()
        })
    }

    /// Creates or replaces the spec of `offer` (status is kept), refusing a path
    /// another offer already uses.
    pub fn put(&self, offer: &ServiceOffer) -> Result<(ServiceOffer, Change), StoreError> {
        let name = OfferName::parse(&offer.metadata.name)?;
        let path = check_path(&offer_path(offer))?;
        self.with(|conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare("SELECT manifest FROM offers WHERE name != ?1")?;
                let others = stmt.query_map([name.as_str()], |row| row.get::<_, String>(0))?;
                for other in others {
                    let other = read_offer(&other?)?;
                    if offer_path(&other) == path {
                        return Err(ValidationError::PathInUse {
                            path,
                            other: other.metadata.name,
                        }
                        .into());
                    }
                }
            }
            let existing = tx
                .query_row("SELECT manifest FROM offers WHERE name = ?1", [name.as_str()], |row| {
                    row.get::<_, String>(0)
                })
                .optional()?
                .map(|m| read_offer(&m))
                .transpose()?;
            let t = unix_now();
            let (stored, change) = match existing {
                Some(current) if current.spec == offer.spec => (current, Change::Unchanged),
                Some(current) => {
                    let mut next = offer.clone();
                    next.metadata.generation = current.metadata.generation + 1;
                    next.metadata.creation_timestamp = current.metadata.creation_timestamp;
                    next.status = current.status;
                    (next, Change::Updated)
                }
                None => {
                    let mut next = offer.clone();
                    next.metadata.generation = 1;
                    next.metadata.creation_timestamp = Some(format_rfc3339(t));
                    next.status = OfferStatus::default();
                    (next, Change::Created)
                }
            };
            if change != Change::Unchanged {
                tx.execute(
                    "INSERT INTO offers (name, manifest, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                     ON CONFLICT (name) DO UPDATE SET manifest = excluded.manifest, updated_at = excluded.updated_at",
                    params![name.as_str(), write_offer(&stored)?, localdb::codec::saturating_int(t)],
                )?;
                let kind = if change == Change::Created { "created" } else { "updated" };
                log(&tx, name.as_str(), kind, &format!("spec generation {}", stored.metadata.generation))?;
            }
            tx.commit()?;
            Ok((stored, change))
        })
    }

    /// Stores the reconciler's verdict for `name` if the offer still exists, logging
    /// each condition whose status or reason changed.
    pub fn set_status(&self, name: &str, status: &OfferStatus) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let current = tx
                .query_row(
                    "SELECT manifest FROM offers WHERE name = ?1",
                    [name],
                    |row| row.get::<_, String>(0),
                )
                .optional()?;
            let Some(current) = current else {
                return Ok(());
            };
            let mut offer = read_offer(&current)?;
            if &offer.status == status {
                return Ok(());
            }
            for c in &status.conditions {
                let before = offer.status.conditions.iter().find(|b| b.kind == c.kind);
                if before.is_none_or(|b| b.status != c.status || b.reason != c.reason) {
                    let text = format!("{} {} ({}): {}", c.kind, c.status, c.reason, c.message);
                    log(&tx, name, "condition", &text)?;
                }
            }
            offer.status = status.clone();
            tx.execute(
                "UPDATE offers SET manifest = ?2 WHERE name = ?1",
                params![name, write_offer(&offer)?],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Removes `name`; its events stay. Returns whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let n = tx.execute("DELETE FROM offers WHERE name = ?1", [name])?;
            if n > 0 {
                log(&tx, name, "deleted", "offer deleted")?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }

    /// The last `limit` events of `name`, oldest first.
    pub fn events(&self, name: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(
                "SELECT at, kind, message FROM events WHERE offer = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                params![name, localdb::codec::saturating_int(limit as u64)],
                |row| {
                    Ok(Event {
                        at: format_rfc3339(u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0)),
                        kind: row.get(1)?,
                        message: row.get(2)?,
                    })
                },
            )?;
            let mut events = rows.collect::<Result<Vec<_>, _>>()?;
            events.reverse();
            Ok(events)
        })
    }

    /// A setting (selling defaults such as `payTo`).
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.with(|conn| {
            Ok(conn
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |row| {
                    row.get(0)
                })
                .optional()?)
        })
    }

    /// Sets a setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
    }
}

const AGENT_ID: &str = "agentId";
const AGENT_URI: &str = "agentUri";
const AGENT_CHAIN: &str = "agentChainId";
const AGENT_REGISTRY: &str = "agentRegistry";
const REGISTRATION_TX: &str = "registrationTx";

/// The settings in which the seller's [`AgentRecord`] is kept, for status output.
pub const RECORD_KEYS: [&str; 5] = [
    AGENT_ID,
    AGENT_URI,
    AGENT_CHAIN,
    AGENT_REGISTRY,
    REGISTRATION_TX,
];

impl OfferStore for Store {
    fn list(&self) -> Result<Vec<ServiceOffer>, StoreError> {
        Store::list(self)
    }

    fn set_status(&self, name: &str, status: &OfferStatus) -> Result<(), StoreError> {
        Store::set_status(self, name, status)
    }

    /// Reads the record's settings; one missing or unreadable key among the id, chain
    /// and registry means no record.
    fn agent(&self) -> Result<Option<AgentRecord>, StoreError> {
        let (Some(agent_id), Some(chain_id), Some(registry)) = (
            self.setting(AGENT_ID)?,
            self.setting(AGENT_CHAIN)?,
            self.setting(AGENT_REGISTRY)?,
        ) else {
            return Ok(None);
        };
        let (Ok(agent_id), Ok(chain_id), Ok(registry)) =
            (agent_id.parse(), chain_id.parse(), registry.parse())
        else {
            return Ok(None);
        };
        Ok(Some(AgentRecord {
            agent_id,
            uri: self.setting(AGENT_URI)?,
            chain_id,
            registry,
            tx: self.setting(REGISTRATION_TX)?,
        }))
    }

    fn save_agent(&self, record: &AgentRecord) -> Result<(), StoreError> {
        let saved = [
            (AGENT_ID, Some(record.agent_id.to_string())),
            (AGENT_URI, record.uri.clone()),
            (AGENT_CHAIN, Some(record.chain_id.to_string())),
            (AGENT_REGISTRY, Some(record.registry.to_string())),
            (REGISTRATION_TX, record.tx.clone()),
        ];
        for (key, value) in saved {
            if let Some(value) = value {
                self.set_setting(key, &value)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::{Condition, ConditionStatus};
    use crate::spec::{OfferSpec, PaymentSpec, PriceSpec, UpstreamSpec};

    fn offer(name: &str, price: &str) -> ServiceOffer {
        ServiceOffer::new(
            name,
            OfferSpec {
                upstream: UpstreamSpec {
                    url: Some("http://127.0.0.1:8080".into()),
                    ..UpstreamSpec::default()
                },
                payment: PaymentSpec {
                    network: "base-sepolia".into(),
                    pay_to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
                    scheme: "exact".into(),
                    max_timeout_seconds: 300,
                    price: PriceSpec {
                        per_request: Some(price.into()),
                        ..PriceSpec::default()
                    },
                    asset: None,
                },
                ..OfferSpec::default()
            },
        )
    }

    #[test]
    fn put_bumps_generation_only_on_change_and_keeps_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agora.db")).unwrap();
        let (first, change) = store.put(&offer("a", "0.001")).unwrap();
        assert_eq!((change, first.metadata.generation), (Change::Created, 1));
        let status = OfferStatus {
            conditions: vec![Condition {
                kind: "Ready".into(),
                status: ConditionStatus::True,
                reason: "Reconciled".into(),
                message: String::new(),
                last_transition_time: "2026-01-01T00:00:00Z".into(),
            }],
            observed_generation: 1,
            ..OfferStatus::default()
        };
        store.set_status("a", &status).unwrap();
        let (_, change) = store.put(&offer("a", "0.001")).unwrap();
        assert_eq!(change, Change::Unchanged);
        let (second, change) = store.put(&offer("a", "0.002")).unwrap();
        assert_eq!((change, second.metadata.generation), (Change::Updated, 2));
        assert_eq!(second.status, status, "status survives a spec edit");
        let kinds: Vec<String> = store
            .events("a", 10)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["created", "condition", "updated"]);
        assert!(store.delete("a").unwrap());
        assert!(!store.delete("a").unwrap());
        assert!(store.get("a").unwrap().is_none());
        assert_eq!(
            store.events("a", 10).unwrap().last().unwrap().kind,
            "deleted"
        );
    }

    #[test]
    fn a_path_belongs_to_one_offer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agora.db")).unwrap();
        store.put(&offer("a", "0.001")).unwrap();
        let mut b = offer("b", "0.001");
        b.spec.path = Some("/services/a".into());
        assert_eq!(
            store.put(&b).unwrap_err().to_string(),
            "path /services/a is already used by offer a"
        );
        store
            .set_setting("payTo", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
            .unwrap();
        assert_eq!(
            store.setting("payTo").unwrap().as_deref(),
            Some("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
        );
        assert!(store.setting("network").unwrap().is_none());
    }

    #[test]
    fn the_agent_record_round_trips_and_keeps_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agora.db")).unwrap();
        assert_eq!(store.agent().unwrap(), None);
        let mut record = AgentRecord {
            agent_id: alloy::primitives::U256::from(0),
            uri: Some("http://127.0.0.1/.well-known/agent-registration.json".into()),
            chain_id: 84532,
            registry: "0x8004A818BFB912233c491871b3d84c89A494BD9e"
                .parse()
                .unwrap(),
            tx: Some("0xabc".into()),
        };
        store.save_agent(&record).unwrap();
        assert_eq!(store.agent().unwrap(), Some(record.clone()));
        assert_eq!(store.setting("agentId").unwrap().as_deref(), Some("0"));
        record.tx = None;
        store.save_agent(&record).unwrap();
        assert_eq!(
            store.agent().unwrap().and_then(|r| r.tx).as_deref(),
            Some("0xabc"),
            "a record without a transaction keeps the last one"
        );
    }
}
