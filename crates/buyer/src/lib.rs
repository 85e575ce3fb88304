//! agora's buyer: call an HTTP URL and pay its x402 `402 Payment Required` from a
//! wallet, within limits, with the wallet's spending ledger as the record. This is the
//! library behind `agora pay` and the research coordinator, for any Rust program that
//! buys (an agent framework, a service), in the spirit of x402-rs's `x402-reqwest`.
//!
//! The order is the money-safety argument (docs/security.md): the 402 is read and
//! judged against the [`Limits`], the networks, the assets and what the ledger leaves
//! of the wallet's budgets BEFORE anything is signed (a [`Refusal`] signs nothing); the
//! signed authorization is written to the ledger, with its exact header, BEFORE it is
//! sent; and a lost answer is resent from that record ([`Buyer::resume`], or the one
//! automatic retry), never signed anew, so it can be charged at most once. The
//! [`PayError`] kinds tell the caller which way it went.
//!
//! [`probe`] checks a sold endpoint's 402 against the offer it should carry, and makes
//! one test purchase.
//!
//! # Example
//!
//! Pay a URL at most 0.01 USDC (and within the wallet's budgets) from the default
//! wallet:
//!
//! ```no_run
//! use buyer::{Buyer, Limits, RequestSpec};
//!
//! # async fn buy() -> Result<(), Box<dyn std::error::Error>> {
//! let home = wallet::home::agora_home()?; // $AGORA_HOME, where the wallets live
//! let buyer = Buyer::open(&home, None)?; // the default wallet and its ledger
//! let spec = RequestSpec::get("https://seller.example/services/quote/today".parse()?);
//! let limits = Limits::new().max(wallet::budget::parse_usdc("max", "0.01")?);
//! let paid = buyer.pay(&spec, &limits).await?;
//! if let Some(payment) = &paid.payment {
//!     println!("paid {} in ledger entry {}", payment.price, payment.ledger_id);
//! }
//! println!("{}", String::from_utf8_lossy(&paid.body));
//! # Ok(())
//! # }
//! ```

mod buyer;
mod error;
mod limits;
mod paid;
pub mod probe;
mod request;

pub use buyer::{Buyer, http_client};
pub use error::{Before, BoxError, NotResumable, PayError, Refusal};
pub use limits::{Cap, Limits, allowed_asset, per_call_cap};
pub use paid::{Collect, Note, Paid, Payment, Quote, Sink};
pub use request::RequestSpec;
