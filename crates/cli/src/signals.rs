//! Stop requests for long-running commands.

use anyhow::Context;

/// Listens for Ctrl-C / SIGINT and SIGTERM from the moment it is created, so a stop
/// request that arrives right after the startup line is printed is never lost (tokio
/// installs a handler only when asked; before that a signal kills the process).
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt =
            signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C (SIGINT)")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!("cannot listen for Ctrl-C: {e}");
                std::future::pending::<()>().await;
            }
        })
    }
}
