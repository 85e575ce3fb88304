//! A closed stdout (`agora sell list | head -1`) ends every listing command quietly:
//! exit 0, no panic text, no backtrace. Each command writes into a pipe whose reader
//! is already gone, so the write fails every time rather than only when `head` wins a
//! race.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const WALLET: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

fn agora(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agora"));
    command
        .env("AGORA_HOME", home)
        .env("AGORA_LISTEN", "127.0.0.1:0")
        .env("AGORA_FACILITATOR_URL", "http://127.0.0.1:9")
        .env_remove("X402_WALLET")
        .env_remove("X402_FACILITATOR_URL")
        .env_remove("AGORA_INDEXER")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    command
}

fn ok(home: &Path, args: &[&str]) -> Output {
    let out = agora(home).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "agora {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `agora ARGS` with its stdout on a pipe nobody reads any more.
fn into_closed_pipe(home: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    agora(home)
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// An indexer that knows one agent, enough for `agora discover` to print a table.
fn fake_indexer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = serde_json::json!({"items": [{
                "chain_id": 84532, "agent_id": 7, "name": "seller",
                "owner_address": WALLET, "x402_supported": true,
                "services": [{"name": "web", "endpoint": "http://127.0.0.1:1/"}],
            }]})
            .to_string();
            let _ = write!(
                &stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn every_listing_command_ends_quietly_when_its_reader_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&home, &["sell", "pricing", "--network", "base-sepolia"]);
    ok(
        &home,
        &[
            "sell",
            "http",
            "api",
            "--upstream",
            "http://127.0.0.1:1",
            "--per-request",
            "0.001",
            "--pay-to",
            WALLET,
            "--no-register",
        ],
    );
    let indexer = fake_indexer();
    let commands: Vec<Vec<&str>> = vec![
        vec!["sell", "list"],
        vec!["sell", "list", "--json"],
        vec!["sell", "status", "api"],
        vec!["sell", "get", "api"],
        vec!["sell", "get", "api", "-o", "json"],
        vec!["sell", "pricing"],
        vec!["discover", "--indexer", &indexer],
        vec!["discover", "--indexer", &indexer, "--json"],
        vec!["--help"],
    ];
    for args in &commands {
        let out = into_closed_pipe(&home, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "agora {args:?} was not quiet: {stderr}"
        );
        assert!(
            out.status.success(),
            "agora {args:?} exited {:?}: {stderr}",
            out.status
        );
    }
    // The same commands still print in full when read.
    let listed = ok(&home, &["sell", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("api"));

    let log = std::fs::read_to_string(home.join("logs/serve.log")).unwrap();
    let started: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    Command::new("kill")
        .arg(started["pid"].to_string())
        .status()
        .unwrap();
}
