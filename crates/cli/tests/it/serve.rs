//! The daemon's own lifecycle as a user drives it: `agora serve` starts it in the
//! background, a second start says how to stop the first, `agora serve --stop` stops it
//! through the same graceful path as Ctrl-C, and stopping nothing is not an error.

use testkit::process::{agora, ok, run};

const BIN: &str = env!("CARGO_BIN_EXE_agora");

#[tokio::test]
async fn serve_stop_ends_the_background_daemon_and_a_second_start_names_it() {
    let home = tempfile::tempdir().expect("a temp dir");
    let started = ok(agora(BIN, home.path()), &["serve", "--json"])
        .await
        .json();
    let pid = started["pid"].as_u64().expect("the started daemon's pid");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the daemon runs"
    );

    let again = run(agora(BIN, home.path()), &["serve"], None).await;
    assert!(!again.success(), "a second daemon on one home is refused");
    assert!(
        again.stderr.contains("agora serve --stop"),
        "the refusal says how to stop the first: {}",
        again.stderr
    );

    let stopped = ok(agora(BIN, home.path()), &["serve", "--stop", "--json"])
        .await
        .json();
    assert_eq!(stopped["stopped"], true);
    assert_eq!(stopped["pid"].as_u64(), Some(pid));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon process is gone after --stop"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let nothing = ok(agora(BIN, home.path()), &["serve", "--stop"]).await;
    assert!(
        nothing.stdout.contains("no agora daemon is running"),
        "{}",
        nothing.stdout
    );
}
