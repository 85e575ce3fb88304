//! Which requests a route forwards to its upstream at all.
//!
//! A model server's API is more than inference: Ollama's `DELETE /api/delete` removes
//! a model, `POST /api/pull` fills the disk, `/api/create` and `/api/copy` write.
//! A buyer who pays one request's price must not reach those. So an inference route
//! carries an allow-list of `METHOD PATH` entries (the inference API by default, see
//! [`INFERENCE_API`]) and every other request is answered 404 by the gateway, before
//! any payment is asked for and without the upstream seeing it. Routes without a list
//! (`sell http`) forward every path, as before.
//!
//! An entry is `METHOD PATH` (that method only; `GET` also admits `HEAD`) or `PATH`
//! (any method). A `PATH` ending in `/*` admits everything below it, e.g.
//! `GET /v1/models/*`.

use std::fmt;

/// The inference API an inference offer forwards by default: the OpenAI-compatible
/// endpoints and Ollama's native chat, generate, embed and read-only model calls.
pub const INFERENCE_API: [&str; 9] = [
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/embeddings",
    "GET /v1/models",
    "POST /api/chat",
    "POST /api/generate",
    "POST /api/embed",
    "GET /api/tags",
    "POST /api/show",
];

/// One request shape a route forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedPath {
    /// Upper-case method, or `None` for any.
    method: Option<String>,
    /// The path below the route's prefix, starting with `/` (without the `/*`).
    path: String,
    /// The entry ended in `/*`: the path and everything below it.
    subtree: bool,
}

/// Why an allow-list entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "allowed path {given:?} {why}; write METHOD /path (e.g. \"POST /api/chat\"), /path for any method, or /path/* for everything below it"
)]
pub struct AllowedPathError {
    /// What was given.
    pub given: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl AllowedPath {
    /// Parses `METHOD /path`, `/path` or either with a trailing `/*`.
    pub fn parse(text: &str) -> Result<Self, AllowedPathError> {
        let bad = |why| AllowedPathError {
            given: text.to_string(),
            why,
        };
        let mut words = text.split_whitespace();
        let (method, path) = match (words.next(), words.next(), words.next()) {
            (Some(path), None, None) => (None, path),
            (Some(method), Some(path), None) => (Some(method), path),
            (None, _, _) => return Err(bad("is empty")),
            _ => return Err(bad("has more than a method and a path")),
        };
        let method = match method {
            None => None,
            Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Some(m.to_ascii_uppercase())
            }
            Some(_) => return Err(bad("has a method that is not a word like GET or POST")),
        };
        if !path.starts_with('/') {
            return Err(bad("does not start with /"));
        }
        if crate::route::check_path(path).is_err() || path.contains(['?', '#']) {
            return Err(bad(
                "has a dot segment, an encoded slash, a query or a fragment",
            ));
        }
        let (path, subtree) = match path.strip_suffix("/*") {
            Some(base) => (base, true),
            None if path.contains('*') => return Err(bad("uses * other than as a final /*")),
            None => (path, false),
        };
        Ok(Self {
            method,
            path: path.to_string(),
            subtree,
        })
    }

    /// Whether a `method` request for `rest` (the path below the route's prefix)
    /// matches this entry.
    pub fn allows(&self, method: &str, rest: &str) -> bool {
        let method_ok = match &self.method {
            None => true,
            Some(m) => m.eq_ignore_ascii_case(method) || (m == "GET" && method == "HEAD"),
        };
        let path_ok = if self.subtree {
            rest == self.path
                || rest
                    .strip_prefix(self.path.as_str())
                    .is_some_and(|below| below.starts_with('/'))
        } else {
            rest == self.path
        };
        method_ok && path_ok
    }
}

impl fmt::Display for AllowedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.method {
            write!(f, "{m} ")?;
        }
        f.write_str(&self.path)?;
        if self.subtree {
            f.write_str("/*")?;
        }
        Ok(())
    }
}

/// [`INFERENCE_API`] parsed.
pub fn inference_api() -> Vec<AllowedPath> {
    INFERENCE_API
        .iter()
        .filter_map(|entry| AllowedPath::parse(entry).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inference_api_parses_whole() {
        assert_eq!(inference_api().len(), INFERENCE_API.len());
        let shown: Vec<String> = inference_api().iter().map(ToString::to_string).collect();
        assert_eq!(shown, INFERENCE_API);
    }

    #[test]
    fn entries_match_their_method_and_exact_path_only() {
        let chat = AllowedPath::parse("post /api/chat").unwrap();
        assert!(chat.allows("POST", "/api/chat"));
        assert!(!chat.allows("GET", "/api/chat"));
        assert!(!chat.allows("DELETE", "/api/chat"));
        assert!(!chat.allows("POST", "/api/chat/x"));
        assert!(!chat.allows("POST", "/api/chatty"));
        let tags = AllowedPath::parse("GET /api/tags").unwrap();
        assert!(tags.allows("HEAD", "/api/tags"));
        let any = AllowedPath::parse("/api/ps").unwrap();
        assert!(any.allows("GET", "/api/ps") && any.allows("DELETE", "/api/ps"));
        let below = AllowedPath::parse("GET /v1/models/*").unwrap();
        assert!(below.allows("GET", "/v1/models/llama3"));
        assert!(below.allows("GET", "/v1/models"));
        assert!(!below.allows("GET", "/v1/modelsx"));
        assert_eq!(below.to_string(), "GET /v1/models/*");
    }

    #[test]
    fn unusable_entries_are_refused_with_the_form_to_write() {
        for bad in [
            "",
            "api/chat",
            "POST api/chat",
            "POST /api/chat extra",
            "P0ST /api/chat",
            "/api/../delete",
            "/api/%2e%2e/delete",
            "/api/*/x",
            "/api/chat?x=1",
        ] {
            let err = AllowedPath::parse(bad).unwrap_err().to_string();
            assert!(err.contains("write METHOD /path"), "{bad}: {err}");
        }
    }
}
