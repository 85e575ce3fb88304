//! agora's seller runtime, for embedding: the daemon that sells services behind x402
//! (offer store, reconciler, gateway, admin API, optional metrics listener), the typed
//! admin API and its client, the tunnel follower that keeps a public URL in step with
//! what is sold, the research-worker supervisor, model-server detection, the
//! builders of the daemon's facilitator and registrar, and [`doctor`], the checks of
//! whether this machine is ready to sell.
//!
//! `agora serve`, `agora sell`, `agora tunnel` and `agora doctor` are thin layers over
//! this crate. A program of your own can run the daemon and steer it the same way:
//!
//! ```
//! use std::sync::Arc;
//! use seller::{Daemon, DaemonConfig, FacilitatorInfo};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let url = "https://x402.org/facilitator";
//! let daemon = Daemon::start(DaemonConfig {
//!     home: dir.path().join("seller"),
//!     listen: "127.0.0.1:0".parse()?,
//!     public_url: None,
//!     facilitator: Arc::new(x402::HttpFacilitator::new(url)?),
//!     facilitator_info: FacilitatorInfo::Remote { url: url.into() },
//!     title: "my seller".into(),
//!     pull_models: false,
//!     registry: None,
//!     tunnel: None,
//!     workers: None,
//! })
//! .await?;
//! let admin = daemon.admin();
//! let status = admin.status().await?;
//! assert_eq!(status.gateway_url, daemon.gateway_url);
//! assert!(admin.offers().await?.is_empty());
//! daemon.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod admin;
mod builders;
mod daemon;
pub mod doctor;
pub mod model_server;
pub mod research_supervisor;
pub mod tunnel_follower;

pub use admin::{AdminClient, AdminError, FacilitatorInfo, Info, Settings};
pub use builders::{BuildError, embedded_facilitator, registry_config, stored_settings};
pub(crate) use daemon::OFFER_DB;
pub use daemon::{Daemon, DaemonConfig, StartError, socket_path};
