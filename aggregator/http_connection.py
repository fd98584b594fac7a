"""HttpConnection: the gateway's HTTP/1.1 connections, bounded, with as little work per request as it can.

uvicorn still runs the server (the listening socket, lifespan, signals, graceful shutdown) and
hands each accepted connection to this protocol (`http=`). A forwarded call is most of what
the gateway does, so per request this does only what HTTP needs: httptools parses, one ASGI
task runs the app (`Exchange`), one write answers. uvicorn's own protocol cost about a tenth of
a forwarded call on top (a cycle object, an Event, a keep-alive timer made and cancelled per
request, the head and body in two writes).

Bounds, per connection:

- `headerTimeout`: the request line and headers arrive within it, counted from connecting for
  the first request and from its first byte for later ones; else 408 and close;
- `maxHeaderBytes`: a head still incomplete past that many bytes gets 431 and close;
- `bodyTimeout`: the body arrives within it once the head did; else 408 and close;
- `keepAliveTimeout`: an idle connection between requests is closed.

All four are one deadline and at most one timer per connection. A head or body deadline is set
only when a read leaves one incomplete, so a request that arrives in one read sets none; the
keep-alive deadline moves with each response, and the timer, when it fires before it, sleeps
again until it.

Requests pipelined on one connection are answered in order (reading pauses meanwhile); a
request body buffered past 64 KiB pauses reading until the app takes it.

What uvicorn's server expects of a protocol class (hence the version range in pyproject.toml):
the constructor's arguments, `ServerState.connections` and `.tasks` kept current (graceful
shutdown waits on both), `shutdown()`, and `.default_headers` (the date) read per response.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Coroutine
from http import HTTPStatus
from typing import Any, ClassVar, cast
from urllib.parse import unquote

import httptools
import uvicorn
from uvicorn.server import ServerState

from aggregator.http_exchange import Exchange, status_line
from shared.config import AggregatorSettings
from shared.protocol.errors import InvalidRequest
from shared.protocol.jsonrpc import error_response

__all__ = ["HttpConnection", "connection_class"]

log = logging.getLogger("aggregator.http")

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_BUFFERED_BODY_LIMIT = 64 * 1024


class _Reading(enum.Enum):
    IDLE = "idle"  # between requests: the keep-alive deadline
    HEAD = "head"
    BODY = "body"
    DONE = "done"  # a whole request is in and not yet answered: no deadline


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests, runs an Exchange per request, enforces the bounds."""

    settings: ClassVar[AggregatorSettings] = AggregatorSettings()

    __slots__ = (
        "_deadline",
        "_deadline_for",
        "_expect",
        "_head_began",
        "_head_bytes",
        "_headers",
        "_reading",
        "_timer",
        "_url",
        "_writable",
        "app",
        "app_state",
        "client",
        "current",
        "incoming",
        "loop",
        "parser",
        "queued",
        "read_paused",
        "server",
        "server_state",
        "transport",
        "write_paused",
    )

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.app_state = app_state
        self.server_state = server_state
        self.loop = _loop or asyncio.get_running_loop()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set on connection_made
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)  # answer what came before a close
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.current: Exchange | None = None  # the request being answered
        self.incoming: Exchange | None = None  # the request being read (the same one, unless pipelined)
        self.queued: list[Exchange] = []  # pipelined requests waiting for their turn (a deque is 700 bytes more)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._expect = False
        self._reading = _Reading.HEAD  # the first head is timed from connecting: a silent client is a slow head
        self._head_bytes = 0
        self._head_began = False
        self._deadline = 0.0
        self._deadline_for = _Reading.DONE  # what the deadline is for
        self._timer: asyncio.TimerHandle | None = None
        self.read_paused = False
        self.write_paused = False
        self._writable: asyncio.Future[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, though not a subclass
        self.server_state.connections.add(cast(Any, self))  # uvicorn types the set by its own protocols
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))
        self._expect_by(self.settings.header_timeout, _Reading.HEAD)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._reading = _Reading.DONE
        for exchange in {self.current, self.incoming, *self.queued}:
            if exchange is not None:
                exchange.lose()
        self.queued.clear()
        self.resume_writing()

    def data_received(self, data: bytes) -> None:
        self._head_began = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol upgrades here (no WebSocket): the request is served as plain HTTP, then the connection closes.
            if self.incoming is not None:
                self.incoming.keep_alive = False
            elif self.current is not None:
                self.current.keep_alive = False
            return
        except httptools.HttpParserError as exc:
            self._refuse(HTTPStatus.BAD_REQUEST, f"Malformed HTTP/1.1 request ({exc}); send a valid HTTP/1.1 request")
            return
        reading = self._reading
        if reading is _Reading.HEAD:  # a head left incomplete by this read
            if self._deadline_for is not reading:
                self._expect_by(self.settings.header_timeout, reading)
            if not self._head_began:  # else counted from the next read
                self._head_bytes += len(data)
                if self._head_bytes > self.settings.max_header_bytes:
                    self._refuse(
                        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                        f"Request line and headers larger than {self.settings.max_header_bytes} bytes "
                        "(aggregator.maxHeaderBytes); send smaller headers",
                    )
        elif reading is _Reading.BODY and self._deadline_for is not reading:  # a body left incomplete
            self._expect_by(self.settings.body_timeout, reading)

    def eof_received(self) -> bool | None:
        return None  # close: a half-closed client sends no more requests

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # httptools callbacks

    def on_message_begin(self) -> None:
        # A later request's head may begin after another request's bytes in the same read, which are not its own.
        self._head_began = self._reading is not _Reading.HEAD
        self._reading = _Reading.HEAD
        self._head_bytes = 0
        self._expect = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self._expect = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        url = httptools.parse_url(self._url)
        raw_path = url.path
        path = raw_path.decode("latin-1")
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": "http",
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": unquote(path) if "%" in path else path,
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": self._headers,
            "state": self.app_state.copy(),
        }
        self._url, self._headers = b"", []  # the scope has them now: a long stream's are its alone to free
        keep_alive = version != "1.0" and parser.should_keep_alive()
        exchange = Exchange(self, scope, keep_alive=keep_alive, expect_continue=self._expect)
        self.incoming = exchange
        self._reading = _Reading.BODY
        if self.current is None:
            self._start(exchange)
        else:  # pipelined: answered after the ones before it
            self.queued.append(exchange)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self.incoming
        if exchange is not None and not exchange.response_complete and exchange.add_body(body) > _BUFFERED_BODY_LIMIT:
            self.pause_reading()

    def on_message_complete(self) -> None:
        self._reading = _Reading.DONE
        exchange, self.incoming = self.incoming, None
        if exchange is not None:
            exchange.end_body()
            if exchange.response_complete:  # answered before its body was in (413, say)
                self._after_response()

    # what an Exchange calls

    def responded(self, exchange: Exchange) -> None:
        """A response was written whole: close, or go on with the next request."""
        self.server_state.total_requests += 1
        if not exchange.keep_alive:
            self.transport.close()
        elif exchange is not self.incoming:  # its request is read whole too
            self._after_response()
        else:  # the rest of its body is read and dropped, then the next request
            self.resume_reading()

    def finished(self, exchange: Exchange) -> None:
        """The app's task for `exchange` ended."""
        if exchange is self.current and not exchange.response_complete:
            self.abort(exchange)

    def abort(self, exchange: Exchange) -> None:
        """A response that cannot be completed: the connection closes (nothing else can follow it)."""
        exchange.lose()
        if not self.transport.is_closing():
            self.transport.close()

    def streaming(self) -> None:
        """A long response began (a stream): no deadline until it ends, so no timer held meanwhile."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.queued:
            self.read_paused = False
            self.transport.resume_reading()

    async def drain(self) -> None:
        if self.write_paused:
            if self._writable is None:
                self._writable = self.loop.create_future()
            await asyncio.shield(self._writable)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close if idle, else after the current response."""
        if self.current is None:
            self.transport.close()
        else:
            self.current.keep_alive = False
            for exchange in self.queued:
                exchange.lose()
            self.queued.clear()

    # internals

    def run(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task serving this connection, which a graceful shutdown waits for."""
        task = self.loop.create_task(work)
        self.server_state.tasks.add(task)
        task.add_done_callback(self.server_state.tasks.discard)
        return task

    def _start(self, exchange: Exchange) -> None:
        self.current = exchange
        self.run(exchange.run(self.app))

    def _after_response(self) -> None:
        self.current = None
        if self.transport.is_closing():
            return
        if self.queued:
            self._start(self.queued.pop(0))
        elif self._reading is _Reading.DONE:
            self._reading = _Reading.IDLE
            self._expect_by(self.settings.keep_alive_timeout, _Reading.IDLE)
            self.resume_reading()

    def _expect_by(self, seconds: float, reading: _Reading) -> None:
        """Set the deadline for what is being read. The one timer moves only to come earlier; a
        later deadline is found when it fires (a keep-alive connection's timer fires about once
        per keepAliveTimeout, however many requests it carries)."""
        self._deadline = deadline = self.loop.time() + seconds
        self._deadline_for = reading
        if self._timer is not None:
            if self._timer.when() <= deadline:
                return
            self._timer.cancel()
        self._timer = self.loop.call_at(deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if self._reading is _Reading.DONE or self.transport.is_closing():
            return  # a request is being answered: the deadline returns with the next state
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)
            return
        if self._reading is _Reading.IDLE:
            self.transport.close()
        elif self._reading is _Reading.HEAD:
            self._refuse(
                HTTPStatus.REQUEST_TIMEOUT,
                f"Request line and headers did not arrive within {self.settings.header_timeout:g}s "
                "(aggregator.headerTimeout); send requests whole and promptly",
            )
        else:
            self._refuse(
                HTTPStatus.REQUEST_TIMEOUT,
                f"Request body did not arrive within {self.settings.body_timeout:g}s "
                "(aggregator.bodyTimeout); send requests whole and promptly",
            )

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer `status` with a JSON-RPC error and close, unless a response is under way (then just close)."""
        self._reading = _Reading.DONE
        incoming = self.incoming
        if incoming is not None:  # the app may be waiting for this body: it sees a disconnect, and writes nothing after
            incoming.lose()
        busy = self.current is not None and self.current is not incoming and not self.current.response_complete
        if not busy and not (incoming is not None and incoming.response_started):
            body = error_response(None, InvalidRequest(message))
            head = b"%bcontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (
                status_line(status.value),
                len(body),
            )
            self.transport.write(head + body)
        self.transport.close()


def _address(value: Any) -> tuple[str, int] | None:
    return (str(value[0]), int(value[1])) if isinstance(value, tuple) and len(value) >= 2 else None


def connection_class(settings: AggregatorSettings) -> type[HttpConnection]:
    """The class to pass as uvicorn's `http=`, enforcing these settings' bounds."""

    class Configured(HttpConnection):
        __slots__ = ()

    Configured.settings = settings
    return Configured
