//! curl's request flags (`-X`, `-d`, `-H`) turned into a `buyer::RequestSpec`, a
//! request that can be built again and again: the same request goes out unpaid (to
//! read the 402), then with the payment, and once more on an automatic retry or
//! `--resume`, so a body from a file or stdin is read whole up front (`@-` can be read
//! only once).

use std::io::Read;

use anyhow::{Context, bail};
use buyer::RequestSpec;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use reqwest::{Method, Url};

/// Reads the flags; `-d @-` reads stdin to its end here. `-X`, else POST with a body
/// and GET without (curl's habit); `-H`, plus a Content-Type for `-d` when none was
/// given.
pub fn spec(
    url: &str,
    method: Option<&str>,
    data: Option<&str>,
    headers: &[String],
) -> anyhow::Result<RequestSpec> {
    let url = parse_url(url)?;
    let body = data.map(read_data).transpose()?;
    let method = match method {
        Some(m) => Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| anyhow::anyhow!("-X {m:?} is not an HTTP method; write e.g. -X POST"))?,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut spec = RequestSpec::new(method, url);
    for h in headers {
        let (name, value) = parse_header(h)?;
        spec = spec.header(name, value);
    }
    if let Some(body) = body {
        if !spec.headers.contains_key(CONTENT_TYPE) {
            spec = spec.header(CONTENT_TYPE, HeaderValue::from_static(content_type(&body)));
        }
        spec = spec.body(body);
    }
    Ok(spec)
}

/// An http(s) URL; anything else says what to type.
fn parse_url(text: &str) -> anyhow::Result<Url> {
    let url: Url = text.trim().parse().map_err(|e| {
        anyhow::anyhow!("{text:?} is not a URL ({e}); write e.g. https://host/services/name/path")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "{text:?} is not an http(s) URL; agora pay speaks HTTP, e.g. https://host/services/name/path"
        );
    }
    Ok(url)
}

/// `-H 'Name: value'`.
fn parse_header(text: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let Some((name, value)) = text.split_once(':') else {
        bail!("-H {text:?} has no colon; write it as -H 'Name: value'");
    };
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| anyhow::anyhow!("-H {text:?}: {:?} is not a header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| anyhow::anyhow!("-H {text:?}: the value holds characters a header cannot"))?;
    Ok((name, value))
}

/// `-d DATA`, `-d @file` or `-d @-` (stdin), sent byte for byte (like curl's
/// `--data-binary`: newlines are kept, since JSON bodies are the common case).
fn read_data(data: &str) -> anyhow::Result<Vec<u8>> {
    match data.strip_prefix('@') {
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read the body from stdin (-d @-)")?;
            Ok(bytes)
        }
        Some(path) => std::fs::read(path).with_context(|| {
            format!(
                "cannot read -d @{path}; give a readable file, @- for stdin, or the data itself"
            )
        }),
        None => Ok(data.as_bytes().to_vec()),
    }
}

/// curl sends `-d` as a form; a body that is JSON goes as JSON, since that is what
/// paid APIs (chat completions) expect. `-H 'Content-Type: …'` overrides both.
fn content_type(body: &[u8]) -> &'static str {
    let looks_json = serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v.is_object() || v.is_array());
    if looks_json {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_habits_pick_the_method_and_content_type() {
        let get = spec("http://h/x", None, None, &[]).expect("spec");
        assert_eq!(get.method, Method::GET);
        assert!(get.body.is_none());
        let post = spec("http://h/x", None, Some(r#"{"a":1}"#), &[]).expect("spec");
        assert_eq!(post.method, Method::POST);
        assert_eq!(post.headers[CONTENT_TYPE], "application/json");
        let form = spec("http://h/x", Some("put"), Some("a=1"), &[]).expect("spec");
        assert_eq!(form.method, Method::PUT);
        assert_eq!(
            form.headers[CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        let typed = spec(
            "http://h/x",
            None,
            Some("a"),
            &[
                "Content-Type: text/plain".into(),
                "X-A: 1".into(),
                "X-A: 2".into(),
            ],
        )
        .expect("spec");
        assert_eq!(typed.headers[CONTENT_TYPE], "text/plain");
        assert_eq!(typed.headers.get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn bad_flags_say_what_to_type() {
        let e = spec("ftp://h/x", None, None, &[]).expect_err("refused");
        assert!(e.to_string().contains("http(s)"), "{e}");
        let e = spec("http://h/x", None, None, &["NoColon".into()]).expect_err("refused");
        assert!(e.to_string().contains("-H 'Name: value'"), "{e}");
        let e = spec("http://h/x", None, Some("@/no/such/file"), &[]).expect_err("refused");
        assert!(e.to_string().contains("@-"), "{e}");
    }
}
