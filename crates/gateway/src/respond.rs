//! Small builders for the gateway's own answers (errors, challenges, CORS), so every
//! refusal has the same `{error, reason, hint}` JSON shape.

use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Response headers a browser client must be allowed to read.
const EXPOSED: &str = "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE";

/// `{error, reason, hint}` with `status`.
pub fn error(status: StatusCode, error: &str, reason: &str, hint: impl Into<String>) -> Response {
    let body = json!({ "error": error, "reason": reason, "hint": hint.into() });
    (status, axum::Json(body)).into_response()
}

/// [`error`] plus `Retry-After: seconds`, for answers that will change on their own.
pub fn retry_later(
    status: StatusCode,
    error_code: &str,
    reason: &str,
    hint: impl Into<String>,
    seconds: u32,
) -> Response {
    let mut response = error(status, error_code, reason, hint);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Adds the CORS headers every gateway answer carries (reads from any origin).
pub fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
}

/// [`cors`] as a response layer, for everything behind the gate.
pub async fn with_cors(mut response: Response) -> Response {
    cors(response.headers_mut());
    response
}

/// 413 for a request body over the gateway's limit.
pub fn body_too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "max_body_bytes",
        format!("request bodies are limited to {limit} bytes"),
    )
}

/// The answer to a CORS preflight for a paid route.
pub fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    cors(headers);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, authorization, payment-signature, x-payment"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Puts a base64 header value under `name`, skipping values that cannot be headers.
pub fn put(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}
