//! Where an offer lives: its public path on the gateway (clear of the gateway's own
//! paths, no traversal) and the upstream URL it forwards to, including the obol CRD's
//! service/namespace/port form.

use reqwest::Url;

use super::ValidationError;
use crate::spec::ServiceOffer;

/// Paths the gateway serves itself; an offer may not sit on or under them.
pub const RESERVED_PATHS: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/skill.md",
    "/api",
    "/openapi.json",
    "/.well-known",
];

/// Checks a public path (`/services/<name>` by default).
pub fn check_path(path: &str) -> Result<String, ValidationError> {
    let path = path.trim_end_matches('/');
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-');
    if !path.starts_with('/') || !path.chars().all(allowed) || path.len() < 2 {
        return Err(ValidationError::InvalidPath(path.to_string()));
    }
    if path.split('/').any(|s| s == ".." || s == ".") {
        return Err(ValidationError::PathTraversal(path.to_string()));
    }
    for reserved in RESERVED_PATHS {
        if path == *reserved || path.starts_with(&format!("{reserved}/")) {
            return Err(ValidationError::ReservedPath {
                path: path.to_string(),
                reserved: (*reserved).to_string(),
            });
        }
    }
    Ok(path.to_string())
}

/// The upstream base URL: `upstream.url`, or the reference's service and port mapped
/// to loopback (both run on this machine).
pub(super) fn upstream_url(offer: &ServiceOffer) -> Result<Url, ValidationError> {
    let up = &offer.spec.upstream;
    let text = match (&up.url, &up.service, up.port) {
        (Some(url), _, _) => url.clone(),
        (None, Some(service), Some(port)) => {
            let host = if service == "localhost" || service.contains('.') {
                service.as_str()
            } else {
                "127.0.0.1"
            };
            format!("http://{host}:{port}")
        }
        (None, _, Some(port)) => format!("http://127.0.0.1:{port}"),
        _ => return Err(ValidationError::UpstreamRequired),
    };
    let url = Url::parse(&text)
        .map_err(|e| ValidationError::InvalidUpstream(text.clone(), e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ValidationError::InvalidUpstream(
            text,
            "must be an http:// or https:// URL with a host".into(),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        assert_eq!(check_path("/services/x/").unwrap(), "/services/x");
        assert_eq!(
            check_path("services/x").unwrap_err().to_string(),
            "invalid path \"services/x\": must start with / and use only letters, digits, /, _, . and -"
        );
        assert_eq!(
            check_path("/services/../x").unwrap_err().to_string(),
            "invalid path \"/services/../x\": path traversal not allowed"
        );
        assert_eq!(
            check_path("/api/x").unwrap_err().to_string(),
            "path /api/x collides with the reserved platform path /api"
        );
    }
}
