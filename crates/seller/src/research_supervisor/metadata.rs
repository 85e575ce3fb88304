//! Leaderboard metadata for a research offer: what a worker's `/status` says, turned
//! into registration metadata and written into the offer only when a value changed.
//! Apart from the supervisor because it is pure data shaping, tested without a worker.

use std::collections::BTreeMap;

use offers::ServiceOffer;
use serde_json::Value;

/// The leaderboard fields a worker's `/status` gives, as registration metadata.
pub(super) async fn leaderboard(
    http: &reqwest::Client,
    listen: &str,
) -> Option<BTreeMap<String, String>> {
    let status: Value = http
        .get(format!("http://{listen}/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(metadata_of(&status))
}

/// The registration metadata a worker's `/status` says: only the keys it knows, so
/// a worker that has run nothing yet leaves `sell research`'s first values alone.
fn metadata_of(status: &Value) -> BTreeMap<String, String> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let mut out = BTreeMap::new();
    out.insert("framework".into(), "autoresearch".into());
    out.insert(
        "gpu".into(),
        status["gpu"].as_str().unwrap_or("none").to_string(),
    );
    if let Some(n) = text(&status["total_experiments"]) {
        out.insert("total_experiments".into(), n);
    }
    if let Some(avg) = text(&status["avg_experiment_time"]) {
        out.insert("avg_experiment_time".into(), avg);
    }
    if let Some(best) = text(&status["best"]["val_bpb"]) {
        out.insert("best_val_bpb".into(), best);
    }
    if let Some(hash) = text(&status["best"]["train_hash"]) {
        out.insert("best_experiment_hash".into(), hash);
    }
    if let Some(at) = text(&status["updated"]) {
        out.insert("updated".into(), at);
    }
    out
}

/// `offer` with `fresh` in its registration metadata, or `None` when nothing changed.
pub(super) fn with_metadata(
    offer: &ServiceOffer,
    fresh: &BTreeMap<String, String>,
) -> Option<ServiceOffer> {
    let registration = offer.spec.registration.as_ref()?;
    let changed = fresh
        .iter()
        .any(|(k, v)| registration.metadata.get(k) != Some(v));
    if !changed {
        return None;
    }
    let mut next = offer.clone();
    if let Some(r) = next.spec.registration.as_mut() {
        r.metadata
            .extend(fresh.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_leaderboard_comes_from_the_workers_status_and_only_changes_write() {
        let idle = json!({"status": "idle", "gpu": null, "total_experiments": 0, "best": null});
        let first = metadata_of(&idle);
        assert_eq!(first["gpu"], "none");
        assert_eq!(first["total_experiments"], "0");
        assert!(!first.contains_key("best_val_bpb"));
        assert!(!first.contains_key("updated"), "sell research's time stays");
        let ran = json!({
            "status": "idle",
            "gpu": "NVIDIA H100",
            "total_experiments": 2,
            "avg_experiment_time": 3.5,
            "best": {"val_bpb": 0.9979, "train_hash": "sha256:ab"},
            "updated": "2026-11-26T05:00:00Z"
        });
        let fresh = metadata_of(&ran);
        assert_eq!(fresh["best_val_bpb"], "0.9979");
        assert_eq!(fresh["best_experiment_hash"], "sha256:ab");
        assert_eq!(fresh["avg_experiment_time"], "3.5");
        assert_eq!(fresh["updated"], "2026-11-26T05:00:00Z");

        let mut offer: ServiceOffer = serde_json::from_value(json!({
            "metadata": {"name": "w"},
            "spec": {
                "upstream": "http://127.0.0.1:1",
                "payment": {"network": "base-sepolia", "payTo": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "price": {"perRequest": "0.041667"}},
                "registration": {"enabled": true, "metadata": {"framework": "autoresearch", "updated": "then"}}
            }
        }))
        .expect("an offer");
        let next = with_metadata(&offer, &fresh).expect("changed");
        assert_eq!(
            next.spec.registration.as_ref().expect("r").metadata["best_val_bpb"],
            "0.9979"
        );
        offer = next;
        assert!(
            with_metadata(&offer, &fresh).is_none(),
            "same values: no write"
        );
    }
}
