//! The route table: which path prefix goes to which upstream, at what price.
//!
//! Routes arrive as values from whoever owns the offers; the gateway only matches
//! paths against them. Matching is by longest prefix on whole path segments, so
//! `/services/a` never captures `/services/ab`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use x402::wire::PaymentRequirements;

/// Default time an upstream has to send its response headers.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// Optional per-route traffic limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests per second admitted (token bucket, burst of the same size).
    pub rps: Option<u32>,
    /// Paid requests allowed at the upstream at once.
    pub max_in_flight: Option<u32>,
}

/// One paid (or free) service behind the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Offer name; the label in metrics and the catalog.
    pub name: String,
    /// Public path prefix, e.g. `/services/my-qwen` (no trailing slash).
    pub prefix: String,
    /// Where requests go, with the prefix stripped and the rest appended to its path.
    pub upstream: Url,
    /// Accepted payments; several networks or assets may be offered. Empty means free.
    pub accepts: Vec<PaymentRequirements>,
    /// What the service does, for the 402 resource and the catalog.
    pub description: String,
    /// Response mime type, for the 402 resource.
    pub mime_type: String,
    /// How the price was set, for people (e.g. "0.50 USDC per hour, charged as ...").
    pub price_note: Option<String>,
    /// Upstream response-header deadline; past it the buyer gets 504 and pays nothing.
    pub upstream_timeout: Duration,
    /// Traffic limits.
    pub limits: Limits,
    /// Paths under the prefix served without payment (e.g. `/health`), exact match.
    pub free_paths: Vec<String>,
    /// Set when the service must not be sold right now (upstream down, draining); the
    /// route then answers 503 with this reason instead of charging.
    pub unavailable: Option<String>,
    /// Settle before calling the upstream (long or costly jobs such as research runs):
    /// a buyer who moves the funds away mid-call then gets nothing, and a buyer
    /// charged for a call that failed redeems the same request later for free.
    pub settle_first: bool,
    /// The only requests forwarded (inference offers: the inference API plus the
    /// seller's `--allow-path`); any other answers 404 before payment. `None` forwards
    /// every path.
    pub allowed: Option<Vec<crate::allowed::AllowedPath>>,
}

impl Route {
    /// A paid route with defaults for everything but the essentials.
    pub fn new(
        name: impl Into<String>,
        prefix: impl Into<String>,
        upstream: Url,
        accepts: Vec<PaymentRequirements>,
    ) -> Self {
        let name = name.into();
        Self {
            description: format!("{name} (x402-paid)"),
            name,
            prefix: normalize_prefix(&prefix.into()),
            upstream,
            accepts,
            mime_type: "application/json".to_string(),
            price_note: None,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            limits: Limits::default(),
            free_paths: Vec::new(),
            unavailable: None,
            settle_first: false,
            allowed: None,
        }
    }

    /// Whether a `method` request for `rest` is forwarded at all: always without an
    /// allow-list, else when an entry matches or it is a GET of the route's root
    /// (where discovery, probes and pricing research read its 402) or of a free path
    /// (health).
    pub fn forwards(&self, method: &str, rest: &str) -> bool {
        let Some(allowed) = &self.allowed else {
            return true;
        };
        let read = matches!(method, "GET" | "HEAD");
        let root_or_free =
            rest.is_empty() || rest == "/" || self.free_paths.iter().any(|p| p == rest);
        (read && root_or_free) || allowed.iter().any(|a| a.allows(method, rest))
    }

    /// Whether a request for `rest` (the path below the prefix) needs no payment.
    pub fn is_free(&self, rest: &str) -> bool {
        self.accepts.is_empty() || self.free_paths.iter().any(|p| p == rest)
    }

    /// The upstream URL for `rest` (starting with `/` or empty) and the raw query.
    pub fn upstream_url(&self, rest: &str, query: Option<&str>) -> Url {
        let mut url = self.upstream.clone();
        let base = url.path().trim_end_matches('/').to_string();
        let path = match rest {
            "" if base.is_empty() => "/".to_string(),
            "" => base,
            rest => format!("{base}{rest}"),
        };
        url.set_path(&path);
        url.set_query(query);
        url
    }
}

fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_end_matches('/');
    if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

/// The routes being served, ordered for longest-prefix matching.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Orders `routes` so the most specific prefix is tried first.
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(a.name.cmp(&b.name))
        });
        Self {
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    /// All routes, most specific first.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The route serving `path` and the remainder below its prefix.
    pub fn find<'a, 'p>(&'a self, path: &'p str) -> Option<(&'a Arc<Route>, &'p str)> {
        self.routes.iter().find_map(|route| {
            let rest = path.strip_prefix(route.prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((route, rest))
        })
    }
}

/// Why a request path is refused before any route is consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `.` or `..` segment (literal, percent-encoded once or more, or with a
    /// `;parameter` after it), an encoded slash or a backslash.
    #[error(
        "the path {0:?} contains a dot segment (also as ..; or percent-encoded, even twice), an encoded slash or a backslash; send the canonical path, with dot segments resolved and no %2e, %2f or %5c"
    )]
    Traversal(String),
}

/// Percent-decoding rounds a path may need before it stops changing. A real path
/// needs at most two (a literal `%` is sent as `%25`); one that still decodes after
/// this many is refused rather than guessed at.
const MAX_DECODE_ROUNDS: usize = 3;

/// Refuses paths that could escape the route prefix at the upstream.
///
/// The gateway forwards the path as it came, and upstreams differ in how they read
/// it: most decode once, some decode twice (`%252e%252e` becomes `..`), Tomcat-style
/// servers drop `;parameters` from a segment (`..;` becomes `..`) and C-based ones
/// stop at a NUL. So the path is checked as it came and again after each round of
/// percent-decoding, until decoding changes nothing, and every reading must be free
/// of dot segments, encoded slashes and backslashes.
pub fn check_path(path: &str) -> Result<(), PathError> {
    let mut reading = path.to_string();
    for _ in 0..=MAX_DECODE_ROUNDS {
        if escapes(&reading) {
            return Err(PathError::Traversal(path.to_string()));
        }
        match percent_decode_once(&reading) {
            Some(decoded) => reading = decoded,
            None => return Ok(()),
        }
    }
    Err(PathError::Traversal(path.to_string()))
}

/// Whether one reading of a path has a dot segment, an encoded slash or a backslash.
fn escapes(reading: &str) -> bool {
    let lower = reading.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || reading.contains('\\') {
        return true;
    }
    reading.split('/').any(|segment| {
        let name = segment.split([';', '\0']).next().unwrap_or(segment);
        name == "." || name == ".."
    })
}

/// One round of percent-decoding, or `None` when there is no `%XX` left to decode.
/// Bytes that are not UTF-8 become U+FFFD, which cannot form a dot or a slash.
fn percent_decode_once(reading: &str) -> Option<String> {
    let bytes = reading.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex_value(hi).zip(hex_value(lo)),
            _ => None,
        };
        match escaped {
            Some((hi, lo)) => {
                out.push(hi << 4 | lo);
                changed = true;
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    changed.then(|| String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, prefix: &str, upstream: &str) -> Route {
        Route::new(name, prefix, Url::parse(upstream).unwrap(), Vec::new())
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let table = RouteTable::new(vec![
            route("a", "/services/a", "http://127.0.0.1:1"),
            route("ab", "/services/a/b", "http://127.0.0.1:2"),
        ]);
        let (r, rest) = table.find("/services/a/b/c").unwrap();
        assert_eq!((r.name.as_str(), rest), ("ab", "/c"));
        let (r, rest) = table.find("/services/a/x").unwrap();
        assert_eq!((r.name.as_str(), rest), ("a", "/x"));
        let (r, rest) = table.find("/services/a").unwrap();
        assert_eq!((r.name.as_str(), rest), ("a", ""));
        assert!(table.find("/services/abc").is_none());
        assert!(table.find("/other").is_none());
    }

    #[test]
    fn prefix_is_normalized() {
        assert_eq!(route("x", "services/x/", "http://h").prefix, "/services/x");
    }

    #[test]
    fn upstream_url_appends_rest_to_base_path() {
        let r = route("x", "/services/x", "http://127.0.0.1:9/api/");
        assert_eq!(
            r.upstream_url("/v1/chat", Some("a=1")).as_str(),
            "http://127.0.0.1:9/api/v1/chat?a=1"
        );
        assert_eq!(r.upstream_url("", None).as_str(), "http://127.0.0.1:9/api");
        let bare = route("y", "/services/y", "http://127.0.0.1:9");
        assert_eq!(bare.upstream_url("", None).as_str(), "http://127.0.0.1:9/");
    }

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "/services/x/../admin",
            "/services/x/%2e%2e/admin",
            "/services/x/%2E./admin",
            "/services/x/a%2fb",
            "/services/x/./y",
            "/services/x\\..\\y",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in ["/services/x/v1/chat", "/services/x/a.b/..c", "/"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn tomcat_parameters_and_double_encoding_are_refused() {
        for bad in [
            "/services/x/..;/admin",
            "/services/x/..;jsessionid=1/admin",
            "/services/x/.;/y",
            "/services/x/..%3b/admin",
            "/services/x/%252e%252e/admin",
            "/services/x/%252E%252e/admin",
            "/services/x/.%2e/admin",
            "/services/x/.%252e/admin",
            "/services/x/%25252e%25252e/admin",
            "/services/x/a%252fb",
            "/services/x/a%255cb",
            "/services/x/..%00/admin",
            "/services/x/%2525252e",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in [
            "/services/x/a..;/b",
            "/services/x/100%25",
            "/services/x/%2525",
            "/services/x/a;b/c",
            "/services/x/%zz",
            "/services/x/%",
        ] {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn free_paths_and_free_routes() {
        let mut r = route("x", "/services/x", "http://h");
        assert!(r.is_free("/anything"), "no accepts means free");
        r.accepts.push(x402::wire::PaymentRequirements::exact(
            x402::network::Network::BASE_SEPOLIA,
            &x402::network::Network::BASE_SEPOLIA
                .default_asset()
                .unwrap(),
            alloy::primitives::U256::from(1000),
            alloy::primitives::Address::ZERO,
            60,
        ));
        r.free_paths.push("/health".into());
        assert!(r.is_free("/health"));
        assert!(!r.is_free("/v1/chat"));
    }
}
