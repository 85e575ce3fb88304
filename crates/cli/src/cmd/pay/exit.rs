//! How `agora pay` reports a `buyer::PayError`: the message with the flags and
//! commands to type, which the library leaves to its front-ends, and the way it
//! stopped, from `crate::exit`'s table (refused before signing, outcome unknown or
//! answer cut, the server refused the signed payment; an error for anything else).

use buyer::{Before, BoxError, NotResumable, PayError, Refusal};
use x402::Money;

use crate::exit::{Code, Stop};
use crate::output::{StdoutClosed, is_stdout_closed};

/// Refused before signing: exit 2, kind `refused`.
fn refused_stop(message: String) -> Stop {
    Stop::new(Code::Refused, "refused", message)
}

/// The refusal when a 402 meets no cap at all, naming the price it asks.
fn no_cap(price: &str) -> Stop {
    refused_stop(format!(
        "the price is {price} and no spending cap is set: pass --max USDC (e.g. --max 0.01), or set one for every call with: agora wallet budget --per-call 0.01; nothing was signed"
    ))
}

/// A passed-through error as the CLI's own again: its text and causes, and a closed
/// stdout still recognised as one (`main` exits 0 on it).
fn unbox(error: BoxError) -> anyhow::Error {
    match error.downcast::<StdoutClosed>() {
        Ok(closed) => anyhow::Error::new(*closed),
        Err(error) => anyhow::Error::from_boxed(error),
    }
}

/// `e` as `agora pay` reports it for a call to `url`.
pub fn failure(e: PayError, url: &str) -> anyhow::Error {
    let resume_hint = format!("agora pay --resume {url} (with the same -X/-d/-H flags)");
    match e {
        PayError::Refused(refusal) => refused(*refusal).into(),
        PayError::Pending {
            price,
            reason,
            tx,
            retry_after,
            ..
        } => Stop::new(
            Code::Unknown,
            "pending",
            format!(
                "the payment of {price} was sent but the server does not know yet whether it settled ({}{}); nothing new will be signed. Get the answer {} with: {resume_hint}",
                reason.as_deref().unwrap_or("pending"),
                tx.map(|tx| format!(", tx {tx}")).unwrap_or_default(),
                retry_after
                    .map(|d| format!("in {} s or later", d.as_secs().max(1)))
                    .unwrap_or_else(|| "later".to_string())
            ),
        )
        .into(),
        PayError::Unknown { price, error, .. } => Stop::new(
            Code::Unknown,
            "unknown",
            format!(
                "the payment of {price} was sent but its answer was lost ({error}); it may or may not have been charged. Get the answer with the same authorization: {resume_hint}"
            ),
        )
        .into(),
        PayError::Incomplete { price, source, .. } => {
            let e = unbox(source);
            if is_stdout_closed(&e) {
                return e;
            }
            Stop::new(
                Code::Unknown,
                "incomplete",
                format!(
                    "{e:#}; the payment of {price} was charged, and the server owes the rest: get the whole answer with the same authorization: {resume_hint}"
                ),
            )
            .into()
        }
        PayError::Rejected {
            error,
            before,
            valid_before,
            ..
        } => {
            let message = match before {
                Before::Fresh => format!(
                    "{error}. The server received the signed authorization, so it counts against your budget until it expires at {} (agora wallet spent --rpc URL asks the chain)",
                    x402::time::format_rfc3339(valid_before)
                ),
                Before::Sent => format!(
                    "{error}. This authorization was sent before, so it may have been charged then; the ledger keeps it as unknown until the chain says (agora wallet spent --rpc URL)"
                ),
                Before::Settled => format!(
                    "{error}. This authorization was charged earlier (see agora wallet spent); the server will not serve it again"
                ),
            };
            Stop::new(Code::Rejected, "rejected", message).into()
        }
        PayError::NotResumable(NotResumable::Nothing { wallet, url }) => anyhow::anyhow!(
            "the ledger holds no payment of wallet {wallet} for {url} whose answer is missing; see agora wallet spent, or pay anew with: agora pay {url} --max USDC"
        ),
        PayError::NotResumable(NotResumable::Unreadable { ledger_id, error }) => anyhow::anyhow!(
            "ledger entry {ledger_id} holds an unreadable signed payment ({error}); nothing was sent; see agora wallet spent --rpc URL"
        ),
        PayError::NotResumable(NotResumable::Expired {
            ledger_id,
            valid_before,
            url,
        }) => anyhow::anyhow!(
            "the authorization of ledger entry {ledger_id} expired at {valid_before}; it cannot be sent again. Whether it was charged: agora wallet spent --rpc URL; to pay anew: agora pay {url} --max USDC"
        ),
        PayError::Unrecorded { ledger_id, source } => unbox(source).context(format!(
            "the answer was delivered, but ledger entry {ledger_id} could not be updated; see agora wallet spent --rpc URL"
        )),
        e @ PayError::Request { .. } => e.into(),
        PayError::Other(source) => unbox(source),
    }
}

/// A refusal before signing (exit 2), naming the flag or command that changes it.
fn refused(refusal: Refusal) -> Stop {
    match refusal {
        Refusal::Policy {
            refusal,
            cap_from_wallet,
        } => {
            let message = match &refusal {
                // The wallet's per-call budget, not --max, was the lower cap: name it.
                x402::client::Refusal::AboveMax { price, max } if cap_from_wallet => format!(
                    "the price {price} is above the wallet's per-call budget of {}; raise it with: agora wallet budget --per-call {}",
                    Money::from_atomic(*max, price.money.decimals),
                    price.money
                ),
                other => with_hint(other.to_string(), crate::hint::refusal(other)),
            };
            refused_stop(format!("{message}; nothing was signed"))
        }
        Refusal::NoCap { price } => no_cap(&price.to_string()),
        Refusal::Open { wallet, url, entry } => refused_stop(format!(
            "ledger entry {} is a payment of wallet {wallet} for {url} that is still open ({}{}) and may yet be charged until {}; send the same authorization again with: agora pay --resume {url} (same -X/-d/-H flags), or sign a second one anyway (both may be charged) with: agora pay --new {url} --max USDC (MCP pay tool: new: true); nothing was signed",
            entry.id,
            serde_json::to_value(entry.status)
                .ok()
                .and_then(|s| s.as_str().map(str::to_string))
                .unwrap_or_else(|| "open".to_string()),
            entry
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default(),
            x402::time::format_rfc3339(entry.valid_before),
        )),
        Refusal::Budget(refusal) => {
            refused_stop(format!("{refusal}; the signature was dropped unsent"))
        }
        Refusal::Unpayable(e) => {
            let message = with_hint(e.to_string(), crate::hint::of(&e));
            refused_stop(format!("{message}; nothing was signed"))
        }
    }
}

/// `message`, then the flag that changes it after `; `, as `main` prints any error.
fn with_hint(message: String, hint: Option<String>) -> String {
    match hint {
        Some(hint) => format!("{message}; {hint}"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_cap_exits_2_naming_the_flags() {
        let e: anyhow::Error = no_cap("0.001 USDC on base-sepolia").into();
        assert_eq!(crate::exit::code(&e), Code::Refused);
        assert!(e.to_string().contains("--max"), "{e}");
    }

    #[test]
    fn passed_through_errors_keep_their_text_and_a_closed_stdout() {
        let inner = anyhow::anyhow!("disk full").context("cannot write to out.json");
        let e = failure(
            PayError::Other(inner.reallocate_into_boxed_dyn_error_without_backtrace()),
            "http://h/x",
        );
        assert_eq!(format!("{e:#}"), "cannot write to out.json: disk full");
        assert_eq!(crate::exit::code(&e), Code::Error);
        let closed: anyhow::Error = StdoutClosed.into();
        let e = failure(
            PayError::Other(closed.reallocate_into_boxed_dyn_error_without_backtrace()),
            "http://h/x",
        );
        assert!(is_stdout_closed(&e));
    }
}
