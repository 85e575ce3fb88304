//! ServiceOffers: what a seller sells, where each offer stands, and the reconciler
//! that turns stored offers into the gateway's routes and published documents.
//!
//! The model is field-compatible with obol's `ServiceOffer` CRD ([`spec`], with its
//! conditions in [`condition`]), checked into typed values once ([`validate`]), kept
//! in SQLite with an event log ([`store`]), and driven through six stages
//! continuously ([`reconcile`]) over the [`OfferStore`] seam, which a Kubernetes
//! operator implements too.

pub mod condition;
pub mod offer_store;
pub mod reconcile;
pub mod registry;
pub mod spec;
pub mod store;
pub mod validate;

pub use condition::{Condition, ConditionStatus, STAGES, Stage};
pub use offer_store::{AgentRecord, OfferStore};
pub use reconcile::{Reconciler, ReconcilerConfig};
pub use registry::RegistryConfig;
pub use spec::{OfferSpec, OfferStatus, OfferType, ServiceOffer};
pub use store::{Change, Event, Store, StoreError};
pub use validate::{OfferName, ResolvedOffer, ValidationError};
