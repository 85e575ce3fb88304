//! The checks on what the model passes to the tools: it may be prompt-injected, so URLs
//! must be http(s) with a host, and an upstream to sell is never link-local or a cloud
//! metadata address (those hand out the machine's credentials).

use std::net::{IpAddr, Ipv6Addr};

/// `text` as an http(s) URL with a host, or the refusal naming `field`.
pub(crate) fn http_url(field: &str, text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text.trim()).map_err(|e| {
        format!("{field} {text:?} is not a URL ({e}); write e.g. http://127.0.0.1:8080")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "{field} {text:?} is not an http(s) URL with a host; write e.g. http://127.0.0.1:8080"
        ));
    }
    Ok(url)
}

/// Whether `ip` is link-local (where cloud metadata services answer) or unspecified.
fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
                // AWS's IPv6 metadata address.
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

/// Refuses an upstream the model may not sell: not http(s), or link-local or a cloud
/// metadata name (checked on every address the name resolves to). Returns whether it
/// is on loopback, which the caller then checks further.
pub(crate) async fn upstream_allowed(text: &str) -> Result<bool, String> {
    let url = http_url("upstream", text)?;
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let refused = || {
        format!(
            "upstream {text:?} is a link-local or cloud-metadata address; agora mcp never sells those (they hand out the machine's credentials). Sell the service at its own address, or run agora sell yourself"
        )
    };
    if ["metadata", "metadata.google.internal", "instance-data"].contains(&host.as_str()) {
        return Err(refused());
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(|found| found.map(|a| a.ip()).collect())
            .unwrap_or_default(),
    };
    if addresses.iter().copied().any(link_local) {
        return Err(refused());
    }
    Ok(host == "localhost" || addresses.iter().any(IpAddr::is_loopback))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upstreams_must_be_http_and_never_link_local_or_metadata() {
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]:8080",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://0.0.0.0:8080",
            "http://[fd00:ec2::254]/",
            "file:///etc/passwd",
            "127.0.0.1:8080",
            "ftp://127.0.0.1/",
        ] {
            let err = upstream_allowed(bad).await.expect_err(bad);
            assert!(
                err.contains("link-local") || err.contains("http(s)") || err.contains("not a URL"),
                "{bad}: {err}"
            );
        }
        assert_eq!(upstream_allowed("http://127.0.0.1:8080").await, Ok(true));
        assert_eq!(upstream_allowed("http://[::1]:8080").await, Ok(true));
        assert_eq!(upstream_allowed("https://10.0.0.5/api").await, Ok(false));
        assert!(http_url("url", "javascript:alert(1)").is_err());
    }
}
