"""A light MCP upstream for the edge tests (test_edge.py): thousands of open streams, over TLS.

The SDK server (upstream.py) spends a task group and a session per stream; the edge tests need
more than a thousand GET streams held open at once beside working calls, so this one is plain
asyncio speaking just enough HTTP/1.1 (keep-alive, content-length bodies):

- `POST /mcp`: answers the JSON-RPC message with `{"result": {...}}` echoing its id (a
  `tools/call` gets one text block naming the tool), `application/json`;
- `GET /mcp`: `text/event-stream`, one comment, then held open (and quiet) until the client or
  Envoy goes away;
- anything else: 404.

With `--cert/--key` it speaks TLS, TLS 1.3 only when `--tls13-only` (a client offering at most
TLS 1.2 fails its handshake). The ready file holds `{"port", "url"}`; `GET /stats` (not through
Envoy) answers `{"open_streams", "posts", "tls_versions"}`, the TLS versions seen on POSTs.

    python edge_upstream.py --ready-file FILE [--cert C --key K [--tls13-only]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
from typing import Any

MAX_HEADER_BYTES = 64 * 1024
STATS: dict[str, Any] = {"open_streams": 0, "posts": 0, "tls_versions": {}}


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


def response(status: str, body: bytes, content_type: str) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


def answer(body: bytes) -> bytes:
    msg = json.loads(body)
    result: dict[str, Any] = {}
    if msg.get("method") == "tools/call":
        name = (msg.get("params") or {}).get("name", "")
        result = {"content": [{"type": "text", "text": f"called {name[:64]}"}], "isError": False}
    return json.dumps({"jsonrpc": "2.0", "id": msg.get("id"), "result": result}).encode()


async def hold_stream(writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n: open\n\n")
    await writer.drain()
    STATS["open_streams"] += 1
    try:
        await reader.read()  # until the peer closes
    finally:
        STATS["open_streams"] -= 1


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while (request := await read_request(reader)) is not None:
            method, path, _headers, body = request
            if method == "GET" and path == "/stats":
                writer.write(response("200 OK", json.dumps(STATS).encode(), "application/json"))
            elif method == "POST" and path.startswith("/mcp"):
                STATS["posts"] += 1
                tls = writer.get_extra_info("ssl_object")
                version = tls.version() if tls else "none"
                STATS["tls_versions"][version] = STATS["tls_versions"].get(version, 0) + 1
                writer.write(response("200 OK", answer(body), "application/json"))
            elif method == "GET" and path.startswith("/mcp"):
                await hold_stream(writer, reader)
                return
            else:
                writer.write(response("404 Not Found", b"", "text/plain"))
            await writer.drain()
    except (ConnectionError, ssl.SSLError, json.JSONDecodeError, ValueError):
        pass
    finally:
        writer.close()


def tls_context(cert: str, key: str, tls13_only: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if tls13_only else ssl.TLSVersion.TLSv1_2
    return ctx


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--tls13-only", action="store_true")
    args = parser.parse_args()
    ctx = tls_context(args.cert, args.key, args.tls13_only) if args.cert else None
    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx, limit=MAX_HEADER_BYTES, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ctx else "http"
    tmp = args.ready_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"port": port, "url": f"{scheme}://127.0.0.1:{port}/mcp"}, f)
    os.replace(tmp, args.ready_file)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
