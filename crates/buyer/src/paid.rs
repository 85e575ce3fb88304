//! What a call hands back: the answer ([`Paid`], with the [`Payment`] that bought it),
//! where its body goes ([`Sink`]: collected in memory, or streamed wherever the caller
//! writes as the server sends it), what happens on the way ([`Note`]), and a dry
//! run's [`Quote`].

use std::future::Future;

use alloy::primitives::{Address, B256};
use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};
use x402::client::{Preview, Price};
use x402::wire::SettleResponse;

use crate::error::BoxError;

/// An answer: free, or paid and recorded.
#[derive(Debug)]
pub struct Paid<B = Vec<u8>> {
    /// The server's status.
    pub status: StatusCode,
    /// The server's headers.
    pub headers: HeaderMap,
    /// What the [`Sink`] made of the body (the bytes, for [`Collect`]).
    pub body: B,
    /// The payment, when the server asked for one.
    pub payment: Option<Payment>,
}

/// A payment as the ledger records it, with what the server said of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    /// Its ledger row (`agora wallet spent` lists it).
    pub ledger_id: i64,
    /// The amount authorized, with its decimals, symbol and network.
    pub price: Price,
    /// Who paid (the authorization's `from`).
    pub payer: Address,
    /// Who was paid.
    pub pay_to: Address,
    /// The token.
    pub asset: Address,
    /// The EIP-3009 nonce.
    pub nonce: B256,
    /// Unix seconds after which the authorization is void.
    pub valid_before: u64,
    /// The settlement transaction, when the receipt names one.
    pub tx: Option<B256>,
    /// The server's receipt, when it sent a readable one.
    pub receipt: Option<SettleResponse>,
}

/// Where the answer's body goes. The buyer hands over the response once the payment
/// is recorded, and marks the ledger row delivered only after the sink has taken the
/// whole body; a sink error is an [`Incomplete`](crate::PayError::Incomplete) answer
/// that a resume fetches again.
pub trait Sink {
    /// What the sink makes of the body.
    type Output;

    /// Takes the answer; `payment` is `None` for a free one.
    fn receive(
        &mut self,
        response: Response,
        payment: Option<&Payment>,
    ) -> impl Future<Output = Result<Self::Output, BoxError>>;
}

/// The sink of [`Buyer::pay`](crate::Buyer::pay): the whole body in memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Collect;

impl Sink for Collect {
    type Output = Vec<u8>;

    async fn receive(
        &mut self,
        response: Response,
        _payment: Option<&Payment>,
    ) -> Result<Vec<u8>, BoxError> {
        Ok(response.bytes().await?.to_vec())
    }
}

/// Something a front-end may tell its user while a call goes on (see
/// [`Buyer::on_note`](crate::Buyer::on_note)).
#[derive(Debug)]
pub enum Note<'a> {
    /// The connection broke after the payment was sent: the same authorization goes
    /// once more, which the server charges at most once.
    Retrying {
        /// How it broke.
        error: &'a str,
    },
    /// The receipt names the settlement transaction.
    Charged {
        /// What was paid.
        price: &'a Price,
        /// The transaction.
        tx: B256,
    },
    /// The server answered without a receipt naming a transaction: the ledger keeps
    /// the payment as unknown until it expires or the chain says.
    NoReceipt {
        /// The answer's status.
        status: StatusCode,
        /// Why a receipt header that was present did not read.
        receipt_error: Option<&'a str>,
    },
    /// A resume sends ledger entry `ledger_id`'s authorization again; nothing new is
    /// signed.
    Resending {
        /// The ledger row.
        ledger_id: i64,
        /// Its nonce.
        nonce: B256,
    },
}

/// What [`Buyer::quote`](crate::Buyer::quote) found: a free answer, or what would be
/// paid and signed.
#[derive(Debug)]
pub enum Quote {
    /// No payment was asked: the answer, body still streaming.
    Free(Response),
    /// The offer that would be paid and the authorization that would be signed.
    Priced(Box<Preview>),
}
