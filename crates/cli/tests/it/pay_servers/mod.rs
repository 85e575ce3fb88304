//! Servers that are not agora, for `pay.rs`: one that answers 402 even to a paid
//! request (or an unreadable 402), and a raw HTTP one that cuts the connection or the
//! body of paid requests, to show what `agora pay` does when the seller misbehaves or
//! the network drops the answer. Written by hand so the failure is exact.

#![allow(clippy::unwrap_used)]

/// A server that is not agora: 402 to every request, paid or not (a paid one says
/// `insufficient_funds`), and an unreadable 402 at `/bad`.
pub async fn refusing(requirement: x402::PaymentRequirements) -> testkit::loopback::Server {
    use axum::extract::Request;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    let accepts = serde_json::to_value(&requirement).unwrap();
    let app = axum::Router::new().fallback(move |request: Request| {
        let accepts = accepts.clone();
        async move {
            if request.uri().path() == "/bad" {
                return (
                    StatusCode::PAYMENT_REQUIRED,
                    [("payment-required", "%%% not base64")],
                    "",
                )
                    .into_response();
            }
            let paid = request.headers().contains_key("payment-signature");
            let body = serde_json::json!({
                "x402Version": 2,
                "error": if paid { "insufficient_funds" } else { "payment required" },
                "resource": {"url": "http://127.0.0.1/x"},
                "accepts": [accepts],
            });
            let header = x402::header::encode(&body).unwrap();
            (
                StatusCode::PAYMENT_REQUIRED,
                [("payment-required", header)],
                axum::Json(body),
            )
                .into_response()
        }
    });
    testkit::loopback::serve(app).await
}

/// A raw HTTP server that cuts the connection of the first `cuts` paid requests
/// after reading them (the header may have arrived, the answer is lost), answers
/// the next `partial` ones 200 with a receipt and half the body, then the whole
/// body. It keeps every payment header it received.
pub async fn cutting(
    requirement: x402::PaymentRequirements,
    cuts: usize,
    partial: usize,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let challenge = serde_json::json!({
        "x402Version": 2,
        "error": "payment required",
        "resource": {"url": format!("{url}/x")},
        "accepts": [serde_json::to_value(&requirement).unwrap()],
    });
    let challenge = x402::header::encode(&challenge).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            let challenge = challenge.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let payment = head.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("payment-signature")
                        .then(|| value.trim().to_string())
                });
                let response = match payment {
                    None => format!(
                        "HTTP/1.1 402 Payment Required\r\npayment-required: {challenge}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    ),
                    Some(header) => {
                        let n = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(header);
                            seen.len()
                        };
                        if n <= cuts {
                            return; // dropped: the answer is lost
                        }
                        let receipt = x402::header::encode(&serde_json::json!({
                            "success": true,
                            "transaction": format!("0x{}", "ab".repeat(32)),
                            "network": "eip155:84532",
                        }))
                        .unwrap();
                        let body = "the paid answer";
                        let sent = if n <= cuts + partial {
                            &body[..8]
                        } else {
                            body
                        };
                        format!(
                            "HTTP/1.1 200 OK\r\npayment-response: {receipt}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{sent}",
                            body.len()
                        )
                    }
                };
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (url, kept)
}
