//! The Identity Registry logs the indexer follows, decoded into one flat shape that is
//! stored per block: agents are rebuilt from these rows, which is what lets a reorg be
//! undone by deleting the rows above the fork point.

use alloy::primitives::{Address, B256, Bytes};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;
use erc8004::IIdentityRegistry::{MetadataSet, Registered, Transfer, URIUpdated};

/// topic0 of every event the indexer asks `eth_getLogs` for.
pub(crate) const TOPICS: [B256; 4] = [
    Registered::SIGNATURE_HASH,
    URIUpdated::SIGNATURE_HASH,
    MetadataSet::SIGNATURE_HASH,
    Transfer::SIGNATURE_HASH,
];

/// What happened to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Minted with a URI to an owner.
    Registered { uri: String, owner: Address },
    /// Pointed at a new document.
    UriUpdated { uri: String, by: Address },
    /// One metadata key set (an empty value clears it).
    MetadataSet { key: String, value: Bytes },
    /// Ownership moved; `from` zero is a mint, `to` zero a burn.
    Transfer { from: Address, to: Address },
}

impl Change {
    /// The `kind` column.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Change::Registered { .. } => "registered",
            Change::UriUpdated { .. } => "uri_updated",
            Change::MetadataSet { .. } => "metadata_set",
            Change::Transfer { .. } => "transfer",
        }
    }
}

/// One decoded log, positioned on the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainEvent {
    /// Block number.
    pub(crate) block: u64,
    /// Hash of that block, to notice when it is replaced.
    pub(crate) block_hash: B256,
    /// Position in the block; with `block`, the event's identity.
    pub(crate) log_index: u64,
    /// The transaction that emitted it.
    pub(crate) tx_hash: B256,
    /// The agent (token id); ids beyond i64 cannot be stored and are skipped.
    pub(crate) agent_id: u64,
    /// What changed.
    pub(crate) change: Change,
}

/// Why a log was not turned into an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Not one of the four events (another contract's topic, or an ERC-4906 event).
    #[error("not an indexed event")]
    Unrelated,
    /// A pending log, or an RPC that leaves out positions; the range is retried.
    #[error("the RPC returned a log without its block number, block hash or log index")]
    Unpositioned,
    /// The log does not decode as the event its topic names.
    #[error("log {0} does not decode as its event")]
    Malformed(String),
    /// A token id that does not fit the database's integer column.
    #[error("agent id {0} is too large to index")]
    IdTooLarge(String),
}

/// Decodes one log of the registry.
pub(crate) fn decode(log: &Log) -> Result<ChainEvent, Skip> {
    let topic = log.topic0().copied().ok_or(Skip::Unrelated)?;
    let (Some(block), Some(block_hash), Some(log_index)) =
        (log.block_number, log.block_hash, log.log_index)
    else {
        return Err(Skip::Unpositioned);
    };
    let malformed = |_| Skip::Malformed(format!("{block}:{log_index}"));
    let (agent_id, change) = match topic {
        Registered::SIGNATURE_HASH => {
            let e = Registered::decode_log(&log.inner).map_err(malformed)?.data;
            (
                e.agentId,
                Change::Registered {
                    uri: e.agentURI,
                    owner: e.owner,
                },
            )
        }
        URIUpdated::SIGNATURE_HASH => {
            let e = URIUpdated::decode_log(&log.inner).map_err(malformed)?.data;
            (
                e.agentId,
                Change::UriUpdated {
                    uri: e.newURI,
                    by: e.updatedBy,
                },
            )
        }
        MetadataSet::SIGNATURE_HASH => {
            let e = MetadataSet::decode_log(&log.inner).map_err(malformed)?.data;
            (
                e.agentId,
                Change::MetadataSet {
                    key: e.metadataKey,
                    value: e.metadataValue,
                },
            )
        }
        Transfer::SIGNATURE_HASH => {
            let e = Transfer::decode_log(&log.inner).map_err(malformed)?.data;
            (
                e.tokenId,
                Change::Transfer {
                    from: e.from,
                    to: e.to,
                },
            )
        }
        _ => return Err(Skip::Unrelated),
    };
    let agent_id = u64::try_from(agent_id)
        .ok()
        .filter(|id| i64::try_from(*id).is_ok())
        .ok_or_else(|| Skip::IdTooLarge(agent_id.to_string()))?;
    Ok(ChainEvent {
        block,
        block_hash,
        log_index,
        tx_hash: log.transaction_hash.unwrap_or_default(),
        agent_id,
        change,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{LogData, U256, address, keccak256};

    fn positioned(data: LogData) -> Log {
        Log {
            inner: alloy::primitives::Log {
                address: erc8004::TESTNET_REGISTRIES.identity,
                data,
            },
            block_hash: Some(B256::repeat_byte(7)),
            block_number: Some(12),
            block_timestamp: None,
            transaction_hash: Some(B256::repeat_byte(9)),
            transaction_index: Some(0),
            log_index: Some(3),
            removed: false,
        }
    }

    #[test]
    fn decodes_each_event() {
        let owner = address!("0x00000000000000000000000000000000000000aa");
        let registered = Registered {
            agentId: U256::ZERO,
            agentURI: "data:application/json,{}".into(),
            owner,
        };
        let event = decode(&positioned(registered.encode_log_data())).unwrap();
        assert_eq!(event.agent_id, 0, "agent 0 is a real agent");
        assert_eq!((event.block, event.log_index), (12, 3));
        assert_eq!(
            event.change,
            Change::Registered {
                uri: "data:application/json,{}".into(),
                owner
            }
        );

        let set = MetadataSet {
            agentId: U256::from(5),
            indexedMetadataKey: keccak256("x402.supported"),
            metadataKey: "x402.supported".into(),
            metadataValue: Bytes::from_static(&[1]),
        };
        let event = decode(&positioned(set.encode_log_data())).unwrap();
        assert_eq!(event.change.kind(), "metadata_set");
        assert_eq!(event.agent_id, 5);

        let transfer = Transfer {
            from: Address::ZERO,
            to: owner,
            tokenId: U256::from(5),
        };
        assert_eq!(
            decode(&positioned(transfer.encode_log_data()))
                .unwrap()
                .change,
            Change::Transfer {
                from: Address::ZERO,
                to: owner
            }
        );
    }

    #[test]
    fn unrelated_unpositioned_and_oversized_logs_are_skipped() {
        let other = LogData::new_unchecked(vec![B256::repeat_byte(1)], Bytes::new());
        assert_eq!(decode(&positioned(other)), Err(Skip::Unrelated));

        let update = URIUpdated {
            agentId: U256::from(1),
            newURI: "ipfs://x".into(),
            updatedBy: Address::ZERO,
        };
        let mut pending = positioned(update.encode_log_data());
        pending.block_hash = None;
        assert_eq!(decode(&pending), Err(Skip::Unpositioned));

        let huge = URIUpdated {
            agentId: U256::MAX,
            ..update
        };
        assert!(matches!(
            decode(&positioned(huge.encode_log_data())),
            Err(Skip::IdTooLarge(_))
        ));

        let truncated = LogData::new_unchecked(
            vec![Registered::SIGNATURE_HASH, B256::ZERO, B256::ZERO],
            Bytes::from_static(&[1, 2, 3]),
        );
        assert!(matches!(
            decode(&positioned(truncated)),
            Err(Skip::Malformed(_))
        ));
    }
}
