"""Drives `agora mcp` with the official MCP Python SDK's stdio client, a client no one
on agora wrote, so the Rust test (crates/cli/tests/it/mcp.rs) checks the server against
the protocol as others implement it rather than against our own reading of it.

Usage: mcp_client.py AGORA_BIN PLAN_JSON
  PLAN_JSON: a list of {"tool": NAME, "arguments": {...}} called in order.
Prints one JSON object on stdout: the server's name, every tool with its input
schema, and each call's is_error, structured content and text. The test asserts on
it; this script asserts nothing itself. The server inherits this environment
(AGORA_HOME and the like) so its commands reach the test's daemon and wallet.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main(agora_bin: str, plan: list) -> dict:
    server = StdioServerParameters(command=agora_bin, args=["mcp"], env=dict(os.environ))
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            listed = await session.list_tools()
            calls = []
            for step in plan:
                result = await session.call_tool(step["tool"], step.get("arguments", {}))
                calls.append(
                    {
                        "tool": step["tool"],
                        "isError": bool(result.is_error),
                        "structured": result.structured_content,
                        "text": [c.text for c in result.content if getattr(c, "text", None)],
                    }
                )
            return {
                "server": init.server_info.name,
                "tools": [
                    {
                        "name": t.name,
                        "description": t.description,
                        "inputSchema": t.input_schema,
                    }
                    for t in listed.tools
                ],
                "calls": calls,
            }


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: mcp_client.py AGORA_BIN PLAN_JSON")
    report = asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
    print(json.dumps(report))
