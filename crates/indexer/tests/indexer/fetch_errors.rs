//! Registration files that cannot be read: malformed JSON, one larger than the limit,
//! one whose server sleeps past the time limit, a dead loopback port, a 404 and a
//! broken data URI each end as a fetch error of that kind on their own agent, while a
//! good file over HTTP, one through an IPFS gateway and an inline one index normally,
//! and the slow one holds up neither the chain nor the other documents.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use indexer::Indexer;

use crate::common::{self, document, serve};

/// A well-formed CIDv1 (raw, sha2-256) for the document read through the gateway.
const CID: &str = "bafkreienk64yy45sf4d7ivlpdafkc7ptwvcgbumur5sdb5c5fw5monds24";

/// Above the 256 KiB default limit.
const HUGE: usize = 300 * 1024;

#[tokio::test]
async fn unreadable_documents_are_recorded_per_agent() {
    let chain = testkit::chain::devnet(2).await;
    let db = tempfile::tempdir().unwrap();
    let good = serde_json::to_string(&document("good http", "served over HTTP", &[], &[])).unwrap();
    let via_ipfs =
        serde_json::to_string(&document("good ipfs", "read through the gateway", &[], &[]))
            .unwrap();
    let huge = format!(r#"{{"name":"huge","description":"{}"}}"#, "x".repeat(HUGE));
    let slow_doc = good.replace("good http", "slow");
    let docs_server = testkit::loopback::serve(
        Router::new()
            .route("/good.json", get(move || async move { good }))
            .route(
                "/malformed.json",
                get(|| async { r#"{"name": "broken", "#.to_string() }),
            )
            .route("/huge.json", get(move || async move { huge }))
            .route(
                "/slow.json",
                get(move || async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    slow_doc
                }),
            )
            .route(
                &format!("/ipfs/{CID}/agent.json"),
                get(move || async move { via_ipfs }),
            ),
    )
    .await;
    let docs = docs_server.addr;
    let dead = format!("127.0.0.1:{}", testkit::loopback::free_port());

    let streamed = endless_body().await;
    let mut config = common::config(chain.rpc_url(), db.path());
    // Two attempts of 4 s each: the slow document stays in flight long enough to
    // watch the others finish around it.
    config.fetch.timeout = Duration::from_secs(4);
    config.ipfs_gateway = format!("http://{docs}/").parse().unwrap();
    let api = serve(Indexer::open(config).await.unwrap()).await;

    let inline = document("good inline", "a data URI", &[], &[]).to_data_uri();
    let uris = [
        ("slow", format!("http://{docs}/slow.json")),
        ("good http", format!("http://{docs}/good.json")),
        ("malformed", format!("http://{docs}/malformed.json")),
        ("huge", format!("http://{docs}/huge.json")),
        ("streamed", format!("http://{streamed}/agent.json")),
        ("dead", format!("http://{dead}/agent.json")),
        ("missing", format!("http://{docs}/missing.json")),
        (
            "bad data",
            "data:application/json;base64,e30".to_string() + "!!",
        ),
        ("good ipfs", format!("ipfs://{CID}/agent.json")),
        ("good inline", inline),
    ];
    for (_, uri) in &uris {
        common::register(&chain, 1, uri).await;
    }
    let head = {
        use alloy::providers::Provider;
        chain.provider().unwrap().get_block_number().await.unwrap()
    };

    // The chain is indexed and the fast documents are read while the slow one waits.
    testkit::eventually("the good documents are read", common::PATIENCE, || async {
        let (status, health) = api.get("/health").await;
        let good = api.get("/api/v1/public/agents/84532/1").await.1;
        let ipfs = api.get("/api/v1/public/agents/84532/8").await.1;
        status == 200
            && health["indexed_block"].as_u64() >= Some(head)
            && good["fetch_status"] == "ok"
            && ipfs["fetch_status"] == "ok"
    })
    .await;
    assert_eq!(
        api.agent(0).await["fetch_status"],
        "pending",
        "still sleeping"
    );

    api.settle(&chain).await;
    let expected = [
        ("slow", "timeout"),
        ("malformed", "malformed"),
        ("huge", "too_large"),
        ("streamed", "too_large"),
        ("dead", "unreachable"),
        ("missing", "http_status"),
        ("bad data", "malformed"),
    ];
    for (id, (label, _)) in uris.iter().enumerate() {
        let agent = api.agent(id as u64).await;
        match expected.iter().find(|(l, _)| l == label) {
            Some((_, kind)) => {
                assert_eq!(agent["fetch_status"], "error", "{label}: {agent}");
                assert_eq!(agent["fetch_error"]["kind"], *kind, "{label}: {agent}");
                assert!(agent["fetch_error"]["message"].as_str().unwrap().len() > 10);
                assert_eq!(agent["name"], "", "{label}");
            }
            None => {
                assert_eq!(agent["fetch_status"], "ok", "{label}: {agent}");
                assert_eq!(agent["name"], *label);
            }
        }
    }
    let (_, stats) = api.get("/api/v1/public/stats").await;
    assert_eq!(stats["total_agents"], 10);
    assert_eq!(stats["fetch"]["ok"], 3);
    assert_eq!(stats["fetch"]["error"], 7);
    assert_eq!(api.name_set("search=good").await.len(), 3);
    api.stop().await;
    chain.stop().await;
}

/// A server that answers without a Content-Length and sends body bytes until the
/// client hangs up, so only the streaming limit can stop the read.
async fn endless_body() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"name\":\"";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                while socket.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    addr
}

#[tokio::test]
async fn health_is_unavailable_while_the_rpc_is_down() {
    let db = tempfile::tempdir().unwrap();
    let dead = format!("127.0.0.1:{}", testkit::loopback::free_port());
    let mut config = common::config(&format!("http://{dead}"), db.path());
    config.chain_id = Some(devnet::CHAIN_ID);
    let api = serve(Indexer::open(config).await.unwrap()).await;
    testkit::eventually("the RPC failure is reported", common::PATIENCE, || async {
        let (status, health) = api.get("/health").await;
        status == 503
            && health["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("RPC"))
    })
    .await;
    let (_, health) = api.get("/health").await;
    assert_eq!(health["status"], "starting");
    assert_eq!(health["caught_up"], false);
    assert_eq!(api.get("/api/v1/public/stats").await.1["total_agents"], 0);

    let mut unknown = common::config(&format!("http://{dead}"), db.path());
    unknown.chain_id = None;
    let err = Indexer::open(unknown).await.err().unwrap();
    assert!(
        err.to_string().contains("pass the chain id explicitly"),
        "{err}"
    );
    api.stop().await;
}
