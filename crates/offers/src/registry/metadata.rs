//! The registration's `metadata` (obol's extension, e.g. an autoresearch worker's
//! `best_val_bpb`), published twice: in the registration file, and on chain as one
//! `metadata.<key>` entry per value (obol's convention), so a buyer reading only the
//! registry sees it too.
//!
//! On-chain writes cost gas, so a value is written only when it differs from what the
//! chain holds: the values known to be on chain are remembered per agent, and while
//! they match nothing is read or written. How often values change is the writer's
//! business (the research supervisor changes them at most once a minute).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use alloy::primitives::{Address, Bytes, U256};
use erc8004::registrar::Registrar;

use crate::validate::ResolvedOffer;

/// The prefix of a registration metadata value's on-chain key.
pub const ONCHAIN_PREFIX: &str = "metadata.";

/// The registration `metadata` of the listed offers, merged by offer name (a later
/// name wins a key both set).
pub(crate) fn merged(offers: &[&ResolvedOffer]) -> BTreeMap<String, String> {
    let mut sorted: Vec<&&ResolvedOffer> = offers.iter().collect();
    sorted.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    sorted
        .into_iter()
        .flat_map(|o| o.registration.metadata.clone())
        .collect()
}

/// Values known to be on chain, per (chain, registry, agent).
type Known = HashMap<(u64, Address, U256), BTreeMap<String, String>>;

fn known() -> &'static Mutex<Known> {
    static KNOWN: OnceLock<Mutex<Known>> = OnceLock::new();
    KNOWN.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Writes each of `wanted`'s values whose on-chain `metadata.<key>` differs; returns
/// how many were written. A failure stops the round and is retried on the next pass.
pub(crate) async fn publish(
    registrar: &Registrar,
    agent_id: U256,
    wanted: &BTreeMap<String, String>,
) -> Result<usize, erc8004::registrar::RegistrarError> {
    let key = (registrar.chain_id(), registrar.registry(), agent_id);
    let same = known()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .is_some_and(|k| k == wanted);
    if same || wanted.is_empty() {
        return Ok(0);
    }
    let mut written = 0;
    for (name, value) in wanted {
        let onchain_key = format!("{ONCHAIN_PREFIX}{name}");
        let current = registrar.metadata(agent_id, &onchain_key).await?;
        if current.as_ref() != value.as_bytes() {
            registrar
                .set_metadata(
                    agent_id,
                    &onchain_key,
                    Bytes::from(value.clone().into_bytes()),
                )
                .await?;
            written += 1;
        }
    }
    known()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, wanted.clone());
    Ok(written)
}
