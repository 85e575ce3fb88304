//! The daemon's admin API: what `agora sell`, `agora tunnel` and `agora doctor` ask the
//! running daemon over its Unix socket, as typed requests and answers.
//!
//! The structs here ARE the wire: their serde attributes produce the JSON the API has
//! always returned (camelCase keys, `null` for an absent optional), so an older client
//! and this one read the same bodies. The server side is [`server`]; the client is
//! [`AdminClient`].

mod client;
pub(crate) mod server;

use alloy::primitives::Address;
use offers::{Change, Event, ServiceOffer};
use serde::{Deserialize, Serialize};
use x402::Network;

pub use client::{AdminClient, AdminError};

/// `GET /v1/status`: who the daemon is and where buyers reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// The facilitator as one line for people: its URL, or
    /// `embedded (eip155:84532, signer 0x…)`.
    pub facilitator: String,
    /// The same facilitator as data, so callers need not parse the line; absent from
    /// daemons older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facilitator_detail: Option<FacilitatorInfo>,
    /// Where buyers reach the gateway locally.
    pub gateway_url: String,
    /// Where the operator reads `/metrics`, when a metrics listener was given.
    pub metrics_url: Option<String>,
    /// The daemon's process id (absent from daemons older than it), for stopping it.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The public base URL now: a tunnel's while one is up.
    pub public_url: String,
    /// Whether the daemon has a registry key (lists the seller on ERC-8004).
    pub registry: bool,
    /// The tunnel, when the daemon keeps one.
    #[serde(default)]
    pub tunnel: Option<TunnelStatus>,
    /// The daemon's agora version.
    pub version: String,
}

/// Who verifies and settles the daemon's payments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum FacilitatorInfo {
    /// The daemon settles itself on these chains, paying gas from `signer`.
    Embedded {
        /// The chains it settles.
        networks: Vec<Network>,
        /// The settlement key's address.
        signer: Address,
    },
    /// A facilitator server at `url`.
    Remote {
        /// Its base URL.
        url: String,
    },
}

impl FacilitatorInfo {
    /// The one-line description status output shows: the URL of a remote facilitator,
    /// `embedded (eip155:84532, signer 0x…)` for the embedded one.
    pub fn label(&self) -> String {
        match self {
            Self::Embedded { networks, signer } => {
                let networks: Vec<String> = networks.iter().map(Network::caip2).collect();
                format!("embedded ({}, signer {signer})", networks.join(", "))
            }
            Self::Remote { url } => url.clone(),
        }
    }
}

/// The tunnel as the daemon keeps it: the supervisor's status and who steers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStatus {
    /// Provider, state, URL, restarts, last error.
    #[serde(flatten)]
    pub status: tunnel::Status,
    /// Whether the operator holds it up or down, or it follows the offers.
    pub control: Control,
}

/// The tunnel state's word, as the wire writes it: off, starting, up or down.
pub fn state_name(state: tunnel::State) -> &'static str {
    match state {
        tunnel::State::Off => "off",
        tunnel::State::Starting => "starting",
        tunnel::State::Up => "up",
        tunnel::State::Down => "down",
    }
}

/// Who decides whether the tunnel is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Held up until the daemon restarts.
    #[serde(rename = "held up (agora tunnel start)")]
    HeldUp,
    /// Held down until the daemon restarts.
    #[serde(rename = "held down (agora tunnel stop)")]
    HeldDown,
    /// Up while an offer is Ready, down when none has a route.
    #[serde(rename = "follows the offers")]
    FollowsOffers,
}

impl Control {
    /// The words the wire carries.
    pub fn text(self) -> &'static str {
        match self {
            Self::HeldUp => "held up (agora tunnel start)",
            Self::HeldDown => "held down (agora tunnel stop)",
            Self::FollowsOffers => "follows the offers",
        }
    }
}

/// `GET /v1/tunnel`: the tunnel, or that the daemon keeps none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TunnelView {
    /// The daemon keeps a tunnel.
    Kept(TunnelStatus),
    /// The daemon runs without one: `{"configured": false, "state": "off"}`.
    None(NoTunnel),
}

/// The answer of a daemon without a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoTunnel {
    /// Always false.
    pub configured: bool,
    /// Always off.
    pub state: tunnel::State,
}

impl Default for NoTunnel {
    /// What a daemon without a tunnel answers.
    fn default() -> Self {
        Self {
            configured: false,
            state: tunnel::State::Off,
        }
    }
}

/// Selling defaults kept by the daemon (`GET`/`PUT /v1/settings`); a `PUT` sets the
/// fields given and leaves the others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Default recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_to: Option<String>,
    /// Default network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Default facilitator URL for daemons started later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facilitator: Option<String>,
}

/// `GET /v1/offers/{name}`: an offer and its recent events, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferView {
    /// The offer with its status.
    pub offer: ServiceOffer,
    /// Its last events.
    pub events: Vec<Event>,
}

/// `PUT /v1/offers/{name}`: the offer as stored and what the write did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// The offer as stored (generation and status included).
    pub offer: ServiceOffer,
    /// Created, updated or unchanged.
    pub change: Change,
}

/// `DELETE /v1/offers/{name}`: the offer that is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// Its name.
    pub deleted: String,
}

/// `POST /v1/reconcile`: what one reconciler pass saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    /// Offers seen.
    pub offers: usize,
    /// Offers Ready.
    pub ready: usize,
}

/// `GET /v1/registration`: the seller's ERC-8004 registration as the last pass left
/// it (every field `null` until registered).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// The agent's id on the Identity Registry.
    pub agent_id: Option<String>,
    /// The URI registered for it.
    pub agent_uri: Option<String>,
    /// The chain id of the registry.
    pub agent_chain_id: Option<String>,
    /// The registry's address.
    pub agent_registry: Option<String>,
    /// The transaction that registered it.
    pub registration_tx: Option<String>,
    /// Whether the daemon has a registry key at all.
    pub on_chain: bool,
}

/// The body of every refusal: what went wrong, in words, and for an offer whose path
/// another offer holds, which (so a client can say how to choose another).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    /// The reason.
    pub error: String,
    /// Set when a `PUT /v1/offers/{name}` asks for a path another offer uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_in_use: Option<PathInUse>,
}

/// A path another offer already serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInUse {
    /// The path asked for.
    pub path: String,
    /// The offer that has it.
    pub other: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_registration_keys_are_the_stores() {
        let value = serde_json::to_value(Registration::default()).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.retain(|k| *k != "onChain");
        let mut stored = offers::registry::RECORD_KEYS.to_vec();
        keys.sort_unstable();
        stored.sort_unstable();
        assert_eq!(keys, stored);
    }

    #[test]
    fn the_wire_is_what_the_api_always_answered() {
        assert_eq!(
            serde_json::to_value(TunnelView::None(NoTunnel::default())).unwrap(),
            json!({ "configured": false, "state": "off" })
        );
        let none: TunnelView =
            serde_json::from_value(json!({ "configured": false, "state": "off" })).unwrap();
        assert_eq!(none, TunnelView::None(NoTunnel::default()));
        let mut status = tunnel::Status::off("bore");
        status.since = 7;
        let kept = TunnelStatus {
            status,
            control: Control::FollowsOffers,
        };
        let wire = serde_json::to_value(&kept).unwrap();
        assert_eq!(
            wire,
            json!({
                "provider": "bore", "state": "off", "url": null, "pid": null,
                "restarts": 0, "lastError": null, "since": 7,
                "control": "follows the offers"
            })
        );
        let back: TunnelView = serde_json::from_value(wire).unwrap();
        assert_eq!(back, TunnelView::Kept(kept));
        assert_eq!(
            serde_json::to_value(Settings::default()).unwrap(),
            json!({})
        );
        let refusal = ApiError {
            error: "no offer named \"x\"".into(),
            path_in_use: None,
        };
        assert_eq!(
            serde_json::to_value(refusal).unwrap(),
            json!({ "error": "no offer named \"x\"" })
        );
        let signer = Address::repeat_byte(0x11);
        let embedded = FacilitatorInfo::Embedded {
            networks: vec![Network::BASE_SEPOLIA],
            signer,
        };
        assert_eq!(
            embedded.label(),
            format!("embedded (eip155:84532, signer {signer})")
        );
        assert_eq!(
            serde_json::to_value(&embedded).unwrap(),
            json!({ "kind": "embedded", "networks": ["eip155:84532"], "signer": signer })
        );
    }

    #[test]
    fn a_state_is_named_as_the_wire_names_it() {
        use tunnel::State;
        for state in [State::Off, State::Starting, State::Up, State::Down] {
            assert_eq!(serde_json::to_value(state).unwrap(), state_name(state));
        }
        for control in [Control::HeldUp, Control::HeldDown, Control::FollowsOffers] {
            assert_eq!(serde_json::to_value(control).unwrap(), control.text());
        }
    }

    #[test]
    fn an_older_daemons_status_still_reads() {
        let info: Info = serde_json::from_value(json!({
            "facilitator": "https://x402.org/facilitator",
            "gatewayUrl": "http://127.0.0.1:8402",
            "metricsUrl": null,
            "publicUrl": "http://127.0.0.1:8402",
            "registry": false,
            "version": "0.1.0"
        }))
        .unwrap();
        assert_eq!(info.pid, None);
        assert_eq!(info.facilitator_detail, None);
        assert_eq!(info.tunnel, None);
    }
}
