//! Fetcher tests: public addresses, data/http/ipfs URIs, CIDs, the gateway's redirects
//! and proxies from the environment, against local HTTP servers.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use std::net::SocketAddr;

use super::addresses::is_public;
use super::ipfs::cid;
use super::*;

/// A CIDv1 (raw, sha2-256) and a CIDv0 of the same digest.
const CID_V1: &str = "bafkreienk64yy45sf4d7ivlpdafkc7ptwvcgbumur5sdb5c5fw5monds24";
const CID_V0: &str = "QmXrPn9Qua3vJxYhKLrKDAWz8bYEh6773NVRq95hTTTDrW";

fn fetcher(allow_private: bool) -> Fetcher {
    fetcher_on(allow_private, "http://127.0.0.1:9/")
}

fn fetcher_on(allow_private: bool, gateway: &str) -> Fetcher {
    let config = FetchConfig {
        allow_private_addresses: allow_private,
        timeout: Duration::from_secs(3),
        retries: 0,
        ..FetchConfig::default()
    };
    Fetcher::new(config, Url::parse(gateway).unwrap()).unwrap()
}

fn failure(outcome: FetchOutcome) -> FetchError {
    match outcome {
        FetchOutcome::Failed(e) => e,
        FetchOutcome::Fetched(doc) => panic!("unexpectedly read {doc:?}"),
    }
}

fn fetched(outcome: FetchOutcome) -> Registration {
    match outcome {
        FetchOutcome::Fetched(doc) => *doc,
        FetchOutcome::Failed(e) => panic!("not read: {e:?}"),
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn document(name: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"name":"{name}"}}"#),
    )
        .into_response()
}

fn redirect(to: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

#[test]
fn public_addresses_are_told_apart() {
    for private in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "198.18.0.1",
        "198.19.255.254",
        "240.0.0.1",
        "255.255.255.254",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        // IPv4-compatible ::/96, whatever it embeds
        "::8.8.8.8",
        "::a9fe:a9fe",
        // well-known NAT64 reaching a private IPv4
        "64:ff9b::7f00:1",
        "64:ff9b::10.0.0.1",
        "64:ff9b::169.254.169.254",
        "64:ff9b::198.18.0.1",
        // local-use NAT64, whatever it embeds
        "64:ff9b:1::8.8.8.8",
        "64:ff9b:1:ffff::1",
        // 6to4 of a private IPv4
        "2002:7f00:1::",
        "2002:a00:1::1",
        "2002:c0a8:101::",
        "2002:f000:1::",
    ] {
        assert!(!is_public(private.parse().unwrap()), "{private}");
    }
    for public in [
        "1.1.1.1",
        "8.8.8.8",
        "2606:4700::1111",
        "100.128.0.1",
        "198.17.255.255",
        "198.20.0.1",
        "223.255.255.255",
        // NAT64 and 6to4 of a public IPv4 (DNS64 networks resolve to these)
        "64:ff9b::8.8.8.8",
        "2002:808:808::1",
    ] {
        assert!(is_public(public.parse().unwrap()), "{public}");
    }
}

#[tokio::test]
async fn data_uris_parse_and_odd_uris_fail_with_a_kind() {
    let f = fetcher(false);
    let doc = Registration::from_data_uri(r#"data:application/json,{"name":"n"}"#).unwrap();
    match f.fetch(&doc.to_data_uri()).await {
        FetchOutcome::Fetched(read) => assert_eq!(read.name, "n"),
        FetchOutcome::Failed(e) => panic!("{e:?}"),
    }
    let cases = [
        ("data:application/json;base64,!!", "malformed"),
        ("ar://abc", "unsupported_uri"),
        ("no scheme at all", "unsupported_uri"),
        ("ipfs://", "malformed"),
        ("http://127.0.0.1:9/agent.json", "blocked_address"),
        ("http://[::1]:9/agent.json", "blocked_address"),
        ("http://[64:ff9b::7f00:1]:9/agent.json", "blocked_address"),
        ("http://198.18.0.1:9/agent.json", "blocked_address"),
        ("http://localhost:9/agent.json", "blocked_address"),
    ];
    for (uri, kind) in cases {
        assert_eq!(failure(f.fetch(uri).await).kind, kind, "{uri}");
    }
}

#[test]
fn ipfs_uris_go_through_the_gateway() {
    let f = fetcher(true);
    assert_eq!(
        f.gateway_url(&format!("ipfs://{CID_V1}/agent.json"))
            .unwrap()
            .as_str(),
        format!("http://127.0.0.1:9/ipfs/{CID_V1}/agent.json")
    );
    assert_eq!(
        f.gateway_url(&format!("ipfs://ipfs/{CID_V0}"))
            .unwrap()
            .as_str(),
        format!("http://127.0.0.1:9/ipfs/{CID_V0}")
    );
}

#[test]
fn cids_are_read_as_the_specs_define_them() {
    for good in [
        CID_V1,
        CID_V0,
        // dag-pb CIDv1 and real-world ones from the IPFS docs
        "bafybeienk64yy45sf4d7ivlpdafkc7ptwvcgbumur5sdb5c5fw5monds24",
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
        // the same CIDv1 in the other multibases read
        "BAFKREIENK64YY45SF4D7IVLPDAFKC7PTWVCGBUMUR5SDB5C5FW5MONDS24",
        "f017012208d57b98c73b22f07f4556f180aa17df3b54460d1948f6430f45d2dbac73472d7",
        "zdj7Wewe9aUm3XXBfrd45ow5YMYkojgQdXEugtxVwUNGu282S",
        "k51qzi5uqu5djpes6xime7j8ruh32dnezocsyck35be5skr4qwk8f0o9fjsjx3",
    ] {
        assert_eq!(cid::check(good), Ok(()), "{good}");
    }
    let long = format!("b{}", "a".repeat(300));
    for bad in [
        "",
        "bafyagent",
        "bafyabc",
        "Qm",
        &CID_V0[..45],
        // 0, O, I and l are not base58btc
        "QmXrPn9Qua3vJxYhKLrKDAWz8bYEh6773NVRq95hTTTDr0",
        // one character short, one extra: the digest length no longer matches
        &CID_V1[..CID_V1.len() - 1],
        &format!("{CID_V1}a"),
        // upper-case letters in a base32-lower CID
        "bafkreienk64yy45sf4d7ivlpdafkc7ptwvcgbumur5sdb5c5fw5monds2A",
        "BAFKREIENK64YY45SF4D7IVLPDAFKC7PTWVCGBUMUR5SDB5C5FW5MONDs24",
        // version 2 and an unknown multibase
        "bciqabcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx",
        "mAXASIA",
        "..",
        "localhost:22",
        "bafk reienk",
        long.as_str(),
    ] {
        let err = cid::check(bad).unwrap_err();
        assert!(!err.is_empty(), "{bad}");
    }
}

#[tokio::test]
async fn bad_ipfs_uris_never_reach_the_gateway() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&seen);
    let gateway = serve(Router::new().fallback(move |uri: Uri| {
        let log = Arc::clone(&log);
        async move {
            log.lock().unwrap().push(uri.to_string());
            document("via the gateway")
        }
    }))
    .await;
    let f = fetcher_on(false, &format!("http://{gateway}/"));
    let bad = [
        "ipfs://bafyagent/agent.json".to_string(),
        format!("ipfs://{CID_V1}/../../admin"),
        format!("ipfs://{CID_V1}/a/../../../admin"),
        format!("ipfs://{CID_V1}/./agent.json"),
        format!("ipfs://{CID_V1}/a/%2e%2e/%2E%2E/admin"),
        format!("ipfs://{CID_V1}/a%2fb"),
        format!("ipfs://{CID_V1}/a%5c..%5cb"),
        format!("ipfs://{CID_V1}/a%zz"),
        format!("ipfs://{CID_V1}?x=1"),
        format!("ipfs://{CID_V1}/agent.json?x=1"),
        format!("ipfs://{CID_V1}#top"),
        format!("ipfs://{CID_V1}/agent.json#top"),
        format!("ipfs://{CID_V1} /agent.json"),
        format!("ipfs://{CID_V1}/a b.json"),
        format!("ipfs://{CID_V1}/a\tb.json"),
        format!("ipfs://{CID_V1}\\..\\admin"),
        format!("ipfs://{CID_V1}/a\\b"),
        format!("ipfs://../{CID_V1}"),
        format!("ipfs://ipfs/../{CID_V1}"),
        format!("ipfs://{CID_V1}/é.json"),
        "ipfs://localhost:22/x".to_string(),
        "ipfs://127.0.0.1/x".to_string(),
    ];
    for uri in &bad {
        let e = failure(f.fetch(uri).await);
        assert_eq!(e.kind, "malformed", "{uri}: {e:?}");
        assert!(e.message.contains("ipfs://"), "{uri}: {e:?}");
    }
    assert_eq!(*seen.lock().unwrap(), Vec::<String>::new());

    for (uri, path) in [
        (
            format!("ipfs://{CID_V1}/agent.json"),
            format!("/ipfs/{CID_V1}/agent.json"),
        ),
        (
            format!("ipfs://ipfs/{CID_V0}/a/b%20c.json"),
            format!("/ipfs/{CID_V0}/a/b%20c.json"),
        ),
        (format!("ipfs://{CID_V0}"), format!("/ipfs/{CID_V0}")),
    ] {
        assert_eq!(fetched(f.fetch(&uri).await).name, "via the gateway");
        assert_eq!(seen.lock().unwrap().pop(), Some(path), "{uri}");
    }
}

#[tokio::test]
async fn the_gateway_is_followed_only_to_itself_or_public_hosts() {
    let private_hits = Arc::new(AtomicUsize::new(0));
    let hits = Arc::clone(&private_hits);
    let private = serve(Router::new().fallback(move || {
        hits.fetch_add(1, Ordering::SeqCst);
        async { document("a private service") }
    }))
    .await;
    let port = private.port();
    let gateway = serve(Router::new().fallback(move |uri: Uri| async move {
        let path = uri.path();
        match path.rsplit('/').next().unwrap_or_default() {
            "moved.json" => redirect(format!("/ipfs/{CID_V1}/agent.json")),
            "private.json" => redirect(format!("http://127.0.0.1:{port}/agent.json")),
            "mapped.json" => redirect(format!("http://[::ffff:7f00:1]:{port}/agent.json")),
            "nat64.json" => redirect(format!("http://[64:ff9b::7f00:1]:{port}/agent.json")),
            "named.json" => redirect(format!("http://localhost:{port}/agent.json")),
            "agent.json" => document("via the gateway"),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }))
    .await;
    // The gateway by name, as an operator running a local IPFS node would write it,
    // and by address. A hop to `localhost` on another port is refused by the first
    // as another port of its own host, by the second as a name that resolves to a
    // private address.
    for gateway in [
        format!("http://localhost:{}/", gateway.port()),
        format!("http://{gateway}/"),
    ] {
        let f = fetcher_on(false, &gateway);
        let read = fetched(f.fetch(&format!("ipfs://{CID_V1}/moved.json")).await);
        assert_eq!(read.name, "via the gateway");
        for target in ["private", "mapped", "nat64", "named"] {
            let e = failure(f.fetch(&format!("ipfs://{CID_V1}/{target}.json")).await);
            assert_eq!(e.kind, "blocked_address", "{gateway} {target}: {e:?}");
        }
    }
    assert_eq!(private_hits.load(Ordering::SeqCst), 0);

    // With private addresses allowed (development), redirects are followed.
    let open = fetcher_on(true, &format!("http://{gateway}/"));
    let read = fetched(open.fetch(&format!("ipfs://{CID_V1}/private.json")).await);
    assert_eq!(read.name, "a private service");
    assert_eq!(private_hits.load(Ordering::SeqCst), 1);
}

/// The proxy variables reqwest would read, pointed at a closed loopback port.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Runs `fetches_directly_despite_proxy_variables` in a child test process with the
/// proxy variables set, so no other test in this process sees them.
#[test]
fn proxies_from_the_environment_are_ignored() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let module = module_path!().split_once("::").unwrap().1;
    let test = format!("{module}::fetches_directly_despite_proxy_variables");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child.args(["--exact", &test, "--ignored", "--test-threads=1"]);
    for var in PROXY_VARIABLES {
        child.env(var, format!("http://{dead}"));
    }
    child.env_remove("NO_PROXY").env_remove("no_proxy");
    let out = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
}

#[tokio::test]
#[ignore = "run by proxies_from_the_environment_are_ignored with proxy variables set"]
async fn fetches_directly_despite_proxy_variables() {
    for var in PROXY_VARIABLES {
        let value = std::env::var(var).unwrap_or_default();
        assert!(
            value.starts_with("http://127.0.0.1:"),
            "{var} is not set; run proxies_from_the_environment_are_ignored instead"
        );
    }
    let docs = serve(Router::new().fallback(|| async { document("direct") })).await;
    let gateway = format!("http://{docs}/");
    let open = fetcher_on(true, &gateway);
    let read = fetched(open.fetch(&format!("http://{docs}/agent.json")).await);
    assert_eq!(read.name, "direct");
    let read = fetched(open.fetch(&format!("ipfs://{CID_V1}")).await);
    assert_eq!(read.name, "direct");
    let guarded = fetcher_on(false, &gateway);
    let read = fetched(guarded.fetch(&format!("ipfs://{CID_V1}")).await);
    assert_eq!(read.name, "direct");
}
