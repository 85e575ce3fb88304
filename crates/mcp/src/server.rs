//! The MCP server itself: what it tells the client about itself, and how a tool's
//! command is run and answered (the tools are in `tools.rs`).

use std::path::PathBuf;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool_handler};

use crate::runner;

/// The MCP server: the program its tools run, and the tools.
#[derive(Debug, Clone)]
pub(crate) struct Agora {
    program: PathBuf,
    pub(crate) tool_router: ToolRouter<Self>,
}

/// A tool's answer: a structured result, or a tool error with the command's message.
pub(crate) type ToolResult = Result<CallToolResult, rmcp::ErrorData>;

impl Agora {
    /// A server whose tools run `program`.
    pub(crate) fn new(program: PathBuf) -> Self {
        Agora {
            program,
            tool_router: Agora::tool_router(),
        }
    }

    /// Runs `agora ARGS` (with `--json` among them) and turns its outcome into a tool
    /// result.
    pub(crate) async fn agora(&self, args: Vec<String>) -> ToolResult {
        self.agora_fed(args, None).await
    }

    /// [`Agora::agora`] with `input` on the command's stdin (a request body for
    /// `agora pay -d @-`, sent byte for byte, never read as `@FILE`).
    pub(crate) async fn agora_fed(&self, args: Vec<String>, input: Option<String>) -> ToolResult {
        Ok(runner::run(&self.program, &args, input).await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Agora {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agora", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "agora sells this machine's services for x402 payments and buys others'. Never set or change a price without the user's explicit yes: research with pricing_research, show the recommendation, ask, then sell.",
            )
    }
}
