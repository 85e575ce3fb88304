//! agora as an MCP server over stdio (rmcp), so an agent such as Claude Code can sell,
//! research prices, discover and pay with tools instead of shell lines. This crate is
//! the whole MCP surface, and the one that depends on rmcp.
//!
//! Each tool runs a program (the agora binary: the CLI passes its own
//! [`std::env::current_exe`]) with the matching command and `--json`, as a child
//! process, stdin closed and stdout captured. That keeps one implementation of every
//! command (the tool is the CLI, refusals, budgets and ledger included), and it keeps
//! the protocol safe: stdout here carries JSON-RPC only, and no command's printing can
//! reach it. A command's JSON becomes the tool's structured result; a failure becomes
//! a tool error carrying the command's own message and exit code. What the commands say
//! on stderr is passed on to this process's stderr, where logs go.
//!
//! The model choosing the arguments may be prompt-injected, so what it passes is
//! checked here as well: positionals follow `--` (never read as flags), URLs must be
//! http(s), and an upstream to sell is never a link-local or cloud-metadata address
//! (169.254.0.0/16, fe80::/10, metadata.google.internal), nor a loopback port that
//! `sell_inference` did not recognise as a model server itself. `sell_http` may sell
//! a loopback service (that is what it is for); the user confirms the offer.
//!
//! Serving until the client closes stdin:
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The agora binary whose commands the tools run.
//! let agora = std::path::PathBuf::from("/usr/local/bin/agora");
//! mcp::serve(agora).await?;
//! # Ok(())
//! # }
//! ```

mod checks;
mod runner;
mod server;
mod tools;

use std::path::PathBuf;

use rmcp::ServiceExt;

/// Why serving ended before the client closed the session normally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The client on stdin/stdout never completed MCP's initialize handshake.
    #[error("the MCP client did not initialize the session on stdin/stdout")]
    Initialize(#[source] Box<rmcp::service::ServerInitializeError>),
    /// The session's task failed (it panicked or was cancelled).
    #[error("the MCP session ended abnormally")]
    Session(#[source] tokio::task::JoinError),
}

/// Serves MCP on stdin/stdout until the client closes it; every tool runs `program`
/// (the agora binary) with its command and `--json`.
pub async fn serve(program: PathBuf) -> Result<(), ServeError> {
    let session = server::Agora::new(program)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| ServeError::Initialize(Box::new(e)))?;
    session.waiting().await.map_err(ServeError::Session)?;
    Ok(())
}
