//! The call-level errors say what happened to the money and what to do next, and
//! the CLI can tell "nothing was signed" (exit 2) from a refusal after paying.

use alloy::primitives::Address;

use super::*;

#[test]
fn errors_say_whether_anything_was_signed() {
    let refused = ClientError::from(Refusal::AssetNotAllowed {
        asset: Address::ZERO,
        network: "base".into(),
        atomic: alloy::primitives::U256::from(5),
    });
    assert!(refused.refusal().is_some());
    assert!(refused.signed_nothing());
    assert!(
        refused
            .to_string()
            .contains("on base is not in the known USDC table"),
        "{refused}"
    );
    assert!(ClientError::Challenge(ChallengeError::NoAccepts).signed_nothing());

    let rejected = ClientError::Rejected {
        reason: Some("insufficient_funds".into()),
        message: "balance too low".into(),
    };
    assert!(!rejected.signed_nothing());
    assert_eq!(
        rejected.to_string(),
        "the server refused the payment (insufficient_funds): balance too low; the same authorization will not be signed again"
    );
    let changed = ClientError::PayToChanged {
        signed: Address::ZERO,
        offered: vec![Address::repeat_byte(1)],
    };
    let text = changed.to_string();
    assert!(text.contains("payTo changed"), "{text}");
    assert!(
        text.contains("0x0101010101010101010101010101010101010101"),
        "{text}"
    );
}
