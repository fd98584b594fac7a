"""A small HTTP/1.1 server on 127.0.0.1 whose answers come from a handler function.

The handler gets the request and an `HttpReply` that writes straight to the socket, so a test
can answer whole, chunk by chunk, with bytes that are not HTTP at all, or close the connection
at any point. Connections are kept alive: the next request on one goes to the handler again.
A client closing a connection cancels the handler serving it. An exception in a handler
closes its connection and is raised again when the server stops, so a broken fake fails its test.

    async def handler(request: HttpRequest, reply: HttpReply) -> None:
        reply.send(200, b"hello")

    async with HttpServer(handler) as server:
        ...  # server.url, server.requests, await server.closed(1)
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httptools

__all__ = ["Handler", "HttpReply", "HttpRequest", "HttpServer"]


@dataclass(slots=True)
class HttpRequest:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    connection: int  # which connection carried it: 1 for the first the server accepted
    number: int  # its place on that connection: 1 for the first


class HttpReply:
    """The answer to one request, written to the socket as each method is called."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.state = "new"  # "streaming" once start() sent the head, "done" once answered

    def send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        """A whole answer with a content-length."""
        self._transport.write(_head(status, {"content-length": str(len(body)), **(headers or {})}) + body)
        self.state = "done"

    def start(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        """The head of a chunked answer; write() sends each chunk, end() the last."""
        self._transport.write(_head(status, {"transfer-encoding": "chunked", **(headers or {})}))
        self.state = "streaming"

    def write(self, data: bytes) -> None:
        self._transport.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def end(self) -> None:
        self._transport.write(b"0\r\n\r\n")
        self.state = "done"

    def raw(self, data: bytes) -> None:
        """Bytes exactly as given (garbage, a partial head, a body longer than announced)."""
        self._transport.write(data)
        self.state = "done"

    def close(self) -> None:
        """Close the connection now; what was written is still delivered."""
        self._transport.close()
        self.state = "done"


Handler = Callable[[HttpRequest, HttpReply], Awaitable[None]]


class HttpServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[HttpRequest] = []
        self.errors: list[BaseException] = []
        self.port = 0
        self._connections: dict[int, _Connection] = {}
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """How many connections the server accepted so far."""
        return len(self._connections)

    async def closed(self, connection: int) -> None:
        """Wait until that connection is closed (by either side)."""
        await self._connections[connection].gone.wait()

    async def __aenter__(self) -> HttpServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for connection in self._connections.values():
            connection.drop()
        tasks = [c.task for c in self._connections.values() if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self._server.wait_closed()
        if self.errors and exc == (None, None, None):
            raise self.errors[0]


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.number = len(server._connections) + 1
        server._connections[self.number] = self
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.gone = asyncio.Event()
        self.served = 0
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.drop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone.set()
        if self.task is not None:
            self.task.cancel()

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", {}, bytearray()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.served += 1
        method = self.parser.get_method().decode()
        request = HttpRequest(method, self._url.decode(), self._headers, bytes(self._body), self.number, self.served)
        self.server.requests.append(request)
        self.task = asyncio.ensure_future(self._serve(request))

    async def _serve(self, request: HttpRequest) -> None:
        assert self.transport is not None
        reply = HttpReply(self.transport)
        try:
            await self.server.handler(request, reply)
        except asyncio.CancelledError:
            return  # the client went away
        except Exception as exc:
            self.server.errors.append(exc)
            self.drop()
            return
        if reply.state == "new":
            reply.send(500, b"the test's handler returned without answering")
        elif reply.state == "streaming":
            reply.end()


def _head(status: int, headers: Mapping[str, str]) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
