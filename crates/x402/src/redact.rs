//! What of an internal URL may be shown to someone outside the machine.
//!
//! RPC URLs carry provider API keys in their paths and queries, and upstream and
//! health-check URLs reveal a seller's private network. Answers, receipts, the
//! storefront and metrics show at most `scheme://host[:port]`; the full URL stays in
//! the operator's log.

/// `scheme://host[:port]` of `url`, or `"(hidden)"` when it does not parse, so a
/// malformed URL can never leak through verbatim.
pub fn origin(url: &str) -> String {
    match reqwest::Url::parse(url.trim()) {
        Ok(parsed) => match parsed.host_str() {
            Some(host) => match parsed.port() {
                Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
                None => format!("{}://{host}", parsed.scheme()),
            },
            None => "(hidden)".to_string(),
        },
        Err(_) => "(hidden)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn keeps_scheme_host_and_port_only() {
        assert_eq!(
            origin("https://base-sepolia.g.alchemy.com/v2/SECRETKEY?x=1#f"),
            "https://base-sepolia.g.alchemy.com"
        );
        assert_eq!(
            origin("http://user:pw@127.0.0.1:8545/path"),
            "http://127.0.0.1:8545"
        );
        assert_eq!(origin("not a url SECRETKEY"), "(hidden)");
        assert_eq!(origin("unix:/tmp/SECRET"), "(hidden)");
    }
}
