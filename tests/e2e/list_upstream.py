"""A scripted MCP upstream for the list-filter edge cases the SDK server never produces.

The Python SDK upstream (upstream.py) is the real server the main list-filter tests use. This
one answers JSON-RPC POSTs at /mcp with byte-exact responses so the tests can pin down what
mcp-warden's ext_proc filter does with them:

- `tools/list` is paginated (6 tools a page, `nextCursor: "page-2"` on the first page);
- `tools/call` of `x_amz_bedrock_agentcore_search` answers in AgentCore's result shape
  (`structuredContent.tools` and a text block holding `{"tools": [...]}`);
- any other method gets `{"result": {}}`; a batch array gets an array of answers.

The request header `x-list-scenario` picks how the answer is framed:

- `json` (default): `application/json` with its content-length;
- `sse`: `text/event-stream` with CRLF line ends, a comment, `retry:`, event ids, a
  notification before the answer, the answer's data split over two `data:` lines, and the
  bytes cut into chunks mid-line and mid-event (written with pauses, so Envoy sees them apart);
- `other-id` / `sse-other-id` (issue 26): `tools/list` answered, in JSON or in the `sse`
  framing, with a prompts list under another id (`other-<id>`);
- `broken`: a truncated JSON body; `gzip`: the JSON gzip-compressed (`content-encoding: gzip`);
- `large`: each tool's description padded so the JSON answer is LARGE_BYTES (with its
  content-length), sent with the headers; `large-late`: the same, its body LARGE_PAUSE after the
  headers (Envoy meets the two cases differently).

`initialize` gets a real result (tools capability) and an `mcp-session-id`, so the SDK client
can run a session here (and opens its GET stream). `enc:WHERE:NAME` (issue 26) answers
`tools/list` with the full list in encoding NAME (ENCODINGS: a `charset` the list filter does
not read, a byte order mark, or a second `content-encoding` line with gzip): WHERE `post` as an
event stream on the POST, `json` as a JSON body, `get` on the GET stream — the POST then holds
an event stream with a comment only until the GET stream has carried the answer (with the
POST's id; the SDK routes it by id), and ends without one.

`smuggle` (issue 26, the documented residual risk): `tools/list` gets an event stream with
no answer, held as for `enc:get:*`; a concurrent `tools/call` of the same session is answered
with the full list under that `tools/list`'s id, in JSON (where the list filter does not run).

A GET at /mcp is the server-to-client stream (`text/event-stream`, LF line ends, one event a
chunk, written with pauses). Without `Last-Event-ID` it holds one priming event (an id and
empty data) and ends. With `Last-Event-ID` it "resumes" whatever id was sent, replaying
(`replay_events()`): a notification, the answer to an earlier `tools/list` (JSON-RPC id 7,
all twelve tools, one page) and a server-to-client `roots/list` request; with
`x-list-scenario: hold` it then stays open and quiet for STREAM_HOLD seconds and sends one
more `tools/list` answer (id 8) before it ends. A DELETE at /mcp (end of session) gets an
empty 200.

Every request is appended to the record file as one JSON line before it is answered (same
format as upstream.py). Usage:

    python list_upstream.py --record FILE --ready-file FILE
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import signal
import socket
import sys
from typing import Any

import uvicorn

# The same twelve tools as upstream.py, in the same order.
from upstream import TOOL_NAMES  # noqa: E402
SEARCH_TOOL = "x_amz_bedrock_agentcore_search"
# upstream.py's two prompts (an `other-id` answer lists them).
ALL_PROMPTS = [{"name": "summarize"}, {"name": "code_review"}]
PAGE_SIZE = 6
CHUNK_PAUSE = 0.05
# Longer than Envoy's ext_proc timeouts in envoy-test.yaml (grpc_service and message_timeout: 2s).
STREAM_HOLD = 3.0
# Past Envoy's default buffer limit (1 MiB) and twice it, under list_filter.max_event_bytes (8 MiB).
LARGE_BYTES = 3 * 1024 * 1024
LARGE_PAUSE = 0.3


def padded(answer: dict[str, Any]) -> bytes:
    """A tools/list answer whose descriptions are padded to LARGE_BYTES in all."""
    tools = answer["result"]["tools"]
    for t in tools:
        t["description"] = ""
    room = LARGE_BYTES - len(json.dumps(answer, separators=(",", ":")))
    for i, t in enumerate(tools):
        t["description"] = "x" * (room // len(tools) + (room % len(tools) if i == 0 else 0))
    body = json.dumps(answer, separators=(",", ":")).encode()
    assert len(body) == LARGE_BYTES
    return body


def tool_def(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"the {name} tool",
        "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}},
    }


def answer(msg: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON-RPC response to one request (None for a notification)."""
    if "id" not in msg:
        return None
    method = msg.get("method")
    params = msg.get("params") or {}
    result: dict[str, Any]
    if method == "tools/list":
        cursor = params.get("cursor")
        start = PAGE_SIZE if cursor == "page-2" else 0
        result = {"tools": [tool_def(n) for n in TOOL_NAMES[start : start + PAGE_SIZE]]}
        if start + PAGE_SIZE < len(TOOL_NAMES):
            result["nextCursor"] = "page-2"
    elif method == "initialize":
        result = initialize_result(msg)
    elif method == "tools/call" and params.get("name") == SEARCH_TOOL:
        found = {"tools": [tool_def(n) for n in TOOL_NAMES]}
        result = {
            "content": [{"type": "text", "text": json.dumps(found)}],
            "structuredContent": found,
            "isError": False,
        }
    else:
        result = {}
    return {"jsonrpc": "2.0", "id": msg["id"], "result": result}


def sse_chunks(body: str) -> list[bytes]:
    """The answer as an awkwardly framed event stream, cut into chunks."""
    notification = json.dumps(
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 0.5}}
    )
    # Split the answer over two data: lines at a point where a newline is JSON whitespace.
    cut = body.index(',"') + 1
    stream = (
        ": stream opened\r\n"
        "retry: 1500\r\n\r\n"
        f"id: ev-1\r\nevent: message\r\ndata: {notification}\r\n\r\n"
        f"id: ev-2\r\nevent: message\r\ndata: {body[:cut]}\r\ndata: {body[cut:]}\r\n\r\n"
    ).encode()
    # Mid-line cuts: inside "event: message" of ev-2, inside the answer, between CR and LF.
    first = stream.index(b"event: message", stream.index(b"id: ev-2")) + 7
    second = first + 60
    third = stream.rindex(b"\r\n\r\n") + 1
    return [stream[:first], stream[first:second], stream[second:third], stream[third:]]


def compact(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"))


def full_list_answer(id: Any) -> dict[str, Any]:
    """An earlier tools/list answer, all twelve tools on one page."""
    return {"jsonrpc": "2.0", "id": id, "result": {"tools": [tool_def(n) for n in TOOL_NAMES]}}


# The GET stream's events, exactly as written (see the module docstring).
PRIMING_EVENT = "id: p-0\ndata: \n\n"
REPLAYED_NOTIFICATION = {
    "jsonrpc": "2.0",
    "method": "notifications/message",
    "params": {"level": "info", "data": "resumed"},
}
REPLAYED_SERVER_REQUEST = {"jsonrpc": "2.0", "id": "srv-1", "method": "roots/list", "params": {}}


def replay_events() -> list[str]:
    """What a GET with Last-Event-ID replays, one string per event."""
    return [
        f"id: r-1\nevent: message\ndata: {compact(REPLAYED_NOTIFICATION)}\n\n",
        f"id: r-2\nevent: message\ndata: {compact(full_list_answer(7))}\n\n",
        f"id: r-3\nevent: message\ndata: {compact(REPLAYED_SERVER_REQUEST)}\n\n",
    ]


HELD_EVENT = f"id: r-4\nevent: message\ndata: {compact(full_list_answer(8))}\n\n"


def _utf7_hidden_newlines(event: str) -> bytes:
    """An event whose line breaks are UTF-7 (`+AAo-`): one comment line to a UTF-8 reader,
    a `data:` line to a UTF-7 one (the issue's example)."""
    data = event.removeprefix("event: message\ndata: ").removesuffix("\n\n")
    assert "+" not in data and "\\" not in data and "~" not in data, "the JSON must read the same in UTF-7"
    return f": x+AAo-data: {data}+AAoACg-\n\n".encode("ascii")


# name -> (content-type, extra headers, how an SSE event's text becomes bytes). For `json`,
# the JSON body goes through the same function.
ENCODINGS: dict[str, tuple[str, list[tuple[bytes, bytes]], Any]] = {
    "utf-16le": ("text/event-stream; charset=utf-16le", [], lambda t: t.encode("utf-16-le")),
    "utf-16be": ('text/event-stream; charset="UTF-16BE"', [], lambda t: t.encode("utf-16-be")),
    "utf-16": ("text/event-stream; charset=utf-16", [], lambda t: t.encode("utf-16")),  # with a BOM
    "utf-7": ("text/event-stream; charset=utf-7", [], _utf7_hidden_newlines),
    "iso-8859-1": ("text/event-stream; charset=iso-8859-1", [], lambda t: t.encode("latin-1")),
    "utf8": ("text/event-stream; charset=utf8", [], lambda t: t.encode("utf-8")),
    "gzip-split": (
        "text/event-stream",
        [(b"content-encoding", b"identity"), (b"content-encoding", b"gzip")],
        lambda t: gzip.compress(t.encode()),
    ),
    "utf-8-bom": ("text/event-stream; charset=utf-8", [], lambda t: b"\xef\xbb\xbf" + t.encode()),
}
JSON_ENCODINGS: dict[str, tuple[str, Any]] = {
    "utf-7": ("application/json; charset=utf-7", lambda t: t.encode("ascii")),
    "iso-8859-1": ("application/json; charset=iso-8859-1", lambda t: t.encode("latin-1")),
    "utf-16le": ("application/json; charset=utf-16le", lambda t: t.encode("utf-16-le")),
    "utf-8-bom": ("application/json", lambda t: b"\xef\xbb\xbf" + t.encode()),
}
# How long a POST (`enc:get:*`) waits for the GET stream to carry its answer, and how long
# it stays open after that (so the answer is in before this stream ends without one).
ANSWER_WAIT = 5.0
AFTER_ANSWER = 1.0


def encoded_event(name: str, answer: dict[str, Any]) -> bytes:
    """One `message` event carrying `answer`, in encoding `name`."""
    return ENCODINGS[name][2](f"event: message\ndata: {compact(answer)}\n\n")


def initialize_result(msg: dict[str, Any]) -> dict[str, Any]:
    version = (msg.get("params") or {}).get("protocolVersion", "2025-11-25")
    return {
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": {"name": "list-upstream", "version": "0"},
    }


class App:
    def __init__(self, record_path: str) -> None:
        self.record_path = record_path
        # `enc:get:*`, per session: ids of POSTed tools/list calls whose answer the GET stream
        # is to carry, and for each id an event set once it has. (Per session: a client's
        # GET that outlives its session must not take the next session's answer.)
        self.awaiting: dict[str, asyncio.Queue[Any]] = {}
        self.carried: dict[tuple[str, str], asyncio.Event] = {}
        self.sessions = 0

    def _record(self, scope: dict[str, Any], body: bytes) -> None:
        entry = {
            "method": scope.get("method"),
            "path": scope.get("path"),
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope.get("headers", [])],
            "body": body.decode("utf-8", errors="replace"),
        }
        with open(self.record_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        self._record(scope, body)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        scenario = headers.get("x-list-scenario", "json")

        if scope.get("path") == "/mcp" and scope.get("method") == "GET":
            if scenario.startswith("enc:get:"):
                await self._encoded_stream(send, scenario.removeprefix("enc:get:"), headers.get("mcp-session-id", ""))
                return
            await self._stream(send, headers.get("last-event-id"), scenario)
            return
        if scope.get("path") == "/mcp" and scope.get("method") == "DELETE":
            await self._send(send, 200, b"", "text/plain")
            return
        if scope.get("method") != "POST" or scope.get("path") != "/mcp":
            await self._send(send, 405, b"", "text/plain")
            return
        msg = json.loads(body)
        if isinstance(msg, list):
            answers = [a for a in (answer(m) for m in msg) if a is not None]
            payload = json.dumps(answers)
        else:
            one = answer(msg)
            if one is None:
                await self._send(send, 202, b"", "text/plain")
                return
            payload = json.dumps(one, separators=(",", ":"))

        if scenario in ("other-id", "sse-other-id") and isinstance(msg, dict) and msg.get("method") == "tools/list":
            payload = compact({"jsonrpc": "2.0", "id": f"other-{msg['id']}", "result": {"prompts": ALL_PROMPTS}})
            scenario = scenario.removeprefix("other-id").removesuffix("-other-id") or "json"
        if scenario == "smuggle" and isinstance(msg, dict) and msg.get("method") in ("tools/list", "tools/call"):
            session = headers.get("mcp-session-id", "")
            if msg["method"] == "tools/list":
                await self._hold(send, msg["id"], session)
            else:
                await self._smuggled(send, session)
            return
        if scenario.startswith("enc:") and isinstance(msg, dict) and msg.get("method") == "tools/list":
            await self._encoded_answer(send, scenario, msg["id"], headers.get("mcp-session-id", ""))
            return
        if isinstance(msg, dict) and msg.get("method") == "initialize":
            self.sessions += 1
            extra = [(b"mcp-session-id", f"list-upstream-{self.sessions}".encode())]
            await self._send(send, 200, payload.encode(), "application/json", extra)
            return
        if scenario == "sse":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
                }
            )
            for chunk in sse_chunks(payload):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(CHUNK_PAUSE)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif scenario == "broken":
            await self._send(send, 200, payload.encode()[: len(payload) // 2], "application/json")
        elif scenario in ("large", "large-late"):
            body = padded(json.loads(payload))
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if scenario == "large-late":
                await asyncio.sleep(LARGE_PAUSE)
            await send({"type": "http.response.body", "body": body, "more_body": False})
        elif scenario == "gzip":
            await self._send(send, 200, gzip.compress(payload.encode()), "application/json", [(b"content-encoding", b"gzip")])
        else:
            await self._send(send, 200, payload.encode(), "application/json")

    async def _encoded_answer(self, send: Any, scenario: str, id: Any, session: str) -> None:
        """The full list answering `id`, encoded as `enc:WHERE:NAME` says."""
        _, where, name = scenario.split(":", 2)
        answer = full_list_answer(id)
        if where == "json":
            content_type, encode = JSON_ENCODINGS[name]
            await self._send(send, 200, encode(compact(answer)), content_type)
            return
        if where == "post":
            content_type, extra, _ = ENCODINGS[name]
            await self._send(send, 200, encoded_event(name, answer), content_type, extra)
            return
        # `get`: the answer goes out on the GET stream; this stream carries none.
        await self._hold(send, id, session)

    async def _hold(self, send: Any, id: Any, session: str) -> None:
        """An event stream for the tools/list `id` that carries no answer: a comment, then the
        end once another response has carried it (or after ANSWER_WAIT), AFTER_ANSWER later."""
        carried = self.carried.setdefault((session, json.dumps(id)), asyncio.Event())
        await self.awaiting.setdefault(session, asyncio.Queue()).put(id)
        start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
        await send(start)
        await send({"type": "http.response.body", "body": b": the answer comes elsewhere\n\n", "more_body": True})
        try:
            await asyncio.wait_for(carried.wait(), ANSWER_WAIT)
        except TimeoutError:
            pass
        await asyncio.sleep(AFTER_ANSWER)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _smuggled(self, send: Any, session: str) -> None:
        """`smuggle`: a tools/call answered with the full list under the id of the session's
        pending tools/list (once one is pending, within ANSWER_WAIT), in JSON."""
        try:
            id = await asyncio.wait_for(self.awaiting.setdefault(session, asyncio.Queue()).get(), ANSWER_WAIT)
        except TimeoutError:
            await self._send(send, 200, b"", "application/json")
            return
        await self._send(send, 200, compact(full_list_answer(id)).encode(), "application/json")
        self.carried.setdefault((session, json.dumps(id)), asyncio.Event()).set()

    async def _encoded_stream(self, send: Any, name: str, session: str) -> None:
        """The GET stream of `enc:get:NAME`: the headers at once, then the answer to the next
        POSTed tools/list of its session (if one comes within ANSWER_WAIT), in encoding NAME; then
        it ends."""
        content_type, extra, _ = ENCODINGS[name]
        headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-cache"), *extra]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            id = await asyncio.wait_for(self.awaiting.setdefault(session, asyncio.Queue()).get(), ANSWER_WAIT)
        except TimeoutError:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        try:
            await send({"type": "http.response.body", "body": encoded_event(name, full_list_answer(id)), "more_body": True})
            await asyncio.sleep(AFTER_ANSWER)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.carried.setdefault((session, json.dumps(id)), asyncio.Event()).set()

    @staticmethod
    async def _stream(send: Any, last_event_id: str | None, scenario: str) -> None:
        """The GET stream: a priming event, or a replay after `last_event_id`."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        events = replay_events() if last_event_id else [PRIMING_EVENT]
        for event in events:
            await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
            await asyncio.sleep(CHUNK_PAUSE)
        if last_event_id and scenario == "hold":
            await asyncio.sleep(STREAM_HOLD)
            await send({"type": "http.response.body", "body": HELD_EVENT.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _send(send: Any, status: int, body: bytes, content_type: str, extra: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def serve(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(App(args.record), log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise SystemExit("list_upstream: uvicorn exited before starting")
        await asyncio.sleep(0.02)
    tmp = f"{args.ready_file}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"port": port, "url": f"http://127.0.0.1:{port}/mcp"}, f)
    os.replace(tmp, args.ready_file)
    print(f"list_upstream: listening on 127.0.0.1:{port}", flush=True)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", required=True)
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    open(args.record, "a", encoding="utf-8").close()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
