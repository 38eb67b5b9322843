"""The demo's MCP client: the real Python MCP SDK, through Envoy, with an mcp-warden API key.

    .venv/bin/python scripts/demo_client.py [--url URL] [--key KEY] [--tool NAME] [--message TEXT]

Lists the tools, calls one (server-everything's `echo` by default) and prints the results.
Exits 0 when the call succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


async def run(url: str, key: str, tool: str, arguments: dict[str, object]) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                print(f"connected to {init.server_info.name} {init.server_info.version} "
                      f"(protocol {init.protocol_version}) via {url}")
                tools = await session.list_tools()
                print(f"{len(tools.tools)} tools: {', '.join(t.name for t in tools.tools)}")
                try:
                    result = await session.call_tool(tool, arguments)
                except MCPError as exc:
                    print(f"tools/call {tool}: JSON-RPC error {exc.code}: {exc.message}")
                    return 1
                text = "".join(getattr(c, "text", "") for c in result.content)
                print(f"tools/call {tool}({json.dumps(arguments)}) -> {text!r}")
                return 1 if result.is_error else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:10000/mcp")
    parser.add_argument("--key", default="demo-alice-key")
    parser.add_argument("--tool", default="echo")
    parser.add_argument("--message", default="hello through Envoy and mcp-warden")
    args = parser.parse_args()

    base = args.url.rsplit("/mcp", 1)[0]
    with urllib.request.urlopen(f"{base}/.well-known/openid-configuration", timeout=10) as resp:
        discovery = json.load(resp)
    print(f"OIDC issuer (public, via Envoy): {discovery['issuer']}  jwks_uri: {discovery['jwks_uri']}")

    return asyncio.run(run(args.url, args.key, args.tool, {"message": args.message}))


if __name__ == "__main__":
    sys.exit(main())
