//! ERC-8004 ("Trustless Agents") for agora: the Identity Registry ABI and addresses,
//! the registration document an agent URI points at, and the OASF v0.8.0 skill and
//! domain taxonomy that document's OASF entry is checked against.
//!
//! Sellers use it to describe and list their offers (the [`registrar`] sends the
//! registry transactions), the indexer and buyers use it to read other agents' listings
//! (an indexer answers with the [`api`] records).

pub mod abi;
pub mod api;
pub mod oasf;
pub mod registrar;
pub mod registration;

pub use abi::{
    IIdentityRegistry, MAINNET_REGISTRIES, RegistryAddresses, TESTNET_REGISTRIES,
    agent_registry_id, identity_registry, registries,
};
pub use api::{AgentPage, AgentRecord, FetchError, FetchStatus, MetadataValue};
pub use oasf::{Entry, Filter, Kind, OasfError, Taxonomy, matches_filter};
pub use registration::{
    AgentProfile, AgentRegistration, OfferEntry, Registration, RegistrationError, RegistrationRef,
    Service,
};
