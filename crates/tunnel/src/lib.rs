//! Public reachability for a seller behind NAT: one job, keeping a public URL
//! pointing at the local gateway. Providers are a bore relay (spoken natively, see
//! [`bore`]) and cloudflared (a supervised child process, see [`cloudflared`]); the
//! [`supervisor`] opens, watches and reopens them and reports the URL, which the
//! daemon then writes into 402s, the catalog and the registration.

pub mod bore;
pub mod cloudflared;
pub mod log;
pub mod relay;
pub mod state;
pub mod supervisor;

pub use log::TunnelLog;
pub use state::{State, Status};
pub use supervisor::{Files, Provider, Supervisor};
