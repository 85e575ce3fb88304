//! The gateway's own replay guard: one authorization buys at most one upstream call.
//!
//! A remote facilitator holds no reservation between verify and settle, so two copies
//! of one payment header sent at once would both verify and both reach the upstream.
//! The guard admits the first and refuses the second until the first is finished:
//! released (upstream failed, buyer may retry) or settled (remembered until the
//! authorization expires, after which the chain refuses it anyway).

use std::collections::HashMap;
use std::sync::Mutex;

use alloy::primitives::{Address, B256, U256};

/// Identifies one authorization: the token, the payer and the payer's nonce.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GuardKey {
    /// Chain of the token.
    pub chain_id: u64,
    /// Token contract.
    pub asset: Address,
    /// Payer.
    pub payer: Address,
    /// EIP-3009 nonce.
    pub nonce: B256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    InFlight,
    Settled { valid_before: u64 },
}

/// Why an authorization cannot be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Another request is using it right now.
    InFlight,
    /// It already paid for a call.
    Settled,
}

/// Entries kept before expired settlements are swept.
const SWEEP_THRESHOLD: usize = 4096;

/// In-memory guard keyed by [`GuardKey`].
#[derive(Debug, Default)]
pub struct ReplayGuard {
    held: Mutex<HashMap<GuardKey, Held>>,
}

impl ReplayGuard {
    /// Takes `key` for one request.
    pub fn begin(&self, key: &GuardKey, now: u64) -> Result<(), Refusal> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() >= SWEEP_THRESHOLD {
            held.retain(|_, h| match h {
                Held::InFlight => true,
                Held::Settled { valid_before } => *valid_before > now,
            });
        }
        match held.get(key) {
            Some(Held::InFlight) => Err(Refusal::InFlight),
            Some(Held::Settled { .. }) => Err(Refusal::Settled),
            None => {
                held.insert(key.clone(), Held::InFlight);
                Ok(())
            }
        }
    }

    /// Gives `key` back unused, so the buyer can retry with the same authorization.
    pub fn release(&self, key: &GuardKey) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.get(key) == Some(&Held::InFlight) {
            held.remove(key);
        }
    }

    /// Marks `key` spent until `valid_before`.
    pub fn settle(&self, key: &GuardKey, valid_before: U256) {
        let valid_before = u64::try_from(valid_before).unwrap_or(u64::MAX);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.insert(key.clone(), Held::Settled { valid_before });
    }

    /// How many authorizations are tracked (for tests and metrics).
    pub fn len(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> GuardKey {
        GuardKey {
            chain_id: 84532,
            asset: Address::ZERO,
            payer: Address::repeat_byte(1),
            nonce: B256::repeat_byte(n),
        }
    }

    #[test]
    fn one_use_at_a_time_and_released_keys_come_back() {
        let guard = ReplayGuard::default();
        guard.begin(&key(1), 0).unwrap();
        assert_eq!(guard.begin(&key(1), 0), Err(Refusal::InFlight));
        guard.release(&key(1));
        guard.begin(&key(1), 0).unwrap();
        guard.settle(&key(1), U256::from(100));
        assert_eq!(guard.begin(&key(1), 0), Err(Refusal::Settled));
        guard.release(&key(1));
        assert_eq!(
            guard.begin(&key(1), 0),
            Err(Refusal::Settled),
            "release never frees a settled key"
        );
    }

    #[test]
    fn expired_settlements_are_swept_when_the_map_is_full() {
        let guard = ReplayGuard::default();
        for i in 0..SWEEP_THRESHOLD {
            let mut k = key(0);
            k.nonce = B256::from(U256::from(i));
            guard.begin(&k, 0).unwrap();
            guard.settle(&k, U256::from(10));
        }
        guard.begin(&key(0xff), 11).unwrap();
        assert_eq!(guard.len(), 1);
    }
}
