//! agora's market: finding sellers on the ERC-8004 registry and what they charge.
//!
//! - [`IndexerClient`] asks an 8004scan-shaped indexer (`agora index`, or a gateway
//!   route selling one) for typed [`AgentRecord`]s; an indexer sold through x402
//!   answers [`Answer::PaymentRequired`], the caller buys that URL with its own wallet
//!   and reads the bought answer with [`IndexerClient::read_paid`];
//! - [`scan()`] (feature `scan`) indexes the registry over RPC into a temporary
//!   database and asks it the same query in process, for when no indexer answers;
//! - [`Search`] is the query and the one filter rule (every skill and domain; an
//!   indexer applies only the first of each), [`Agent`] an agent as a buyer sees it,
//!   [`web_endpoints`] where it sells;
//! - [`asked`] reads what an endpoint asks for right now (its live 402);
//! - [`survey`] probes the sellers' live 402s and summarizes their prices.
//!
//! An indexer that sells its answers is paid for with agora's `buyer` (a wallet, its
//! budgets and its ledger): `Buyer::pay` the URL of [`Answer::PaymentRequired`] and hand
//! the body to [`IndexerClient::read_paid`].
//!
//! Finding the x402 sellers of a skill through an indexer:
//!
//! ```no_run
//! use market::{Answer, IndexerClient, Search};
//!
//! # async fn sellers() -> Result<(), Box<dyn std::error::Error>> {
//! let indexer = IndexerClient::new(&"http://127.0.0.1:3400".parse()?, reqwest::Client::new());
//! let search = Search {
//!     skills: vec!["natural_language_processing/*".into()],
//!     ..Search::x402(20)
//! };
//! search.check()?;
//! let Answer::Page(page) = indexer.agents(&search).await? else {
//!     return Err("this indexer sells its answers; buy them with agora's buyer".into());
//! };
//! for seller in market::agents(&page.agents, &search) {
//!     println!("{} {:?}", seller.name, seller.endpoints);
//! }
//! # Ok(())
//! # }
//! ```

pub mod agent;
pub mod client;
mod error;
pub mod price;
#[cfg(feature = "scan")]
mod scan;
pub mod survey;

pub use agent::{Agent, Search, agents, web_endpoints};
pub use client::{Answer, IndexerClient, Page, Unreadable};
pub use erc8004::{AgentRecord, MetadataValue};
pub use error::MarketError;
pub use price::{Asked, asked};
#[cfg(feature = "scan")]
pub use scan::scan;
