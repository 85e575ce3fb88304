//! One module per `agora` command: its clap types, the conversion of its flags into
//! the library crates' typed inputs, and its rendering. Nothing here is imported by a
//! library crate; what a command needs from another lives in a library.

pub mod demo;
pub mod devnet;
pub mod discover;
pub mod doctor;
pub mod facilitator;
#[cfg(feature = "kubernetes")]
pub mod gateway;
pub mod index;
pub mod mcp;
#[cfg(feature = "kubernetes")]
pub mod operator;
pub mod pay;
pub mod research;
pub mod sell;
pub mod serve;
pub mod skills;
pub mod tunnel;
pub mod wallet;

// Without the `kubernetes` feature the commands keep their names and answer how to
// get them (see without_kubernetes.rs). Its test runs in every build, so scripts/test
// needs no second, default-feature test build.
#[cfg(any(test, not(feature = "kubernetes")))]
pub mod without_kubernetes;
#[cfg(not(feature = "kubernetes"))]
pub use without_kubernetes as gateway;
#[cfg(not(feature = "kubernetes"))]
pub use without_kubernetes as operator;
