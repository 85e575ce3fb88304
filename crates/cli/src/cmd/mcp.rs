//! `agora mcp`: the CLI as an MCP server over stdio, so an agent such as Claude Code
//! can sell, research prices, discover and pay with tools instead of shell lines. The
//! server, its tools and their checks are the `mcp` crate; its tools run this binary.

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::output::outln;

/// Options of `agora mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// Print the `.mcp.json` entry and the `claude mcp add` line instead of serving.
    #[arg(long)]
    print_config: bool,
}

/// Serves MCP on stdin/stdout until the client closes it, or prints the config.
pub async fn run(args: McpArgs) -> anyhow::Result<()> {
    if args.print_config {
        let entry = json!({ "mcpServers": { "agora": { "command": "agora", "args": ["mcp"] } } });
        outln!("{}", serde_json::to_string_pretty(&entry)?)?;
        return outln!("claude mcp add agora -- agora mcp");
    }
    let exe = std::env::current_exe().context("cannot find the agora binary to run tools with")?;
    Ok(::mcp::serve(exe).await?)
}
