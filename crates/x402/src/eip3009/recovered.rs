//! Signers recovered recently, remembered by exactly what determined them.
//!
//! One paid request has its signature checked three times in one agora process: the
//! gateway matches it to an offer, the embedded facilitator verifies it, and settling
//! checks it again. secp256k1 recovery is the costliest step of each (about a quarter
//! of the process's CPU under load), and its answer is a pure function of the EIP-712
//! digest and the 65 signature bytes, so answering the second and third time from
//! memory is exact: a different domain, authorization or signature is a different key.

use alloy::primitives::{Address, B256, Signature};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

/// Enough for every payment in flight at thousands a second; when full the memory is
/// dropped whole, which costs the next few payments one recovery each and nothing else.
const CAPACITY: usize = 4096;

type Key = (B256, [u8; 65]);

static RECENT: LazyLock<Mutex<HashMap<Key, Address>>> =
    LazyLock::new(|| Mutex::new(HashMap::with_capacity(CAPACITY)));

/// The address that signed `digest` with `signature`, recovered once per distinct pair
/// among recent ones. `None` when no public key recovers from it (never remembered).
pub(super) fn signer(digest: B256, raw: [u8; 65], signature: &Signature) -> Option<Address> {
    let key = (digest, raw);
    if let Some(address) = lock().get(&key) {
        return Some(*address);
    }
    let address = signature.recover_address_from_prehash(&digest).ok()?;
    let mut recent = lock();
    if recent.len() >= CAPACITY {
        recent.clear();
    }
    recent.insert(key, address);
    Some(address)
}

/// A panic elsewhere while holding the lock leaves a map of correct entries, so the
/// poison is ignored rather than spread.
fn lock() -> std::sync::MutexGuard<'static, HashMap<Key, Address>> {
    RECENT.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;

    fn signed(key: &PrivateKeySigner, digest: B256) -> ([u8; 65], Signature) {
        let signature = key.sign_hash_sync(&digest).expect("signing a digest");
        (signature.as_bytes(), signature)
    }

    #[test]
    fn a_remembered_signer_is_the_one_recovery_gives_and_another_digest_is_not_confused_with_it() {
        let key = PrivateKeySigner::random();
        let digest = B256::repeat_byte(7);
        let (raw, signature) = signed(&key, digest);
        assert_eq!(signer(digest, raw, &signature), Some(key.address()));
        assert_eq!(signer(digest, raw, &signature), Some(key.address()));

        let other = B256::repeat_byte(8);
        let from_other = signature.recover_address_from_prehash(&other).ok();
        assert_ne!(from_other, Some(key.address()));
        assert_eq!(signer(other, raw, &signature), from_other);
    }

    #[test]
    fn past_capacity_the_memory_starts_over_and_still_answers_exactly() {
        let key = PrivateKeySigner::random();
        let digests: Vec<B256> = (0..CAPACITY + 10)
            .map(|i| B256::left_padding_from(&(i as u64).to_be_bytes()))
            .collect();
        let first = signed(&key, digests[0]);
        assert_eq!(signer(digests[0], first.0, &first.1), Some(key.address()));
        for digest in &digests[1..] {
            let (raw, signature) = signed(&key, *digest);
            assert_eq!(signer(*digest, raw, &signature), Some(key.address()));
        }
        assert!(lock().len() <= CAPACITY);
        assert_eq!(signer(digests[0], first.0, &first.1), Some(key.address()));
    }
}
