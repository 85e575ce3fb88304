//! What a seller's endpoint asks for right now: one unpaid GET, read as a buyer first
//! meets it (`buyer::probe::Unpaid`: the v2 `PAYMENT-REQUIRED` header, else the body),
//! so a listing can show live prices beside the registered ones.

use buyer::probe::Unpaid;
use x402::wire::PaymentRequirements;

/// An endpoint's answer to a request without payment.
#[derive(Debug, Clone, PartialEq)]
pub enum Asked {
    /// No answer at all.
    Unreachable(String),
    /// An answer other than 402: the endpoint is not payment-gated.
    NotGated(u16),
    /// A 402 whose requirements do not read.
    Unreadable,
    /// A 402 and the first payment it accepts.
    Terms(Box<PaymentRequirements>),
}

impl Asked {
    /// The HTTP status of the answer (0 when there was none).
    pub fn status(&self) -> u16 {
        match self {
            Asked::Unreachable(_) => 0,
            Asked::NotGated(status) => *status,
            Asked::Unreadable | Asked::Terms(_) => 402,
        }
    }
}

/// GETs `endpoint` through `http` without paying and reads what it asks for.
pub async fn asked(http: &reqwest::Client, endpoint: &str) -> Asked {
    let answer = match Unpaid::fetch(http, endpoint).await {
        Ok(answer) => answer,
        Err(e) => return Asked::Unreachable(e.to_string()),
    };
    if answer.status != 402 {
        return Asked::NotGated(answer.status);
    }
    match answer.required().and_then(|r| r.accepts.into_iter().next()) {
        Some(first) => Asked::Terms(Box::new(first)),
        None => Asked::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    #[tokio::test]
    async fn answers_are_told_apart() {
        let server = testkit::loopback::serve(
            Router::new()
                .route("/free", get(|| async { "hello" }))
                .route(
                    "/garbled",
                    get(|| async { (StatusCode::PAYMENT_REQUIRED, "not x402") }),
                ),
        )
        .await;
        let http = testkit::http();
        let free = asked(&http, &format!("{}/free", server.url())).await;
        assert_eq!((free.status(), &free), (200, &Asked::NotGated(200)));
        let garbled = asked(&http, &format!("{}/garbled", server.url())).await;
        assert_eq!((garbled.status(), &garbled), (402, &Asked::Unreadable));
        let dead = asked(&http, testkit::loopback::dead_url().as_str()).await;
        assert!(matches!(dead, Asked::Unreachable(_)), "{dead:?}");
        assert_eq!(dead.status(), 0);
    }
}
