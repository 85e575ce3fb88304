//! Which ServiceOffers a cluster serves: the tenancy rules.
//!
//! A tenant who may write ServiceOffers in one namespace must not be able to sell
//! what is not theirs through the internet-facing gateway: another namespace's
//! Services, the node's metadata endpoint (`169.254.169.254`), `kube-system`, or
//! anything outside the cluster; nor take another tenant's public path (and its
//! traffic, paid to the tenant's own `payTo`). So:
//!
//! - an upstream is a Service in the offer's own namespace: `{service, port}`
//!   (`namespace` absent or the same), or a URL whose host is exactly
//!   `<service>.<own namespace>.svc.<cluster domain>`. Anything else is refused
//!   unless the cluster admin passes `--allow-cross-namespace-upstreams`. Service and
//!   namespace names must be DNS labels either way, since they are pasted into a URL
//!   (`service: "169.254.169.254/x#"` would otherwise become that host);
//! - a path belongs to the oldest offer claiming it (creationTimestamp, ties by
//!   namespace then name): a newer offer with the same path, or with a path nested
//!   under (or above) another namespace's path, is refused with a condition naming
//!   the holder.
//!
//! The operator writes the refusal into the offer's status; every gateway replica
//! applies the same rules to its own caches and leaves a refused offer out of its
//! route table, so a stale or forged status never routes anything.

use std::sync::Arc;

use kube::ResourceExt;

use crate::crd::ServiceOffer;

/// The cluster admin's choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Cluster DNS suffix of Services, for the URL form of an own-namespace upstream.
    pub cluster_domain: String,
    /// Let offers name Services in other namespaces and any URL (the pre-tenancy
    /// behaviour), for a cluster whose offer writers are all trusted.
    pub allow_cross_namespace_upstreams: bool,
}

/// Why an offer is not served; the operator writes it into every condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The upstream is outside the offer's namespace, or not a Service at all.
    UpstreamNotAllowed(String),
    /// An older offer holds the path.
    PathTaken {
        /// This offer's path.
        path: String,
        /// The holder, as `namespace/name`.
        holder: String,
        /// The holder's path (equal to `path`, or nested with it).
        holder_path: String,
    },
}

impl Refusal {
    /// The condition's machine reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::UpstreamNotAllowed(_) => "UpstreamNotAllowed",
            Refusal::PathTaken { .. } => "PathTaken",
        }
    }

    /// For people: what is wrong and what to write instead.
    pub fn message(&self) -> String {
        match self {
            Refusal::UpstreamNotAllowed(why) => why.clone(),
            Refusal::PathTaken {
                path,
                holder,
                holder_path,
            } if path == holder_path => format!(
                "path {path} is already served by ServiceOffer {holder}, which is older; set spec.path to another path"
            ),
            Refusal::PathTaken {
                path,
                holder,
                holder_path,
            } => format!(
                "path {path} overlaps {holder_path}, served by ServiceOffer {holder} in another namespace, which is older; set spec.path to a path outside {holder_path}"
            ),
        }
    }
}

/// Whether `text` is a DNS label as Kubernetes names Services and namespaces.
fn dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// The namespace `resource` lives in (`default` for a namespaceless test object,
/// as the operator reads it).
fn namespace_of(resource: &ServiceOffer) -> String {
    resource.namespace().unwrap_or_else(|| "default".into())
}

/// Why `resource`'s upstream may not be served under `policy`, if it may not.
pub fn upstream_refusal(resource: &ServiceOffer, policy: &Policy) -> Option<Refusal> {
    let own = namespace_of(resource);
    let upstream = &resource.spec.offer.upstream;
    let refuse = |why: String| Some(Refusal::UpstreamNotAllowed(why));
    let flag = "(a cluster admin may allow it with the operator's and gateways' --allow-cross-namespace-upstreams)";
    if let Some(service) = &upstream.service
        && !dns_label(service)
    {
        return refuse(format!(
            "upstream.service {service:?} is not a Service name (lowercase letters, digits and -); name a Service in namespace {own}"
        ));
    }
    if let Some(namespace) = &upstream.namespace
        && !dns_label(namespace)
    {
        return refuse(format!(
            "upstream.namespace {namespace:?} is not a namespace name; leave it out to use namespace {own}"
        ));
    }
    if policy.allow_cross_namespace_upstreams {
        return None;
    }
    if let Some(url) = &upstream.url {
        let want = format!("<service>.{own}.svc.{}", policy.cluster_domain);
        let host = reqwest::Url::parse(url).ok().and_then(|u| {
            matches!(u.scheme(), "http" | "https")
                .then(|| u.host_str().map(|h| h.trim_end_matches('.').to_string()))
                .flatten()
        });
        let suffix = format!(".{own}.svc.{}", policy.cluster_domain);
        let ok = host
            .as_deref()
            .is_some_and(|h| h.strip_suffix(&suffix).is_some_and(dns_label));
        if !ok {
            return refuse(format!(
                "upstream.url {url} is not a Service in this offer's namespace {own}; use `upstream: {{service: NAME, port: PORT}}` or a URL on {want} {flag}"
            ));
        }
        return None;
    }
    match &upstream.namespace {
        Some(namespace) if upstream.service.is_some() && *namespace != own => refuse(format!(
            "upstream.namespace {namespace} is not this offer's namespace {own}; an offer sells only Services in its own namespace: create the offer in {namespace}, or remove upstream.namespace {flag}"
        )),
        _ => None,
    }
}

/// The public path `resource` claims, when it has a valid one (an invalid path is
/// the reconciler's InvalidSpec, not a conflict).
fn path_of(resource: &ServiceOffer) -> Option<String> {
    let spec = &resource.spec.offer;
    let wanted = spec
        .path
        .clone()
        .unwrap_or_else(|| format!("/services/{}", resource.name_any()));
    offers::validate::check_path(&wanted).ok()
}

/// Whether one path is the other or lies under it by whole segments (the gateway
/// matches the longest prefix, so a nested path takes the outer one's traffic).
fn nested(a: &str, b: &str) -> bool {
    let under = |inner: &str, outer: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    a == b || under(a, b) || under(b, a)
}

/// Age order: the older creationTimestamp first (an offer without one, not yet
/// stored by the API server, last), then namespace, then name.
fn age_key(resource: &ServiceOffer) -> (bool, String, String, String) {
    let created = resource.metadata.creation_timestamp.as_ref();
    (
        created.is_none(),
        created.map(|t| t.0.to_string()).unwrap_or_default(),
        namespace_of(resource),
        resource.name_any(),
    )
}

/// The path refusal of `target` among `all` (which may or may not contain it):
/// the oldest claimant of a path keeps it. Offers being deleted claim nothing.
pub fn path_refusal(target: &ServiceOffer, all: &[Arc<ServiceOffer>]) -> Option<Refusal> {
    let path = path_of(target)?;
    let mine = age_key(target);
    let (own_namespace, own_name) = (namespace_of(target), target.name_any());
    // The holder is the oldest of the older offers whose path conflicts.
    let (_, holder, holder_path) = all
        .iter()
        .map(AsRef::as_ref)
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter(|o| !(namespace_of(o) == own_namespace && o.name_any() == own_name))
        .filter_map(|o| {
            let age = age_key(o);
            if age >= mine {
                return None;
            }
            let holder_path = path_of(o)?;
            let same_namespace = namespace_of(o) == own_namespace;
            let conflict = holder_path == path || (!same_namespace && nested(&path, &holder_path));
            conflict.then_some((age, o, holder_path))
        })
        .min_by(|a, b| a.0.cmp(&b.0))?;
    Some(Refusal::PathTaken {
        path,
        holder: format!("{}/{}", namespace_of(holder), holder.name_any()),
        holder_path,
    })
}

/// Why `target` is not served, if it is not: its upstream first, then its path.
pub fn refusal(
    target: &ServiceOffer,
    all: &[Arc<ServiceOffer>],
    policy: &Policy,
) -> Option<Refusal> {
    upstream_refusal(target, policy).or_else(|| path_refusal(target, all))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An offer as a tenant writes it: `created` orders the offers by age.
    fn offer(namespace: &str, name: &str, created: &str, extra: &str) -> ServiceOffer {
        serde_norway::from_str(&format!(
            "apiVersion: obol.org/v1alpha1\nkind: ServiceOffer\nmetadata: {{name: {name}, namespace: {namespace}, creationTimestamp: '2026-12-01T00:00:{created}Z'}}\nspec:\n  payment: {{network: base-sepolia, payTo: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8', price: {{perRequest: '0.001'}}}}\n{extra}\n"
        ))
        .unwrap()
    }

    fn strict() -> Policy {
        Policy {
            cluster_domain: "cluster.local".into(),
            allow_cross_namespace_upstreams: false,
        }
    }

    fn reason_of(upstream: &str, policy: &Policy) -> Option<String> {
        let o = offer("tenant-a", "x", "00", &format!("  upstream: {upstream}"));
        upstream_refusal(&o, policy).map(|r| r.message())
    }

    #[test]
    fn a_hostile_tenant_cannot_sell_metadata_other_namespaces_or_the_internet() {
        for hostile in [
            "{url: 'http://169.254.169.254/latest/meta-data/'}",
            "{url: 'http://kube-dns.kube-system.svc.cluster.local:53'}",
            "{url: 'http://billing.tenant-b.svc.cluster.local:8080'}",
            "{url: 'http://10.0.0.7:8080'}",
            "{url: 'https://example.com'}",
            "{url: 'http://ollama:11434'}",
            "{url: 'http://ollama.tenant-a:11434'}",
            "{url: 'http://evil.com.tenant-a.svc.cluster.local'}",
            "{url: 'file:///etc/passwd'}",
            "{service: kube-dns, namespace: kube-system, port: 53}",
            "{service: billing, namespace: tenant-b, port: 8080}",
            "{service: '169.254.169.254/latest#', port: 80}",
            "{service: 'x', namespace: 'tenant-a.svc.evil.com/#', port: 80}",
        ] {
            let why = reason_of(hostile, &strict());
            assert!(why.is_some(), "{hostile} must be refused");
            assert!(
                why.as_deref().unwrap().contains("tenant-a"),
                "names the namespace to use: {why:?}"
            );
        }
        let why = reason_of("{service: kube-dns, namespace: kube-system}", &strict()).unwrap();
        assert!(why.contains("--allow-cross-namespace-upstreams"), "{why}");
    }

    #[test]
    fn own_namespace_services_are_served_and_the_admin_may_open_the_rest() {
        for fine in [
            "{service: ollama, port: 11434}",
            "{service: ollama, namespace: tenant-a, port: 11434}",
            "{url: 'http://ollama.tenant-a.svc.cluster.local:11434'}",
            "{url: 'https://ollama.tenant-a.svc.cluster.local./v1'}",
        ] {
            assert_eq!(reason_of(fine, &strict()), None, "{fine}");
        }
        let open = Policy {
            allow_cross_namespace_upstreams: true,
            ..strict()
        };
        for allowed in [
            "{url: 'http://10.0.0.7:8080'}",
            "{service: billing, namespace: tenant-b, port: 8080}",
        ] {
            assert_eq!(reason_of(allowed, &open), None, "{allowed}");
        }
        assert!(
            reason_of("{service: '169.254.169.254/#', port: 80}", &open).is_some(),
            "a name pasted into a URL is checked even when cross-namespace is allowed"
        );
    }

    #[test]
    fn a_second_offer_on_a_taken_path_is_refused_naming_the_first_whatever_its_name() {
        let victim = offer("tenant-b", "qwen", "05", "  path: /services/qwen");
        // Sorts first by namespace and by name, but is newer: it loses.
        let thief = offer("aaa", "aaa", "09", "  path: /services/qwen/");
        let nested_thief = offer(
            "aaa",
            "sub",
            "10",
            "  path: /services/qwen/v1/chat/completions",
        );
        let all: Vec<Arc<ServiceOffer>> = [&thief, &victim, &nested_thief]
            .into_iter()
            .cloned()
            .map(Arc::new)
            .collect();
        assert_eq!(path_refusal(&victim, &all), None, "the older keeps it");
        let taken = path_refusal(&thief, &all).unwrap();
        assert_eq!(taken.reason(), "PathTaken");
        assert!(taken.message().contains("tenant-b/qwen"), "{taken:?}");
        let nested = path_refusal(&nested_thief, &all).unwrap();
        assert!(nested.message().contains("tenant-b/qwen"), "{nested:?}");

        // Same age: namespace then name decides, the same way on every replica.
        let a = offer("ns-a", "one", "05", "  path: /services/same");
        let b = offer("ns-b", "one", "05", "  path: /services/same");
        let both: Vec<Arc<ServiceOffer>> = vec![Arc::new(b.clone()), Arc::new(a.clone())];
        assert_eq!(path_refusal(&a, &both), None);
        assert!(path_refusal(&b, &both).is_some());

        // Within one namespace, nesting is the tenant's own business; a duplicate
        // is still refused.
        let outer = offer("ns-a", "outer", "01", "  path: /services/mine");
        let inner = offer("ns-a", "inner", "02", "  path: /services/mine/v2");
        let twin = offer("ns-a", "twin", "03", "  path: /services/mine");
        let own: Vec<Arc<ServiceOffer>> = [&outer, &inner, &twin]
            .into_iter()
            .cloned()
            .map(Arc::new)
            .collect();
        assert_eq!(path_refusal(&inner, &own), None);
        assert!(path_refusal(&twin, &own).is_some());

        // An offer being deleted gives its path up.
        let mut leaving = victim.clone();
        leaving.metadata.deletion_timestamp = leaving.metadata.creation_timestamp.clone();
        let after: Vec<Arc<ServiceOffer>> = vec![Arc::new(leaving), Arc::new(thief.clone())];
        assert_eq!(path_refusal(&thief, &after), None);
    }
}
