//! The seam between the reconciler and wherever offers live.
//!
//! The reconciler needs five things from a store: the offers to reconcile, a place to
//! write each offer's conditions (with an event for every change, so `agora sell
//! status` can say what happened and when), and the seller's ERC-8004 agent record,
//! read and saved. [`OfferStore`] is exactly that and no more. The embedded store is
//! SQLite ([`crate::store::Store`]); a Kubernetes operator (issue 17) implements the
//! same trait over `ServiceOffer` custom resources, their `/status` subresource and
//! Kubernetes Events, and runs the same stages unchanged.

use alloy::primitives::{Address, U256};

use crate::spec::{OfferStatus, ServiceOffer};
use crate::store::StoreError;

/// What the reconciler reads and writes; implement it to run the stages over another
/// store.
pub trait OfferStore: Send + Sync {
    /// Every offer, ordered by name: what one pass reconciles.
    fn list(&self) -> Result<Vec<ServiceOffer>, StoreError>;

    /// Saves a pass's `status` for `name` if the offer still exists (it may have been
    /// deleted during the pass), recording one event for each condition whose status
    /// or reason changed. Writing the same status again records nothing.
    fn set_status(&self, name: &str, status: &OfferStatus) -> Result<(), StoreError>;

    /// The seller's agent registration as last saved, or none before the first one.
    fn agent(&self) -> Result<Option<AgentRecord>, StoreError>;

    /// Remembers the seller's agent registration, so the next pass does on-chain work
    /// only when something changed. A record without `tx` keeps the one saved before.
    fn save_agent(&self, record: &AgentRecord) -> Result<(), StoreError>;
}

/// The seller's one ERC-8004 agent, as the Registered stage left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The agent's token id (0 is valid).
    pub agent_id: U256,
    /// The agent URI last set on chain.
    pub uri: Option<String>,
    /// Chain of the registry.
    pub chain_id: u64,
    /// The Identity Registry contract.
    pub registry: Address,
    /// The transaction that registered the agent or last changed its URI.
    pub tx: Option<String>,
}
