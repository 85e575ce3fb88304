//! The operator's reconcile loop against kube-rs's documented mock API server
//! (`tower-test`'s `mock::pair` behind `kube::Client::new`): no kube-apiserver
//! installs here, so every request the operator sends is recorded and the exact
//! sequence is asserted. Everything else is real: a devnet with the embedded
//! facilitator, and a loopback upstream that is stopped and started again.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use operator::ServiceOffer;
use operator::controller::{Context, FINALIZER, OperatorConfig, error_policy, reconcile};
use serde_json::{Value, json};
use testkit::loopback::{serve, serve_on};
use testkit::upstream::echo;
use x402::Facilitator;

/// One request as the mock API server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: Value,
}

impl Seen {
    /// `PATCH serviceoffers/echo/status`, `POST events (UpstreamHealthy)`: what the
    /// assertions compare.
    fn line(&self) -> String {
        let path = self
            .path
            .trim_start_matches("/apis/obol.org/v1alpha1/namespaces/shop/")
            .trim_start_matches("/apis/events.k8s.io/v1/namespaces/shop/");
        if path.starts_with("events") {
            let name = if path == "events" { "" } else { " (repeat)" };
            format!(
                "{} events{name} {}",
                self.method,
                self.body["action"].as_str().unwrap_or("?")
            )
        } else {
            format!("{} {path}", self.method)
        }
    }
}

/// The mock API server: records each request and answers like an API server would
/// (the object for a patch, the event for an event), or with `fail` for status
/// writes while it is set.
#[derive(Clone, Default)]
struct ApiServer {
    seen: Arc<Mutex<Vec<Seen>>>,
    fail_status: Arc<Mutex<Option<StatusCode>>>,
}

impl ApiServer {
    fn client(&self, resource: Arc<Mutex<ServiceOffer>>) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().to_string();
                let path = request.uri().path().to_string();
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                server.seen.lock().unwrap().push(Seen {
                    method,
                    path: path.clone(),
                    body: body.clone(),
                });
                let failing = *server.fail_status.lock().unwrap();
                let (status, answer) = if path.contains("/events") {
                    (StatusCode::OK, body)
                } else if path.ends_with("/status") && failing.is_some() {
                    let code = failing.unwrap();
                    (
                        code,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "serviceoffers.obol.org \"echo\" is forbidden", "reason": "Forbidden", "code": code.as_u16()}),
                    )
                } else {
                    let mut object = serde_json::to_value(&*resource.lock().unwrap()).unwrap();
                    if path.ends_with("/status") {
                        object["status"] = body["status"].clone();
                    }
                    (StatusCode::OK, object)
                };
                send.send_response(
                    Response::builder()
                        .status(status)
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        });
        Client::new(service, "default")
    }

    /// The requests since the last call, as lines.
    fn take(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .drain(..)
            .map(|s| s.line())
            .collect()
    }

    fn take_raw(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().drain(..).collect()
    }
}

fn resource(upstream: &str, seller: &str) -> ServiceOffer {
    serde_norway::from_str(&format!(
        "apiVersion: obol.org/v1alpha1\nkind: ServiceOffer\nmetadata: {{name: echo, namespace: shop, generation: 1, uid: 5a7e0f6e-0000-4000-8000-000000000001}}\nspec:\n  upstream: {{url: '{upstream}', healthPath: /health}}\n  payment: {{network: base-sepolia, payTo: '{seller}', price: {{perRequest: '0.001'}}}}\n"
    ))
    .unwrap()
}

struct Fixture {
    _chain: devnet::Devnet,
    _dir: tempfile::TempDir,
    api: ApiServer,
    ctx: Arc<Context>,
    current: Arc<Mutex<ServiceOffer>>,
}

/// The operator over a mock API server; the offers' upstream is a loopback URL,
/// which only a cluster admin's `--allow-cross-namespace-upstreams` lets through.
async fn fixture(upstream: &str) -> Fixture {
    fixture_with(
        upstream,
        OperatorConfig {
            allow_cross_namespace_upstreams: true,
            ..OperatorConfig::default()
        },
    )
    .await
}

async fn fixture_with(upstream: &str, config: OperatorConfig) -> Fixture {
    let chain = testkit::chain::devnet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let facilitator: Arc<dyn Facilitator> =
        testkit::embedded::facilitator(&chain, dir.path()).await;
    let seller = chain.accounts()[1].address().to_string();
    let current = Arc::new(Mutex::new(resource(upstream, &seller)));
    let api = ApiServer::default();
    let client = api.client(current.clone());
    let ctx = Arc::new(Context::new(client, facilitator, config).unwrap());
    Fixture {
        _chain: chain,
        _dir: dir,
        api,
        ctx,
        current,
    }
}

impl Fixture {
    /// The resource as the watch would hand it over now.
    fn current(&self) -> Arc<ServiceOffer> {
        Arc::new(self.current.lock().unwrap().clone())
    }

    /// Takes a status the operator applied into the resource, as the API server does.
    fn store_status(&self, seen: &[Seen]) {
        let patch = seen
            .iter()
            .rev()
            .find(|s| s.path.ends_with("/status"))
            .unwrap();
        self.current.lock().unwrap().status =
            Some(serde_json::from_value(patch.body["status"].clone()).unwrap());
    }

    fn conditions(&self) -> Vec<(String, String, String)> {
        self.current
            .lock()
            .unwrap()
            .status
            .as_ref()
            .unwrap()
            .offer
            .conditions
            .iter()
            .map(|c| (c.kind.clone(), c.status.to_string(), c.reason.clone()))
            .collect()
    }
}

fn lines(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn triples(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    items
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[tokio::test]
async fn mock_apiserver_create_runs_the_stages_then_patches_status_upstream_down_and_back_delete_removes_the_finalizer()
 {
    let upstream = serve(echo()).await;
    let port = upstream.port();
    let f = fixture(&upstream.url()).await;

    // Created: the finalizer goes on first, and nothing else happens in that pass.
    let action = reconcile(f.current(), f.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let seen = f.api.take_raw();
    assert_eq!(
        seen.iter().map(Seen::line).collect::<Vec<_>>(),
        lines(&["PATCH serviceoffers/echo"])
    );
    assert_eq!(seen[0].body[1]["op"], "add");
    assert_eq!(seen[0].body[1]["value"], json!([FINALIZER]));
    f.current.lock().unwrap().metadata.finalizers = Some(vec![FINALIZER.to_string()]);

    // The watch sees the finalizer: the six stages run, then one status write and one
    // Event per new condition.
    let action = reconcile(f.current(), f.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    let seen = f.api.take_raw();
    assert_eq!(
        seen.iter().map(Seen::line).collect::<Vec<_>>(),
        lines(&[
            "PATCH serviceoffers/echo/status",
            "POST events ModelReady",
            "POST events UpstreamHealthy",
            "POST events PaymentGateReady",
            "POST events RoutePublished",
            "POST events Registered",
            "POST events Ready",
        ])
    );
    let status = &seen[0].body;
    assert_eq!(status["apiVersion"], "obol.org/v1alpha1");
    assert_eq!(status["status"]["observedGeneration"], 1);
    assert_eq!(status["status"]["endpoint"], "/services/echo");
    assert_eq!(seen[1].body["type"], "Normal");
    assert_eq!(seen[1].body["regarding"]["name"], "echo");
    f.store_status(&seen);
    assert_eq!(
        f.conditions(),
        triples(&[
            ("ModelReady", "True", "Skipped"),
            ("UpstreamHealthy", "True", "Healthy"),
            ("PaymentGateReady", "True", "Reconciled"),
            ("RoutePublished", "True", "Reconciled"),
            ("Registered", "True", "Disabled"),
            ("Ready", "True", "Reconciled"),
        ])
    );

    // Nothing changed: no write at all.
    reconcile(f.current(), f.ctx.clone()).await.unwrap();
    assert_eq!(f.api.take(), Vec::<String>::new());

    // The upstream dies: UpstreamHealthy goes False and takes Ready with it; the
    // offer is looked at again sooner.
    upstream.stop().await;
    let action = reconcile(f.current(), f.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let seen = f.api.take_raw();
    f.store_status(&seen);
    assert_eq!(
        seen.iter().map(Seen::line).collect::<Vec<_>>(),
        lines(&[
            "PATCH serviceoffers/echo/status",
            "POST events UpstreamHealthy",
            "POST events PaymentGateReady",
            "POST events RoutePublished",
            "POST events Ready",
        ])
    );
    let unhealthy = seen
        .iter()
        .find(|s| s.body["action"] == "UpstreamHealthy")
        .unwrap();
    assert_eq!(unhealthy.body["type"], "Warning");
    assert_eq!(unhealthy.body["reason"], "Unhealthy");
    assert_eq!(
        f.conditions(),
        triples(&[
            ("ModelReady", "True", "Skipped"),
            ("UpstreamHealthy", "False", "Unhealthy"),
            ("PaymentGateReady", "False", "WaitingForUpstream"),
            ("RoutePublished", "False", "WaitingForUpstream"),
            ("Registered", "True", "Disabled"),
            ("Ready", "False", "Reconciling"),
        ])
    );

    // It comes back on the same port: Ready again.
    let _back = serve_on(echo(), port).await;
    reconcile(f.current(), f.ctx.clone()).await.unwrap();
    let seen = f.api.take_raw();
    f.store_status(&seen);
    // Each condition that fell comes back; the same Events as at creation, so the
    // recorder counts them as a series (a PATCH of the first one) rather than new ones.
    assert_eq!(
        seen.iter().map(Seen::line).collect::<Vec<_>>(),
        lines(&[
            "PATCH serviceoffers/echo/status",
            "PATCH events (repeat) UpstreamHealthy",
            "PATCH events (repeat) PaymentGateReady",
            "PATCH events (repeat) RoutePublished",
            "PATCH events (repeat) Ready",
        ])
    );
    assert!(
        f.conditions().iter().all(|c| c.1 == "True"),
        "{:?}",
        f.conditions()
    );

    // Deleted: the cleanup's Event, then the finalizer comes off (test, then remove).
    f.current.lock().unwrap().metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-26T06:00:00Z".parse().unwrap(),
        ));
    let action = reconcile(f.current(), f.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let seen = f.api.take_raw();
    assert_eq!(
        seen.iter().map(Seen::line).collect::<Vec<_>>(),
        lines(&["POST events Cleanup", "PATCH serviceoffers/echo"])
    );
    assert_eq!(
        seen[1].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
}

#[tokio::test]
async fn mock_apiserver_a_refused_status_write_is_an_error_that_backs_off_and_resets() {
    let upstream = serve(echo()).await;
    let f = fixture(&upstream.url()).await;
    f.current.lock().unwrap().metadata.finalizers = Some(vec![FINALIZER.to_string()]);
    *f.api.fail_status.lock().unwrap() = Some(StatusCode::FORBIDDEN);

    let mut pauses = Vec::new();
    for _ in 0..3 {
        let error = reconcile(f.current(), f.ctx.clone()).await.unwrap_err();
        assert!(
            error.to_string().contains("serviceoffers/status"),
            "{error}"
        );
        pauses.push(error_policy(f.current(), &error, f.ctx.clone()));
    }
    assert_eq!(
        pauses,
        [1, 2, 4].map(|s| Action::requeue(Duration::from_secs(s)))
    );
    assert_eq!(
        f.api.take(),
        lines(&[
            "PATCH serviceoffers/echo/status",
            "PATCH serviceoffers/echo/status",
            "PATCH serviceoffers/echo/status",
        ])
    );

    // The API server lets it through again: the count resets.
    *f.api.fail_status.lock().unwrap() = None;
    reconcile(f.current(), f.ctx.clone()).await.unwrap();
    let error = {
        *f.api.fail_status.lock().unwrap() = Some(StatusCode::FORBIDDEN);
        f.current.lock().unwrap().status = None;
        reconcile(f.current(), f.ctx.clone()).await.unwrap_err()
    };
    assert_eq!(
        error_policy(f.current(), &error, f.ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
}

/// A tenant in namespace `shop` points its offer at a URL outside its namespace (a
/// loopback server stands in for 169.254.169.254 or another tenant's Service): the
/// operator refuses it in every condition, saying why and which flag opens it, and
/// never probes the URL.
#[tokio::test]
async fn mock_apiserver_an_upstream_outside_the_namespace_is_refused_without_a_probe() {
    let upstream = testkit::upstream::recording().await;
    let f = fixture_with(upstream.url.as_str(), OperatorConfig::default()).await;
    f.current.lock().unwrap().metadata.finalizers = Some(vec![FINALIZER.to_string()]);
    reconcile(f.current(), f.ctx.clone()).await.unwrap();
    let seen = f.api.take_raw();
    f.store_status(&seen);
    assert!(
        f.conditions()
            .iter()
            .all(|(_, status, reason)| status == "False" && reason == "UpstreamNotAllowed"),
        "{:?}",
        f.conditions()
    );
    let message = f.current().status.as_ref().unwrap().offer.conditions[0]
        .message
        .clone();
    assert!(message.contains("namespace shop"), "{message}");
    assert!(
        message.contains("--allow-cross-namespace-upstreams"),
        "{message}"
    );
    assert_eq!(upstream.calls(), 0, "a refused upstream is never called");
}

/// Tenant `shop` publishes an offer on the path an older offer in namespace
/// `tenant-b` serves (its name sorts first, as a thief would pick it): refused, and
/// the condition names the holder.
#[tokio::test]
async fn mock_apiserver_a_second_offer_on_a_taken_path_is_refused_naming_the_first() {
    let upstream = serve(echo()).await;
    let f = fixture(&upstream.url()).await;
    f.current.lock().unwrap().metadata.finalizers = Some(vec![FINALIZER.to_string()]);
    let mut holder = f.current().as_ref().clone();
    holder.metadata.namespace = Some("tenant-b".into());
    holder.metadata.name = Some("zz-victim".into());
    holder.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-12-01T00:00:00Z".parse().unwrap(),
        ));
    holder.spec.offer.path = Some("/services/echo".into());
    let (cache, mut writer) = kube::runtime::reflector::store::<ServiceOffer>();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(holder));
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(
        f.current().as_ref().clone(),
    ));
    f.ctx.watch_offers(cache);

    reconcile(f.current(), f.ctx.clone()).await.unwrap();
    let seen = f.api.take_raw();
    f.store_status(&seen);
    assert!(
        f.conditions()
            .iter()
            .all(|(_, status, reason)| status == "False" && reason == "PathTaken"),
        "{:?}",
        f.conditions()
    );
    let message = f.current().status.as_ref().unwrap().offer.conditions[5]
        .message
        .clone();
    assert!(message.contains("tenant-b/zz-victim"), "{message}");
}
