//! A request that can be built again and again: the same request goes out unpaid (to
//! read the 402), then with the payment, and once more on the automatic retry or a
//! resume, so its body is held whole as bytes (a stream could be sent only once).

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Request, Url};
use serde::Serialize;

/// What to send, in a form that builds the same request every time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// The HTTP method.
    pub method: Method,
    /// The resource paid for (the ledger keys its payments by it).
    pub url: Url,
    /// Headers sent with every attempt.
    pub headers: HeaderMap,
    /// The body, as bytes.
    pub body: Option<Vec<u8>>,
}

impl RequestSpec {
    /// `method url`, no headers and no body.
    pub fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// A GET of `url`.
    pub fn get(url: Url) -> Self {
        Self::new(Method::GET, url)
    }

    /// A POST to `url` (give it a body with [`RequestSpec::body`] or
    /// [`RequestSpec::json`]).
    pub fn post(url: Url) -> Self {
        Self::new(Method::POST, url)
    }

    /// Adds a header (a name may repeat).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sends `body` byte for byte.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sends `value` as JSON, with `Content-Type: application/json` unless one is set.
    pub fn json(mut self, value: &impl Serialize) -> Result<Self, serde_json::Error> {
        self.body = Some(serde_json::to_vec(value)?);
        if !self.headers.contains_key(CONTENT_TYPE) {
            self.headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Ok(self)
    }

    /// A fresh request for `http`.
    pub fn build(&self, http: &reqwest::Client) -> Result<Request, reqwest::Error> {
        let mut builder = http
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        if let Some(body) = &self.body {
            builder = builder.body(body.clone());
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://h/x").expect("url")
    }

    #[test]
    fn the_same_request_is_built_every_time() {
        let spec = RequestSpec::post(url())
            .header(
                HeaderName::from_static("x-a"),
                HeaderValue::from_static("1"),
            )
            .header(
                HeaderName::from_static("x-a"),
                HeaderValue::from_static("2"),
            )
            .json(&serde_json::json!({"a": 1}))
            .expect("json");
        assert_eq!(spec.headers[CONTENT_TYPE], "application/json");
        let http = reqwest::Client::new();
        let (one, two) = (
            spec.build(&http).expect("built"),
            spec.build(&http).expect("built"),
        );
        for request in [&one, &two] {
            assert_eq!(request.method(), Method::POST);
            assert_eq!(request.headers().get_all("x-a").iter().count(), 2);
            let body = request.body().and_then(|b| b.as_bytes());
            assert_eq!(body, Some(&br#"{"a":1}"#[..]));
        }
    }

    #[test]
    fn json_keeps_a_content_type_already_set() {
        let spec = RequestSpec::post(url())
            .header(CONTENT_TYPE, HeaderValue::from_static("text/plain"))
            .json(&1)
            .expect("json");
        assert_eq!(spec.headers[CONTENT_TYPE], "text/plain");
        assert_eq!(RequestSpec::get(url()).body, None);
    }
}
