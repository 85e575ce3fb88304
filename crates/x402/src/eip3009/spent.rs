//! What one transaction did with an authorization, read from its logs: "the token
//! marked the nonce used" is not "the seller was paid". A payer can spend its own
//! nonce on another transfer (the same nonce, 1 unit to itself) or cancel it, and
//! `authorizationState` then reads `true` just the same. Only the `Transfer` that the
//! use of the authorization emitted says who was paid how much.
//!
//! FiatToken (USDC) and agora's LocalUSDC emit `AuthorizationUsed(from, nonce)` and
//! then, as the very next log of the token, the `Transfer(from, to, value)` it
//! authorized. Only that pairing is accepted: any other `Transfer` in the same
//! transaction (another authorization's, in a batch or a hostile contract's call)
//! never counts for this one.

use alloy::primitives::{Address, B256, Log, U256};
use alloy::sol_types::SolEvent;

use super::IEip3009Token;

/// What a transaction's logs say about one authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// The transaction did not use the authorization.
    NotHere,
    /// It used it, and the token's next log is this transfer (`from`, `to`, `value`).
    Transfer(Address, Address, U256),
    /// It used it without a transfer right after: paid nobody this function can name.
    NoTransfer,
}

impl Spent {
    /// Whether this use of the authorization paid exactly `amount` from `payer` to
    /// `pay_to`.
    pub fn paid(&self, payer: Address, pay_to: Address, amount: U256) -> bool {
        *self == Spent::Transfer(payer, pay_to, amount)
    }
}

/// What `logs` (one transaction's, in order) say about `payer`'s authorization
/// `nonce` of `asset`.
pub fn spent_in<'a>(
    logs: impl IntoIterator<Item = &'a Log>,
    asset: Address,
    payer: Address,
    nonce: B256,
) -> Spent {
    let mut of_token = logs.into_iter().filter(|log| log.address == asset);
    let used = of_token.by_ref().any(|log| {
        IEip3009Token::AuthorizationUsed::decode_log_data(&log.data)
            .is_ok_and(|e| e.authorizer == payer && e.nonce == nonce)
    });
    if !used {
        return Spent::NotHere;
    }
    match of_token
        .next()
        .and_then(|log| IEip3009Token::Transfer::decode_log_data(&log.data).ok())
    {
        Some(t) => Spent::Transfer(t.from, t.to, t.value),
        None => Spent::NoTransfer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{LogData, address, b256};

    const TOKEN: Address = address!("0000000000000000000000000000000000000A55");
    const PAYER: Address = address!("00000000000000000000000000000000000000b1");
    const SELLER: Address = address!("00000000000000000000000000000000000000c1");
    const NONCE: B256 = b256!("1111111111111111111111111111111111111111111111111111111111111111");
    const OTHER: B256 = b256!("2222222222222222222222222222222222222222222222222222222222222222");

    fn log(address: Address, data: LogData) -> Log {
        Log { address, data }
    }

    fn used(nonce: B256) -> Log {
        let event = IEip3009Token::AuthorizationUsed {
            authorizer: PAYER,
            nonce,
        };
        log(TOKEN, event.encode_log_data())
    }

    fn transfer(to: Address, value: u64) -> Log {
        let event = IEip3009Token::Transfer {
            from: PAYER,
            to,
            value: U256::from(value),
        };
        log(TOKEN, event.encode_log_data())
    }

    #[test]
    fn the_transfer_right_after_the_use_is_the_payment() {
        let logs = [used(NONCE), transfer(SELLER, 1000)];
        let spent = spent_in(&logs, TOKEN, PAYER, NONCE);
        assert!(spent.paid(PAYER, SELLER, U256::from(1000)));
        assert_eq!(spent_in(&logs, TOKEN, PAYER, OTHER), Spent::NotHere);
    }

    #[test]
    fn a_nonce_spent_on_a_self_transfer_pays_no_seller() {
        let logs = [used(NONCE), transfer(PAYER, 1)];
        let spent = spent_in(&logs, TOKEN, PAYER, NONCE);
        assert_eq!(spent, Spent::Transfer(PAYER, PAYER, U256::from(1)));
        assert!(!spent.paid(PAYER, SELLER, U256::from(1000)));
    }

    #[test]
    fn another_authorizations_transfer_in_the_same_transaction_never_counts() {
        // One transaction pays the seller with authorization OTHER, and spends NONCE
        // on a self-transfer: NONCE paid nobody, whichever order they come in.
        let logs = [
            used(OTHER),
            transfer(SELLER, 1000),
            used(NONCE),
            transfer(PAYER, 1),
        ];
        assert!(!spent_in(&logs, TOKEN, PAYER, NONCE).paid(PAYER, SELLER, U256::from(1000)));
        let logs = [
            used(NONCE),
            transfer(PAYER, 1),
            used(OTHER),
            transfer(SELLER, 1000),
        ];
        assert!(!spent_in(&logs, TOKEN, PAYER, NONCE).paid(PAYER, SELLER, U256::from(1000)));
        // A log of another contract between them is skipped; the token's next is not.
        let elsewhere = log(SELLER, transfer(SELLER, 1000).data);
        let logs = [used(NONCE), elsewhere, transfer(SELLER, 1000)];
        assert!(spent_in(&logs, TOKEN, PAYER, NONCE).paid(PAYER, SELLER, U256::from(1000)));
        let logs = [used(NONCE)];
        assert_eq!(spent_in(&logs, TOKEN, PAYER, NONCE), Spent::NoTransfer);
    }
}
