//! The server side of the admin API: one axum handler per endpoint over the daemon's
//! store, reconciler and tunnel, answering the typed structs of [`super`]. Refusals
//! say what is wrong in words ([`ApiError`]) with a status a client can act on.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use offers::{Reconciler, ServiceOffer, Store};
use tokio::sync::Notify;

use super::{
    ApiError, Deleted, Info, NoTunnel, OfferView, PathInUse, Reconciled, Registration, Settings,
    Stored, TunnelView,
};
use crate::tunnel_follower::{PublicUrl, TunnelControl};

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Admin {
    pub(crate) store: Arc<Store>,
    pub(crate) reconciler: Arc<Reconciler>,
    pub(crate) wake: Arc<Notify>,
    /// Status as it was at start; the public URL and tunnel are filled in per request.
    pub(crate) info: Info,
    /// The public URL now (a tunnel moves it).
    pub(crate) public: PublicUrl,
    pub(crate) tunnel: Option<Arc<TunnelControl>>,
}

/// The admin API's routes.
pub(crate) fn router(admin: Admin) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/offers", get(list))
        .route("/v1/offers/{name}", get(show).put(put).delete(delete))
        .route("/v1/reconcile", post(reconcile))
        .route("/v1/registration", get(registration))
        .route("/v1/settings", get(settings).put(put_settings))
        .route("/v1/tunnel", get(tunnel_status))
        .route("/v1/tunnel/{action}", post(tunnel_steer))
        .with_state(admin)
}

fn fail(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = ApiError {
        error: message.to_string(),
        path_in_use: None,
    };
    (status, Json(body)).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    fail(StatusCode::INTERNAL_SERVER_ERROR, e)
}

async fn status(State(admin): State<Admin>) -> Response {
    let mut info = admin.info.clone();
    info.public_url = admin
        .public
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    info.tunnel = admin.tunnel.as_ref().map(|t| t.describe());
    Json(info).into_response()
}

async fn tunnel_status(State(admin): State<Admin>) -> Response {
    let view = match &admin.tunnel {
        Some(t) => TunnelView::Kept(t.describe()),
        None => TunnelView::None(NoTunnel::default()),
    };
    Json(view).into_response()
}

/// Holds the tunnel up or down.
async fn tunnel_steer(State(admin): State<Admin>, UrlPath(action): UrlPath<String>) -> Response {
    let Some(tunnel) = &admin.tunnel else {
        return fail(StatusCode::CONFLICT, "this daemon runs without a tunnel");
    };
    match action.as_str() {
        "start" => tunnel.hold(Some(true)),
        "stop" => tunnel.hold(Some(false)),
        other => {
            return fail(
                StatusCode::NOT_FOUND,
                format!("no tunnel action {other:?}; use start or stop"),
            );
        }
    }
    Json(tunnel.describe()).into_response()
}

async fn list(State(admin): State<Admin>) -> Response {
    match admin.store.list() {
        Ok(offers) => Json(offers).into_response(),
        Err(e) => internal(e),
    }
}

async fn show(State(admin): State<Admin>, UrlPath(name): UrlPath<String>) -> Response {
    match (admin.store.get(&name), admin.store.events(&name, 20)) {
        (Ok(Some(offer)), Ok(events)) => Json(OfferView { offer, events }).into_response(),
        (Ok(None), _) => not_found(&name),
        (Err(e), _) | (_, Err(e)) => internal(e),
    }
}

fn not_found(name: &str) -> Response {
    fail(StatusCode::NOT_FOUND, format!("no offer named {name:?}"))
}

async fn put(
    State(admin): State<Admin>,
    UrlPath(name): UrlPath<String>,
    Json(mut offer): Json<ServiceOffer>,
) -> Response {
    offer.metadata.name = name;
    if let Err(e) = offers::validate::resolve(&offer) {
        return fail(StatusCode::BAD_REQUEST, e);
    }
    match admin.store.put(&offer) {
        Ok((offer, change)) => {
            admin.wake.notify_one();
            Json(Stored { offer, change }).into_response()
        }
        Err(offers::StoreError::Invalid(offers::ValidationError::PathInUse { path, other })) => {
            let body = ApiError {
                error: offers::ValidationError::PathInUse {
                    path: path.clone(),
                    other: other.clone(),
                }
                .to_string(),
                path_in_use: Some(PathInUse { path, other }),
            };
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        Err(offers::StoreError::Invalid(e)) => fail(StatusCode::BAD_REQUEST, e),
        Err(e) => internal(e),
    }
}

async fn delete(State(admin): State<Admin>, UrlPath(name): UrlPath<String>) -> Response {
    match admin.store.delete(&name) {
        Ok(true) => match admin.reconciler.pass().await {
            Ok(_) => Json(Deleted { deleted: name }).into_response(),
            Err(e) => internal(e),
        },
        Ok(false) => not_found(&name),
        Err(e) => internal(e),
    }
}

async fn reconcile(State(admin): State<Admin>) -> Response {
    match admin.reconciler.pass().await {
        Ok(summary) => Json(Reconciled {
            offers: summary.offers,
            ready: summary.ready,
        })
        .into_response(),
        Err(e) => internal(e),
    }
}

/// The seller's ERC-8004 registration as a fresh pass leaves it.
async fn registration(State(admin): State<Admin>) -> Response {
    if let Err(e) = admin.reconciler.pass().await {
        return internal(e);
    }
    match read_registration(&admin.store, admin.info.registry) {
        Ok(record) => Json(record).into_response(),
        Err(e) => internal(e),
    }
}

/// The registration record kept in the store's settings, under
/// [`offers::registry::RECORD_KEYS`] (in that order).
fn read_registration(store: &Store, on_chain: bool) -> Result<Registration, offers::StoreError> {
    let [
        agent_id,
        agent_uri,
        agent_chain_id,
        agent_registry,
        registration_tx,
    ] = offers::registry::RECORD_KEYS;
    Ok(Registration {
        agent_id: store.setting(agent_id)?,
        agent_uri: store.setting(agent_uri)?,
        agent_chain_id: store.setting(agent_chain_id)?,
        agent_registry: store.setting(agent_registry)?,
        registration_tx: store.setting(registration_tx)?,
        on_chain,
    })
}

/// The settings keys, in the order of [`Settings`]' fields.
const SETTING_KEYS: [&str; 3] = ["payTo", "network", "facilitator"];

/// The selling defaults as the store keeps them.
pub(crate) fn read_settings(store: &Store) -> Result<Settings, offers::StoreError> {
    let [pay_to, network, facilitator] = SETTING_KEYS;
    Ok(Settings {
        pay_to: store.setting(pay_to)?,
        network: store.setting(network)?,
        facilitator: store.setting(facilitator)?,
    })
}

async fn settings(State(admin): State<Admin>) -> Response {
    match read_settings(&admin.store) {
        Ok(s) => Json(s).into_response(),
        Err(e) => internal(e),
    }
}

async fn put_settings(State(admin): State<Admin>, Json(next): Json<Settings>) -> Response {
    if let Some(pay_to) = &next.pay_to
        && let Err(e) = offers::validate::parse_wallet(pay_to)
    {
        return fail(StatusCode::BAD_REQUEST, e);
    }
    if let Some(network) = &next.network
        && let Err(e) = x402::Network::parse(network)
    {
        return fail(StatusCode::BAD_REQUEST, e);
    }
    let values = [&next.pay_to, &next.network, &next.facilitator];
    for (key, value) in SETTING_KEYS.iter().zip(values) {
        if let Some(v) = value
            && let Err(e) = admin.store.set_setting(key, v)
        {
            return internal(e);
        }
    }
    settings(State(admin)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_keys_are_the_wire_names() {
        let all = Settings {
            pay_to: Some("a".into()),
            network: Some("b".into()),
            facilitator: Some("c".into()),
        };
        let value = serde_json::to_value(all).unwrap();
        for (key, expected) in SETTING_KEYS.iter().zip(["a", "b", "c"]) {
            assert_eq!(value[key], expected, "{key}");
        }
    }
}
