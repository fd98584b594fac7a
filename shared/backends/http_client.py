"""A lean HTTP/1.1 client for backends: keep-alive connections, one write per request, bytes in and out.

Forwarding is most of what the gateway does, and a general-purpose client spends more per
request than the rest of the hop together (headers as multidicts, per-request objects, trace
hooks). This one does only what talking to an MCP server needs: POST/GET/DELETE with a body
of bytes, responses read whole or streamed (SSE), connections reused while the server keeps
them alive. Parsing is httptools (llhttp), the parser uvicorn uses.

A request that fails on a reused connection before any response byte arrived is retried once
on a fresh connection: the server may have closed the idle connection as we wrote to it.

A pool never holds more than `max_connections` sockets: past that, a request waits (in
arrival order) for a connection to come back idle or to close. Its caller's timeout bounds
the wait.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = ["HttpPool", "Response", "WireError"]

_CONNECT_TIMEOUT = 10.0
_MAX_IDLE = 64


class WireError(Exception):
    """The connection failed or the server broke HTTP; the message says how."""


class Response:
    """Status and headers once they arrived; the body read whole or chunk by chunk."""

    def __init__(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        self._connection = connection
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head: asyncio.Future[None] = loop.create_future()
        self._chunks: deque[bytes] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._done = False
        self._error: Exception | None = None
        self.started = False  # any byte of the response arrived

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    async def read(self) -> bytes:
        if self._done and self._error is None and len(self._chunks) <= 1:  # arrived whole: most answers
            return self._chunks.popleft() if self._chunks else b""
        parts = [chunk async for chunk in self.iter_chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        while True:
            while self._chunks:
                yield self._chunks.popleft()
            if self._error is not None:
                raise self._error
            if self._done:
                return
            self._wakeup = asyncio.get_running_loop().create_future()
            await self._wakeup

    def close(self) -> None:
        """Stop reading: a response not read to its end takes its connection down with it."""
        if not self._done:
            self._done = True
            self._connection._close()

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._wake()

    def _finish(self, error: Exception | None = None) -> None:
        if self._done:
            return
        self._done = True
        self._error = error
        if not self.head.done():
            if error is not None:
                self.head.set_exception(error)
            else:
                self.head.set_result(None)
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


class _Connection(asyncio.Protocol):
    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.alive = True
        self.holds_slot = True  # one of the pool's max_connections, from before connecting until closed

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection's transport

    def data_received(self, data: bytes) -> None:
        if self.response is None:
            self._close()  # the server spoke out of turn
            return
        self.response.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(WireError(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        response, self.response = self.response, None
        if response is not None:
            if exc is None and response.head.done() and _ends_at_close(response.headers):
                response._finish()
            else:
                response._finish(WireError(f"the server closed the connection ({exc or 'EOF'})"))
        self.pool._closed(self)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status = self.parser.get_status_code()
        if not response.head.done():
            response.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        response, self.response = self.response, None
        keep = self.parser.should_keep_alive()
        if response is not None:
            response._finish()
        if keep and self.alive:
            self.pool._release(self)
        else:
            self._close()

    # internals
    def _fail(self, error: Exception) -> None:
        if self.response is not None:
            self.response._finish(error)
            self.response = None
        self._close()

    def _close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()


def _ends_at_close(headers: dict[str, str]) -> bool:
    """A body with neither length nor chunking ends when the server closes the connection (RFC 9112 6.3)."""
    return "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower()


class HttpPool:
    """Keep-alive connections to one origin (scheme, host, port)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = _CONNECT_TIMEOUT,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = self.port == (443 if self.ssl else 80)
        authority = self.host if default_port else f"{self.host}:{self.port}"
        common = {"host": authority, **{k.lower(): v for k, v in (headers or {}).items()}}
        self._common = "".join(f"{k}: {v}\r\n" for k, v in common.items()).encode("latin-1")
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []
        self._closing = False
        self.max_connections = max_connections
        self._open = 0
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()

    def encode_headers(self, headers: Mapping[str, str]) -> bytes:
        """Request headers as wire bytes (cache the result for headers that repeat)."""
        return self._common + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")

    async def request(self, method: str, head: bytes, body: bytes = b"", target: str | None = None) -> Response:
        """Send one request (`head` from encode_headers); return once the response's status line arrived."""
        for attempt in (0, 1):
            conn, reused = await self._checkout()
            response = Response(conn)
            conn.response = response
            length = f"content-length: {len(body)}\r\n".encode() if body or method == "POST" else b""
            assert conn.transport is not None
            conn.transport.write(
                f"{method} {target or self.target} HTTP/1.1\r\n".encode() + head + length + b"\r\n" + body
            )
            try:
                await response.head
            except WireError:
                if reused and attempt == 0 and not response.started:
                    continue  # the server dropped an idle connection under us: once more, fresh
                raise
            except BaseException:
                conn._close()  # cancelled mid-request: this connection's state is unknown
                raise
            return response
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._closing = True
        for conn in self._idle:
            conn._close()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(WireError(f"the pool for {self.host}:{self.port} was closed"))

    async def _checkout(self) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if conn.alive and conn.transport is not None and not conn.transport.is_closing():
                return conn, True
        if self._open < self.max_connections:
            self._open += 1
        else:
            handed = await self._wait_for_turn()
            if handed is not None:
                return handed, True
            # else a closed connection's slot was handed to us
        return await self._connect(), False

    async def _wait_for_turn(self) -> _Connection | None:
        """Wait for an idle connection (returned) or a free slot (None), in arrival order."""
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if not waiter.cancelled():  # handed over just as the caller gave up: pass it on
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self._release(handed)
            else:
                self._waiters.remove(waiter)
            raise

    async def _connect(self) -> _Connection:
        """A new connection in a slot already counted in `_open`; the slot is freed if connecting fails."""
        conn = _Connection(self)
        loop = asyncio.get_running_loop()
        try:
            # Not asyncio.wait_for: on Python 3.11 it drops a cancellation that arrives as the connect completes.
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: conn, self.host, self.port, ssl=self.ssl)
        except BaseException as exc:
            self._closed(conn)
            if isinstance(exc, TimeoutError):
                took = f"{self.connect_timeout:g}s"
                raise WireError(f"connecting to {self.host}:{self.port} timed out after {took}") from None
            if isinstance(exc, OSError):
                raise WireError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
            raise
        return conn

    def _release(self, conn: _Connection) -> None:
        """A connection done with its response: to the first waiter, else idle (or closed)."""
        if self._closing:
            conn._close()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if len(self._idle) >= _MAX_IDLE:
            conn._close()
        else:
            self._idle.append(conn)

    def _closed(self, conn: _Connection) -> None:
        """The connection's socket is gone (or never came): its slot goes to a waiter or back to the pool."""
        if conn.holds_slot:
            conn.holds_slot = False
            self._free_slot()

    def _free_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot stays counted: the waiter opens a connection in it
                return
        self._open -= 1
