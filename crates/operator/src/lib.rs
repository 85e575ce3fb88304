//! agora on Kubernetes: one job, running agora's ServiceOffer model over a cluster.
//!
//! The `ServiceOffer` custom resource is generated from the same Rust types the
//! embedded store keeps ([`crd`]); the operator runs the reconciler's six stages for
//! each resource through the `OfferStore` seam and writes the conditions back to the
//! status subresource ([`controller`]); the gateway builds its route table from the
//! resources and the Services they name ([`cluster`]). No scheduler of agora's own:
//! Kubernetes places the pods, agora only reconciles offers.

pub mod cluster;
pub mod controller;
pub mod crd;
pub mod policy;
pub mod store;

pub use crd::{ServiceOffer, ServiceOfferSpec, ServiceOfferStatus, crd, crd_yaml};
