"""A deliberately cheap MCP backend, so that a benchmark measures the hop in front of it, not the backend.

    python -m tests.servers.cheap --port N [--host 127.0.0.1] [--version 2026-07-28|2025-11-25]

One process: asyncio (uvloop when installed) and httptools, HTTP/1.1 keep-alive, requests on
a connection answered in order. Every answer is precomputed bytes with only the JSON-RPC id
spliced in; the one tool, `echo`, answers the text "hello" whatever it is given. Prints
`READY <url>` once listening; SIGTERM or SIGINT stops it.

- `2026-07-28` (stateless): `server/discover`, `tools/list` and `tools/call`, each POST on its own.
- `2025-11-25`: `initialize` answers with the fixed `Mcp-Session-Id` below; every other request
  must carry it (else HTTP 400, as the SDK's servers answer), then `tools/list`, `tools/call`, `ping`.

Both: notifications and responses get 202, GET 405 (no notification stream), unknown methods
-32601. Declares no `listChanged`, so clients open no listen stream.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import signal
from typing import cast

import httptools
import msgspec

__all__ = ["SESSION_ID", "Backend"]

SESSION_ID = "cheap-session"
STATELESS, HANDSHAKE = "2026-07-28", "2025-11-25"
_SERVER_INFO = {"name": "cheap", "version": "1.0.0"}
_TOOL = {
    "name": "echo",
    "description": "Answers the text 'hello', whatever it is given.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
_CALL = {"content": [{"type": "text", "text": "hello"}], "isError": False}
_COMPLETE = {"resultType": "complete"}  # required on every 2026-07-28 result
_CACHEABLE = {**_COMPLETE, "ttlMs": 0, "cacheScope": "private"}  # and these on discover and list results

_RESULTS: dict[str, dict[str, object]] = {
    STATELESS: {
        "server/discover": {
            "supportedVersions": [STATELESS],
            "capabilities": {"tools": {}},
            **_CACHEABLE,
            "_meta": {"io.modelcontextprotocol/serverInfo": _SERVER_INFO},
        },
        "tools/list": {"tools": [_TOOL], **_CACHEABLE},
        "tools/call": {**_CALL, **_COMPLETE},
    },
    HANDSHAKE: {
        "initialize": {"protocolVersion": HANDSHAKE, "capabilities": {"tools": {}}, "serverInfo": _SERVER_INFO},
        "ping": {},
        "tools/list": {"tools": [_TOOL]},
        "tools/call": _CALL,
    },
}


class _Params(msgspec.Struct):
    name: str = ""


class _Envelope(msgspec.Struct):
    """The only fields of a request this server reads; the rest of the body is skipped unparsed."""

    id: int | str | None = None
    method: str = ""
    params: _Params | None = None


_decode = msgspec.json.Decoder(_Envelope).decode


def _http(status: bytes, body: bytes = b"", extra: bytes = b"") -> bytes:
    length = b"content-length: %d\r\n" % len(body)
    return b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n" + length + extra + b"\r\n" + body


def _error(request_id: bytes, code: int, message: str) -> bytes:
    return b'{"jsonrpc":"2.0","id":%s,"error":{"code":%d,"message":%s}}' % (
        request_id,
        code,
        msgspec.json.encode(message),
    )


_OK, _ACCEPTED, _BAD, _NOT_FOUND = b"200 OK", b"202 Accepted", b"400 Bad Request", b"404 Not Found"
_NOT_ALLOWED = _http(b"405 Method Not Allowed", extra=b"allow: POST\r\n")
_SESSION_HEADER = b"mcp-session-id: " + SESSION_ID.encode() + b"\r\n"


class Backend:
    """The answers of one protocol version, as bytes: only the id changes between two calls."""

    def __init__(self, version: str) -> None:
        self.stateless = version == STATELESS
        self.tails = {
            method: b',"result":' + msgspec.json.encode(result) + b"}" for method, result in _RESULTS[version].items()
        }

    def answer(self, verb: bytes, path: bytes, session: bytes, body: bytes) -> bytes:
        """The whole HTTP response to one request."""
        if path.split(b"?", 1)[0] != b"/mcp":
            return _http(_NOT_FOUND)
        if verb == b"DELETE" and not self.stateless:
            return _http(_OK)  # the session is fixed: ending it changes nothing
        if verb != b"POST":
            return _NOT_ALLOWED
        try:
            message = _decode(body)
        except msgspec.DecodeError:
            return _http(_BAD, _error(b"null", -32700, "Parse error"))
        if message.id is None:
            return _http(_ACCEPTED)  # a notification or a response
        request_id = msgspec.json.encode(message.id)
        if not self.stateless and message.method != "initialize" and session != SESSION_ID.encode():
            return _http(_BAD, _error(request_id, -32600, "Bad Request: missing or unknown Mcp-Session-Id"))
        tail = self.tails.get(message.method)
        if tail is None:
            return _http(_OK, _error(request_id, -32601, f"Method not found: {message.method}"))
        if message.method == "tools/call" and (message.params is None or message.params.name != "echo"):
            return _http(_OK, _error(request_id, -32602, "Unknown tool: only 'echo' exists"))
        extra = _SESSION_HEADER if message.method == "initialize" else b""
        return _http(_OK, b'{"jsonrpc":"2.0","id":' + request_id + tail, extra)


class _Connection(asyncio.Protocol):
    """One client connection: httptools parses, each complete request is answered at once."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.path = b""
        self.session = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(_http(_BAD))
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.path, self.session, self.body = b"", b"", []

    def on_url(self, url: bytes) -> None:
        self.path += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"mcp-session-id":
            self.session = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.transport.write(self.backend.answer(self.parser.get_method(), self.path, self.session, body))
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(host: str, port: int, version: str) -> None:
    """Listen, announce `READY <url>`, answer until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    backend = Backend(version)
    server = await loop.create_server(lambda: _Connection(backend), host, port, reuse_address=True)
    print(f"READY http://{host}:{server.sockets[0].getsockname()[1]}/mcp", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port (READY names it)")
    parser.add_argument("--version", choices=[STATELESS, HANDSHAKE], default=STATELESS)
    args = parser.parse_args()
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        uvloop.run(serve(args.host, args.port, args.version))
    else:
        asyncio.run(serve(args.host, args.port, args.version))


if __name__ == "__main__":
    main()
