//! cloudflared process management against a stand-in executable
//! (tools/node/cloudflared_standin.mjs): the real edge cannot be reached here, so the
//! stand-in speaks the same local interface (metrics /quicktunnel and /ready, the
//! stderr banner). Start, URL pickup from /quicktunnel and from the banner, restart
//! after a crash, stop.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tunnel::cloudflared::Mode;
use tunnel::{Files, Provider, State, Supervisor, TunnelLog};

fn standin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/node/cloudflared_standin.mjs")
}

fn supervise(binary: PathBuf, dir: &Path) -> Supervisor {
    Supervisor::spawn(
        Provider::Cloudflared {
            binary,
            mode: Mode::Quick,
        },
        "127.0.0.1:8402".parse().unwrap(),
        Files {
            state: dir.join("tunnel.json"),
            log: TunnelLog::new(dir.join("tunnel.log")),
        },
    )
}

fn alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[tokio::test]
async fn standin_quick_tunnel_starts_restarts_after_a_crash_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = supervise(standin(), dir.path());
    let mut status = supervisor.status();
    supervisor.set_wanted(true);
    let up = testkit::watched(&mut status, "up", Duration::from_secs(30), |s| {
        s.state == State::Up
    })
    .await;
    let url = up.url.clone().unwrap();
    assert!(
        url.starts_with("https://") && url.ends_with("-standin.trycloudflare.com"),
        "{url}"
    );
    let pid = up.pid.unwrap();
    assert!(alive(pid));

    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let back = testkit::watched(&mut status, "the restart", Duration::from_secs(30), |s| {
        s.state == State::Up && s.pid != Some(pid)
    })
    .await;
    assert_eq!(back.restarts, 1);
    assert_ne!(
        back.url.as_deref(),
        Some(url.as_str()),
        "a quick tunnel gets a new name"
    );
    assert!(back.last_error.is_none());
    let log = std::fs::read_to_string(dir.path().join("tunnel.log")).unwrap();
    assert!(
        log.contains("cloudflared down: cloudflared exited"),
        "{log}"
    );

    let second = back.pid.unwrap();
    supervisor.set_wanted(false);
    testkit::watched(&mut status, "off", Duration::from_secs(30), |s| {
        s.state == State::Off
    })
    .await;
    testkit::eventually("the stand-in to exit", Duration::from_secs(5), || async {
        !alive(second)
    })
    .await;
    let saved = tunnel::state::load(&dir.path().join("tunnel.json"))
        .unwrap()
        .unwrap();
    assert_eq!(saved.state, State::Off);
    assert_eq!(saved.url, None);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn standin_without_a_quicktunnel_hostname_gives_its_url_through_the_banner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("cloudflared");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nSTANDIN_NO_QUICKTUNNEL=1 exec node {} \"$@\"\n",
            standin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let supervisor = supervise(wrapper, dir.path());
    let mut status = supervisor.status();
    supervisor.set_wanted(true);
    let up = testkit::watched(&mut status, "up", Duration::from_secs(30), |s| {
        s.state == State::Up
    })
    .await;
    let url = up.url.unwrap();
    assert!(url.ends_with("-standin.trycloudflare.com"), "{url}");
    assert!(!url.contains("api.trycloudflare.com"));
    supervisor.shutdown().await;
}
