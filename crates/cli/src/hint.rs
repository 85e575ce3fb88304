//! What to type: the `agora` flag or command that changes the answer to a library
//! error. The library crates say what was wrong in their own terms (a policy's cap, an
//! offer's `payTo`, a relay's secret) and never name this CLI's flags, since an
//! embedder has none of them; the CLI appends the flag here, in one place, when it
//! reports the error.

use x402::client::{ClientError, Refusal};

/// The flag hint for the first error in `error`'s chain that has one.
pub fn hint(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(of)
}

/// `error` as the CLI prints it: the whole chain (`{:#}`), then its hint after `; `.
pub fn describe(error: &anyhow::Error) -> String {
    match hint(error) {
        Some(hint) => format!("{error:#}; {hint}"),
        None => format!("{error:#}"),
    }
}

/// The hint for one error (not its sources), when it is a library error this CLI
/// knows a flag for.
pub fn of(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(r) = error.downcast_ref::<Refusal>() {
        return refusal(r);
    }
    if let Some(e) = error.downcast_ref::<ClientError>() {
        return e.refusal().and_then(refusal);
    }
    if let Some(e) = error.downcast_ref::<offers::ValidationError>() {
        return offer(e);
    }
    if let Some(offers::StoreError::Invalid(e)) = error.downcast_ref::<offers::StoreError>() {
        return offer(e);
    }
    if let Some(e) = error.downcast_ref::<tunnel::bore::BoreError>() {
        return bore(e);
    }
    if let Some(tunnel::cloudflared::LocateError::NotInstalled) = error.downcast_ref() {
        return Some("without it use --tunnel bore --bore-server HOST or --public-url URL".into());
    }
    if let Some(research::coordinator::price::PriceError::ZeroBudget) = error.downcast_ref() {
        return Some("pass --budget SECONDS (e.g. --budget 300)".into());
    }
    if let Some(e) = error.downcast_ref::<research::worker::OpenError>() {
        return worker(e);
    }
    if let Some(e) = error.downcast_ref::<gateway::replicas::ReplicasError>() {
        return Some(replicas(e));
    }
    if let Some(e) = error.downcast_ref::<facilitator::OpenError>() {
        return facilitator(e);
    }
    if let Some(e) = error.downcast_ref::<facilitator::store::StoreError>() {
        return facilitator_store(e);
    }
    None
}

/// `agora pay`'s flags for a refusal before signing; for several offers, each one's.
pub fn refusal(refusal: &Refusal) -> Option<String> {
    match refusal {
        Refusal::AboveMax { price, .. } => {
            Some(format!("raise --max to at least {} to pay it", price.money))
        }
        Refusal::AboveBudget { .. } => Some(
            "raise it with `agora wallet budget --daily`, or wait for the window to pass".into(),
        ),
        Refusal::NetworkNotAllowed { network, .. } => {
            Some(format!("add --network {network} to pay there"))
        }
        Refusal::AssetNotAllowed { asset, network, .. } => Some(format!(
            "pass --allow-asset {network}:{asset} if you trust this token"
        )),
        Refusal::InsufficientBalance { .. } => {
            Some("fund the wallet (see `agora wallet balance`) or choose another --network".into())
        }
        Refusal::NothingAcceptable { offered, .. } => {
            let mut hints: Vec<String> = Vec::new();
            for hint in offered.iter().filter_map(self::refusal) {
                if !hints.contains(&hint) {
                    hints.push(hint);
                }
            }
            (!hints.is_empty()).then(|| hints.join("; "))
        }
        Refusal::Scheme { .. } | Refusal::NoDomain { .. } => None,
    }
}

/// `agora sell`'s flags for an offer the validator refused.
pub fn offer(error: &offers::ValidationError) -> Option<String> {
    use offers::ValidationError as E;
    Some(match error {
        E::RecipientRequired => "use --pay-to <addr> or set X402_WALLET".into(),
        E::PriceRequired => "use --price, --per-request, --per-mtok, or --per-hour".into(),
        E::ZeroPrice { .. } => "a free health path is set with --health-path".into(),
        E::UpstreamRequired => "use --upstream <url>".into(),
        E::ReservedPath { .. } => "pass --path /services/<name>".into(),
        E::PathInUse { .. } => "pass --path to choose another".into(),
        E::ModelRequired => "pass --model (or run interactively to auto-detect)".into(),
        E::AllowedPathsNotInference(_) => "drop --allow-path".into(),
        _ => return None,
    })
}

/// `agora serve`'s and `agora tunnel`'s flags for a bore relay's refusal.
fn bore(error: &tunnel::bore::BoreError) -> Option<String> {
    use tunnel::bore::BoreError as E;
    Some(match error {
        E::SecretNotAsked(_) => "drop --bore-secret (AGORA_BORE_SECRET)".into(),
        E::SecretRefused { .. } => {
            "pass the relay's secret with --bore-secret or AGORA_BORE_SECRET".into()
        }
        E::SecretNeeded(_) => "pass it with --bore-secret or AGORA_BORE_SECRET".into(),
        _ => return None,
    })
}

/// `agora research worker`'s flags for a worker that does not open.
fn worker(error: &research::worker::OpenError) -> Option<String> {
    use research::worker::OpenError as E;
    match error {
        E::RepoNotADirectory(_) => Some("point --repo at the checkout holding train.py".into()),
        E::DataDir { .. } => Some("pass a writable --data-dir".into()),
        E::Sandbox(_) => None,
    }
}

/// `agora gateway`'s flags for a replica set that cannot work.
fn replicas(error: &gateway::replicas::ReplicasError) -> String {
    use gateway::replicas::ReplicasError as E;
    match error {
        E::IndexOutside { count, .. } => format!(
            "pass --replica-index between 0 and {} (a StatefulSet pod's ordinal)",
            count.saturating_sub(1)
        ),
        E::BadUrl(_) => {
            "pass --replica-url like http://agora-gateway-{}.agora-gateway-replicas:8402".into()
        }
    }
}

/// `agora facilitator`'s and `agora serve`'s flags for a facilitator that does not open.
fn facilitator(error: &facilitator::OpenError) -> Option<String> {
    match error {
        facilitator::OpenError::NoChains => Some("pass at least one --rpc".into()),
        facilitator::OpenError::Store(e) => facilitator_store(e),
        _ => None,
    }
}

/// What to do about the facilitator's database held by another process.
fn facilitator_store(error: &facilitator::store::StoreError) -> Option<String> {
    matches!(error, facilitator::store::StoreError::Locked { .. }).then(|| {
        "stop it first (agora serve --rpc, facilitator or demo), or give this one its own AGORA_HOME or --db".into()
    })
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, U256};
    use x402::client::Price;
    use x402::{Money, Network};

    use super::*;

    fn price(atomic: u64) -> Price {
        Price {
            money: Money::from_atomic(U256::from(atomic), 6),
            symbol: "USDC".into(),
            network: Network::BASE_SEPOLIA,
        }
    }

    #[test]
    fn a_refusal_is_printed_with_the_flag_that_changes_it() {
        let above = anyhow::Error::new(Refusal::AboveMax {
            price: price(1000),
            max: U256::from(500),
        })
        .context("paying http://h/x");
        assert_eq!(
            describe(&above),
            "paying http://h/x: the price 0.001 USDC on base-sepolia is above the per-call cap of 0.0005; raise --max to at least 0.001 to pay it"
        );
        let elsewhere = Refusal::NetworkNotAllowed {
            price: price(1000),
            network: "base".into(),
        };
        let token = Refusal::AssetNotAllowed {
            asset: Address::ZERO,
            network: "base".into(),
            atomic: U256::from(5),
        };
        let both = anyhow::Error::new(ClientError::from(Refusal::NothingAcceptable {
            offered: vec![elsewhere.clone(), elsewhere, token],
            skipped: vec![],
        }));
        assert_eq!(
            hint(&both).unwrap(),
            format!(
                "add --network base to pay there; pass --allow-asset base:{} if you trust this token",
                Address::ZERO
            )
        );
        let unhinted = anyhow::anyhow!("plain");
        assert_eq!(describe(&unhinted), "plain");
    }

    #[test]
    fn library_errors_get_the_flags_the_old_texts_named() {
        let taken = offers::StoreError::Invalid(offers::ValidationError::PathInUse {
            path: "/services/a".into(),
            other: "a".into(),
        });
        assert_eq!(
            describe(&anyhow::Error::new(taken)),
            "path /services/a is already used by offer a; pass --path to choose another"
        );
        let reserved = anyhow::Error::new(offers::ValidationError::ReservedPath {
            path: "/api/x".into(),
            reserved: "/api".into(),
        });
        assert_eq!(
            describe(&reserved),
            "path /api/x collides with the reserved platform path /api; pass --path /services/<name>"
        );
        let secret = anyhow::Error::new(tunnel::bore::BoreError::SecretNeeded("r:7835".into()));
        assert_eq!(
            describe(&secret),
            "the bore relay r:7835 needs a secret; pass it with --bore-secret or AGORA_BORE_SECRET"
        );
        let outside =
            anyhow::Error::new(gateway::replicas::ReplicasError::IndexOutside { me: 2, count: 2 })
                .context("--replicas");
        assert!(
            describe(&outside)
                .ends_with("; pass --replica-index between 0 and 1 (a StatefulSet pod's ordinal)"),
            "{}",
            describe(&outside)
        );
        let missing = anyhow::Error::new(tunnel::cloudflared::LocateError::NotInstalled);
        assert!(
            describe(&missing).ends_with(
                "AGORA_CLOUDFLARED=/path/to/cloudflared; without it use --tunnel bore --bore-server HOST or --public-url URL"
            ),
            "{}",
            describe(&missing)
        );
        let free = anyhow::Error::new(research::coordinator::price::PriceError::ZeroBudget);
        assert!(describe(&free).ends_with("; pass --budget SECONDS (e.g. --budget 300)"));
        let chains = anyhow::Error::new(facilitator::OpenError::NoChains);
        assert_eq!(
            describe(&chains),
            "no chain to serve: the configuration names no RPC endpoint; pass at least one --rpc"
        );
    }
}
