"""Exchange: one HTTP/1.1 request and its response, as the ASGI app sees them (receive, send).

A response with a Content-Length leaves in one write, head and body together (the usual JSON
answer); a response without one (an SSE stream) is sent chunked, its head at once so the client
sees the stream open before the first event. `receive` hands over the body as it arrives, then
waits until the client disconnects or the response is complete and says `http.disconnect`: that
is how a handler learns that its client hung up.

The app's errors never reach the client as a traceback: before the response started it gets a
500 JSON-RPC error and the connection closes, after it the connection just closes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aggregator.transport.http_common import ASGIApp, Scope
from shared.protocol.errors import InternalError
from shared.protocol.jsonrpc import error_response

if TYPE_CHECKING:
    from aggregator.http_connection import HttpConnection

__all__ = ["Exchange", "exchange_of", "status_line"]

log = logging.getLogger("aggregator.http")

_INVALID_NAME = re.compile(rb'[\x00-\x20\x7f()<>@,;:\\"/\[\]?={}]')
_INVALID_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # CR and LF above all: no header injection
_DISCONNECT = {"type": "http.disconnect"}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_NO_BODY_STATUS = frozenset({204, 304})


def status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


_STATUS_LINES = {status: status_line(status) for status in range(100, 600)}


class _DefaultHead:
    """uvicorn's default headers (the date, refreshed each second) as wire bytes, built once per refresh."""

    __slots__ = ("bytes", "source")

    def __init__(self) -> None:
        self.source: list[tuple[bytes, bytes]] | None = None
        self.bytes = b""

    def get(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        if headers is not self.source:
            self.source = headers
            self.bytes = b"".join(b"%b: %b\r\n" % pair for pair in headers)
        return self.bytes


_default_head = _DefaultHead()


class Exchange:
    """One request's body (as received so far) and its response's progress."""

    __slots__ = (
        "_body",
        "_chunked",
        "_expect_continue",
        "_head",
        "_remaining",
        "_waiter",
        "body_done",
        "conn",
        "disconnected",
        "handed_over",
        "head_only",
        "keep_alive",
        "more_body",
        "on_disconnect",
        "response_complete",
        "response_started",
        "scope",
    )

    def __init__(self, conn: HttpConnection, scope: Scope, *, keep_alive: bool, expect_continue: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self._expect_continue = expect_continue
        self._body: list[bytes] = []
        self.more_body = True  # the request's body has more to come
        self.body_done = False  # the app received the body's end
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self._head: bytes | None = None  # held until the body, for a response of known length
        self._chunked = False
        self._remaining = 0
        self._waiter: asyncio.Future[None] | None = None
        self.on_disconnect: Callable[[], object] | None = None
        self.handed_over = False  # the response goes on in a task of its own (hand_over)
        self.head_only = scope["method"] == "HEAD"

    # fed by the connection

    def add_body(self, data: bytes) -> int:
        """Buffer body bytes; how many are now buffered (the connection pauses reading past a limit)."""
        self._body.append(data)
        self.wake()
        return sum(map(len, self._body)) if len(self._body) > 1 else len(data)

    def end_body(self) -> None:
        self.more_body = False
        self.wake()

    def lose(self) -> None:
        """The client went away: receive says so, send writes nothing more."""
        if not self.response_complete:
            self.disconnected = True
            if self.on_disconnect is not None:
                self.on_disconnect()
        self.wake()

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ASGI

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self.conn.abort(self)
            raise
        except BaseException:
            log.exception("error serving %s %s", self.scope["method"], self.scope["path"])
            if self.response_started:
                self.conn.abort(self)
            else:
                await self._send_500()
        else:
            if self.disconnected or self.handed_over:
                return
            if not self.response_started:
                log.error("%s %s: the handler returned without a response", self.scope["method"], self.scope["path"])
                await self._send_500()
            elif not self.response_complete:
                log.error("%s %s: the handler returned mid-response", self.scope["method"], self.scope["path"])
                self.conn.abort(self)
        finally:
            if not self.handed_over:
                self.conn.finished(self)

    def hand_over(self, stream: Coroutine[Any, Any, None]) -> None:
        """The rest of the response is `stream`'s, run as a task of its own; the app returns now.

        A long stream then holds only what `stream` needs: the frames of the request's handlers
        (its body, params, headers, context; 3-5 KB) are freed while it stays open.
        """
        self.handed_over = True
        self.scope = {"method": self.scope["method"], "path": self.scope["path"]}  # what log lines need
        self.conn.run(stream).add_done_callback(self._stream_ended)

    def _stream_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("a stream on %s failed", self.scope["path"], exc_info=task.exception())
        if not self.response_complete:
            self.conn.abort(self)

    async def receive(self) -> dict[str, Any]:
        if self._expect_continue:
            self._expect_continue = False
            if not self.conn.transport.is_closing():
                self.conn.transport.write(_CONTINUE)
        while not (self.disconnected or self.response_complete):
            if self._body or (not self.more_body and not self.body_done):
                body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
                self._body = []
                self.body_done = not self.more_body
                self.conn.resume_reading()
                return {"type": "http.request", "body": body, "more_body": self.more_body}
            self._waiter = asyncio.get_running_loop().create_future()
            self.conn.resume_reading()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return _DISCONNECT

    async def send(self, message: dict[str, Any]) -> None:
        if self.conn.write_paused and not self.disconnected:
            await self.conn.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {kind}")
            self._start(message["status"], message.get("headers", ()))
            return
        if self.response_complete or kind != "http.response.body":
            state = "ended" if self.response_complete else "began"
            raise RuntimeError(f"unexpected {kind} after the response {state}")
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self.head_only:
            body = b""
        elif self._chunked:
            body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + (b"" if more else _LAST_CHUNK)
        else:
            self._remaining -= len(body)
            if self._remaining < 0 or (not more and self._remaining):
                raise RuntimeError("response body does not match its Content-Length")
        if self._head is not None:
            body, self._head = self._head + body, None
        if body:
            self.conn.transport.write(body)
        if not more:
            self.response_complete = True
            self.wake()
            self.conn.responded(self)

    # internals

    def _start(self, status: int, headers: Any) -> None:
        parts = [
            _STATUS_LINES.get(status) or status_line(status),
            _default_head.get(self.conn.server_state.default_headers),
        ]
        length: int | None = None
        close = False
        for name, value in headers:
            if _INVALID_NAME.search(name) or _INVALID_VALUE.search(value):
                raise RuntimeError(f"invalid response header {name!r}")
            name = name.lower()
            if name == b"content-length":
                length = int(value)
                continue  # written last, once
            if name == b"connection" and b"close" in value.lower():
                close = True
            elif name == b"transfer-encoding":
                continue  # framing is this layer's: chunked exactly when no length is given
            parts += (name, b": ", value, b"\r\n")
        self.response_started = True
        self._expect_continue = False
        if close:
            self.keep_alive = False
        elif not self.keep_alive:
            parts.append(b"connection: close\r\n")
        if length is not None:
            parts += (b"content-length: %d\r\n" % length, b"\r\n")
            self._remaining = 0 if self.head_only else length
            self._head = b"".join(parts)
            return
        if not self.head_only and status not in _NO_BODY_STATUS:
            self._chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
            self.conn.streaming()
        parts.append(b"\r\n")
        self.conn.transport.write(b"".join(parts))

    async def _send_500(self) -> None:
        self.keep_alive = False
        body = error_response(None, InternalError("The gateway failed to serve this request; see its log"))
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


def exchange_of(receive: Any) -> Exchange | None:
    """The Exchange behind an ASGI `receive` when this server runs the app (not an in-process client).

    A long-lived stream hands itself over (`hand_over`), sets `on_disconnect` and reads
    `disconnected` instead of keeping a task waiting in `receive` for the disconnect.
    """
    owner = getattr(receive, "__self__", None)
    return owner if isinstance(owner, Exchange) else None
