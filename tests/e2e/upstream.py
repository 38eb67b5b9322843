"""A real MCP server (Python SDK 2.x, streamable HTTP at /mcp) that records every request.

It plays the protected upstream in the end-to-end tests: the MCP server behind Envoy that
mcp-warden guards. Every HTTP request it receives is appended to a record file as one JSON
line (method, path, query, all headers, body as text), written and flushed *before* the MCP
app handles it, so a test can assert exactly what did or did not get past Envoy.

Usage:
    python upstream.py --record FILE --ready-file FILE [--json-response] [--stateless] [--resumable]

`--resumable` gives the session manager an in-memory event store (MemoryEventStore): every
SSE stream then starts with a priming event (an id, empty data) and a client that sends
`Last-Event-ID` on a GET gets the events stored after that id replayed on the GET stream.

It binds 127.0.0.1:0 itself and writes `{"port": P, "url": "http://127.0.0.1:P/mcp"}` to the
ready file (temp file + rename) only once uvicorn has started and is accepting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import threading
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import JSONRPCMessage

# The tools, prompts and resources are deterministic so tests can assert results exactly.
TOOL_NAMES = [
    "get_weather",
    "get_time",
    "list_files",
    "search_docs",
    "query_db",
    "find_user",
    "delete_file",
    "send_email",
    "create_ticket",
    "echo",
    "add",
    "slack_post_message",
]


def build_server() -> MCPServer:
    mcp = MCPServer("warden-test-upstream", version="1.0.0")

    @mcp.tool()
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"weather in {city}: sunny, 21C"

    @mcp.tool()
    def get_time(timezone: str = "UTC") -> str:
        """Current time in a time zone (fixed for tests)."""
        return f"2026-01-01T12:00:00 {timezone}"

    @mcp.tool()
    def list_files(directory: str = "/") -> str:
        """List the files in a directory."""
        return json.dumps({"directory": directory, "files": ["a.txt", "b.txt", "c.md"]})

    @mcp.tool()
    def search_docs(query: str) -> str:
        """Search the documentation."""
        return f"3 results for '{query}'"

    @mcp.tool()
    def query_db(sql: str) -> str:
        """Run a read-only SQL query."""
        return json.dumps({"sql": sql, "rows": [[1, "one"], [2, "two"]]})

    @mcp.tool()
    def find_user(name: str) -> str:
        """Look a user up by name."""
        return json.dumps({"name": name, "id": 42, "email": f"{name}@example.com"})

    @mcp.tool()
    def delete_file(path: str) -> str:
        """Delete a file (pretends to)."""
        return f"deleted {path}"

    @mcp.tool()
    def send_email(to: str, subject: str, body: str = "") -> str:
        """Send an email (pretends to)."""
        return f"sent '{subject}' to {to}"

    @mcp.tool()
    def create_ticket(title: str, priority: str = "normal") -> str:
        """Create a support ticket."""
        return f"ticket created: {title} [{priority}]"

    @mcp.tool()
    def echo(message: str) -> str:
        """Echo the message back."""
        return f"echo: {message}"

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool()
    def slack_post_message(channel: str, text: str) -> str:
        """Post a message to a Slack channel (pretends to)."""
        return f"posted to {channel}: {text}"

    @mcp.prompt()
    def summarize(text: str) -> str:
        """Ask for a summary of a text."""
        return f"Please summarize:\n\n{text}"

    @mcp.prompt()
    def code_review(code: str, language: str = "python") -> str:
        """Ask for a code review."""
        return f"Please review this {language} code:\n\n{code}"

    @mcp.resource("file:///docs/readme.md", mime_type="text/markdown")
    def readme() -> str:
        """The project readme."""
        return "# Test upstream\n\nA deterministic MCP server.\n"

    @mcp.resource("config://app", mime_type="application/json")
    def app_config() -> str:
        """The application config."""
        return json.dumps({"name": "warden-test-upstream", "debug": False})

    @mcp.resource("users://{user_id}/profile", mime_type="application/json")
    def user_profile(user_id: str) -> str:
        """A user's profile (template)."""
        return json.dumps({"id": user_id, "name": f"user-{user_id}"})

    return mcp


class MemoryEventStore(EventStore):
    """Every event of every stream, in memory, with ids "1", "2", ... in storage order.

    `replay_events_after(id)` sends the later events of the stream `id` belongs to (priming
    events, which carry no message, are not sent) and returns that stream's id; an unknown
    id replays nothing.
    """

    def __init__(self) -> None:
        self._events: list[tuple[EventId, StreamId, JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = str(len(self._events) + 1)
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        index = next((i for i, (event_id, _, _) in enumerate(self._events) if event_id == last_event_id), None)
        if index is None:
            return None
        stream_id = self._events[index][1]
        for event_id, stream, message in self._events[index + 1 :]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


class RecordMiddleware:
    """ASGI middleware: append one JSON line per HTTP request to a file, then hand it on.

    The body is read completely first (and replayed to the app), so the line holds the
    exact bytes the upstream received. The line is flushed and fsync'ed before the request
    is handled, so a reader that sees a response also sees the record.
    """

    def __init__(self, app: Any, record_path: str) -> None:
        self.app = app
        self.record_path = record_path
        self._lock = threading.Lock()

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock, open(self.record_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        pending: list[dict[str, Any]] = []
        while True:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            else:  # http.disconnect before the body ended
                pending.append(message)
                break
        body = b"".join(chunks)

        headers: list[list[str]] = [
            [k.decode("latin-1"), v.decode("latin-1")] for k, v in scope.get("headers", [])
        ]
        self._append(
            {
                "method": scope.get("method"),
                "path": scope.get("path"),
                "query": scope.get("query_string", b"").decode("latin-1"),
                "headers": headers,
                "body": body.decode("utf-8", errors="replace"),
            }
        )

        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            if pending:
                return pending.pop(0)
            return await receive()

        await self.app(scope, replay, send)


def write_ready_file(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def serve(args: argparse.Namespace) -> None:
    mcp = build_server()
    app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=args.json_response,
        stateless_http=args.stateless,
        event_store=MemoryEventStore() if args.resumable else None,
        # Requests arrive through Envoy with its listener's Host: no DNS-rebinding check.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    wrapped = RecordMiddleware(app, args.record)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.set_inheritable(True)
    port = sock.getsockname()[1]

    config = uvicorn.Config(
        wrapped,
        log_level=args.log_level,
        lifespan="on",
        timeout_graceful_shutdown=1,
        # uvicorn closes idle keep-alive connections after 5s by default, racing Envoy, which
        # may reuse such a connection at that instant (a 503 "UC" under load). Keep them
        # open longer than any test runs.
        timeout_keep_alive=600,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))

    while not server.started:
        if task.done():
            task.result()  # re-raise why it stopped
            raise SystemExit("upstream: uvicorn exited before starting")
        await asyncio.sleep(0.02)

    write_ready_file(
        args.ready_file,
        {
            "port": port,
            "url": f"http://{args.host}:{port}/mcp",
            "json_response": args.json_response,
            "stateless": args.stateless,
            "resumable": args.resumable,
            "pid": os.getpid(),
        },
    )
    print(f"upstream: listening on {args.host}:{port}", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", required=True, help="append one JSON line per HTTP request here")
    parser.add_argument("--ready-file", required=True, help="write {port, url} here once accepting")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--json-response", action="store_true", help="answer with JSON instead of SSE")
    parser.add_argument("--stateless", action="store_true", help="stateless streamable HTTP (no session id)")
    parser.add_argument(
        "--resumable", action="store_true", help="keep every SSE event in memory and replay on Last-Event-ID"
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    # SIGTERM → uvicorn's graceful shutdown (it installs its own handlers while serving).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    open(args.record, "a", encoding="utf-8").close()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
