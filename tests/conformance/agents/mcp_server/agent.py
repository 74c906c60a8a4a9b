"""An MCP server agent for the conformance suite, written as a user would with the official `mcp`
Python SDK: FastMCP over streamable HTTP on the MCP contract's port (8000) and path (`/mcp`),
stateful (the server issues an `Mcp-Session-Id` on `initialize` and requires it afterwards), so
the suite sees that Berth forwards the MCP headers and returns the session id. With
``MCP_STATELESS=1`` in its environment it is stateless and answers in plain JSON, as AgentCore's
MCP contract recommends by default.

Tools: ``add`` (two integers), ``whoami`` (the runtime session header the request carried) and
``countdown`` (reports progress notifications, so its answer is a multi-event SSE stream).
"""

import os

from mcp.server.fastmcp import Context, FastMCP

STATELESS = os.environ.get("MCP_STATELESS") == "1"
mcp = FastMCP("berth-conformance-mcp", host="0.0.0.0", port=8000, stateless_http=STATELESS,
              json_response=STATELESS)


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool()
def whoami(ctx: Context) -> dict:
    """The AgentCore headers of the request that called this tool."""
    request = ctx.request_context.request
    headers = request.headers if request is not None else {}
    return {
        "runtimeSessionId": headers.get("x-amzn-bedrock-agentcore-runtime-session-id"),
        "mcpMethod": headers.get("mcp-method"),
        "mcpName": headers.get("mcp-name"),
    }


@mcp.tool()
async def countdown(n: int, ctx: Context) -> str:
    """Reports n progress steps, then answers."""
    for i in range(n):
        await ctx.report_progress(i + 1, n)
    return f"done after {n}"


if __name__ == "__main__":
    mcp.run(transport="streamable-http")
