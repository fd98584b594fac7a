"""A fleet of MCP servers in one process: `--servers N` 2025-11-25 servers of `--tools M` tools each.

    python -m tests.servers.fleet --servers 100 --tools 50 [--host 127.0.0.1] [--port 0]

Server `i` is served at `/s/{i}/mcp` (Streamable HTTP, 2025-11-25: `initialize` mints an
`Mcp-Session-Id`, POSTs answer with JSON, GET opens the session's notification stream, DELETE
ends it). It offers `tools` (with `listChanged`) and answers `initialize`, `ping`, `tools/list`
and `tools/call` (every tool echoes its arguments). `server/discover` without a session gets
HTTP 400, as a handshake-era server answers it, so a 2026-07-28 client falls back to
`initialize`. Plain ASGI under uvicorn: cheap enough that a benchmark of the gateway in front
of it measures the gateway.

`POST /control/{i}/change` changes server `i`'s tool list (it gains a tool `added_{n}`, the one
added before goes) and sends `notifications/tools/list_changed` on every open GET stream of
that server; the answer is `{"added": "added_{n}", "streams": <streams told>}`.

Prints `READY <base url>` (no path) once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
from typing import Any

from tests.servers.http import add_address_arguments, run

Scope = dict[str, Any]
Receive = Any
Send = Any

_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
_LIST_CHANGED = b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n'


def tool(index: int) -> dict[str, Any]:
    """A tool of realistic size (about 380 bytes of JSON): a description and a small input schema."""
    return {
        "name": f"tool_{index:02d}",
        "description": f"Does thing number {index} to a resource of the cluster and reports what changed. " * 2,
        "inputSchema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "The resource"},
                "namespace": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1},
            },
            "required": ["name"],
        },
    }


class Backend:
    """One MCP server of the fleet: its tools, its sessions, their open GET streams."""

    def __init__(self, index: int, tools: int) -> None:
        self.name = f"fleet-{index}"
        self.base_tools = [tool(i) for i in range(tools)]
        self.tools = list(self.base_tools)
        self.sessions: set[str] = set()
        self.streams: set[asyncio.Queue[bytes]] = set()
        self.changes = 0
        self._list = self._encode_list()

    def _encode_list(self) -> bytes:
        return json.dumps({"tools": self.tools}, separators=(",", ":")).encode()

    def change(self) -> tuple[str, int]:
        self.changes += 1
        added = f"added_{self.changes}"
        self.tools = [*self.base_tools, {**self.base_tools[0], "name": added}]
        self._list = self._encode_list()
        for queue in self.streams:
            queue.put_nowait(_LIST_CHANGED)
        return added, len(self.streams)

    def answer(self, method: str, params: dict[str, Any]) -> bytes | dict[str, Any]:
        """The result of a request (JSON bytes or an object), or an error object under "error"."""
        if method == "tools/list":
            return self._list
        if method == "ping":
            return {}
        if method == "tools/call":
            text = json.dumps(params.get("arguments") or {})
            return {"content": [{"type": "text", "text": text}], "isError": False}
        return {"error": {"code": -32601, "message": f"Method not found: {method}"}}


class Fleet:
    def __init__(self, servers: int, tools: int) -> None:
        self.backends = [Backend(i, tools) for i in range(servers)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        parts = scope["path"].strip("/").split("/")
        backend = None
        if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) < len(self.backends):
            backend = self.backends[int(parts[1])]
        if backend is not None and parts[0] == "control" and parts[2] == "change" and scope["method"] == "POST":
            added, told = backend.change()
            await _reply(send, 200, json.dumps({"added": added, "streams": told}).encode())
        elif backend is not None and parts[0] == "s" and parts[2] == "mcp":
            await self._mcp(backend, scope, receive, send)
        else:
            await _reply(send, 404, b"not found", "text/plain")

    async def _mcp(self, backend: Backend, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        session = headers.get("mcp-session-id")
        method = scope["method"]
        if session is not None and session not in backend.sessions:
            await _reply(send, 404, _error(None, -32001, "Session not found"))
            return
        if method == "GET" and session is not None:
            await self._stream(backend, receive, send)
        elif method == "DELETE" and session is not None:
            backend.sessions.discard(session)
            await _reply(send, 200, b"")
        elif method == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            await self._post(backend, session, json.loads(body), send)
        else:
            await _reply(send, 405, b"method not allowed", "text/plain")

    async def _post(self, backend: Backend, session: str | None, message: dict[str, Any], send: Send) -> None:
        method, request_id = message.get("method"), message.get("id")
        if "id" not in message or method is None:  # a notification or a response
            await _reply(send, 202, b"")
            return
        params = message.get("params") or {}
        if method == "initialize":
            new = secrets.token_hex(16)
            backend.sessions.add(new)
            requested = params.get("protocolVersion")
            result = {
                "protocolVersion": requested if requested in _VERSIONS else _VERSIONS[0],
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": backend.name, "version": "1.0.0"},
            }
            await _reply(send, 200, _result(request_id, result), headers=[(b"mcp-session-id", new.encode())])
            return
        if session is None:
            await _reply(send, 400, _error(request_id, -32600, "Bad Request: Missing session ID"))
            return
        answer = backend.answer(method, params)
        if isinstance(answer, dict) and "error" in answer:
            await _reply(send, 200, _error(request_id, answer["error"]["code"], answer["error"]["message"]))
        else:
            await _reply(send, 200, _result(request_id, answer))

    async def _stream(self, backend: Backend, receive: Receive, send: Send) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        backend.streams.add(queue)
        head = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    return
                await send({"type": "http.response.body", "body": getter.result(), "more_body": True})
        finally:
            backend.streams.discard(queue)
            gone.cancel()
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _result(request_id: Any, result: bytes | dict[str, Any]) -> bytes:
    encoded = result if isinstance(result, bytes) else json.dumps(result, separators=(",", ":")).encode()
    return b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode() + b',"result":' + encoded + b"}"


def _error(request_id: Any, code: int, message: str) -> bytes:
    error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return json.dumps(error).encode()


async def _reply(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    head = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_address_arguments(parser, port_required=False)
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--tools", type=int, default=50, help="tools per server")
    args = parser.parse_args()
    run(Fleet(args.servers, args.tools), args.host, args.port, "")


if __name__ == "__main__":
    main()
