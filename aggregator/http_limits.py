"""Deadlines and a size limit on reading a request, below the ASGI app, in uvicorn's protocol.

uvicorn's httptools protocol reads a request's head with no deadline and no size limit, and
times a connection out only between requests: a client that connects and trickles header
bytes (slowloris), sends a 32 MB header, or sends its body a byte a minute keeps a connection
and its buffers for as long as it likes. `BoundedHttpToolsProtocol` adds, per connection:

- `headerTimeout`: the request line and headers arrive within it, counted from connecting for
  the first request and from its first byte for later ones; else 408 and close;
- `maxHeaderBytes`: a head still incomplete past that many bytes gets 431 and close (the
  parser holds at most that plus one read);
- `bodyTimeout`: the body arrives within it once the head did; else 408 and close.

Idle keep-alive connections are closed by uvicorn itself (`timeout_keep_alive`, set from
`keepAliveTimeout`); its timer is restarted here when a body ends after its response did.

One timer per connection covers both deadlines (a head and a body are never read at once),
armed only when a read leaves one incomplete: a request that arrives in one read costs no
timer and no task.

uvicorn internals relied on (hence the version range in pyproject.toml): the parser callbacks
`on_message_begin`, `on_headers_complete` and `on_message_complete`, and `data_received`,
which this class wraps; `self.cycle` (`response_started`, `response_complete`,
`disconnected`, `message_event`, and `transport`, which becomes a HeadWithBody so each
response leaves in one write) and `self.pipeline`, to tell whether a response is under
way (then the connection is only closed, so no answer interleaves with it) and, when the body
deadline passes, to end the request's cycle so the app sees a disconnect and writes nothing
after the 408; the keep-alive timer (`timeout_keep_alive_task`, `_unset_keepalive_if_required`,
`timeout_keep_alive_handler`).
"""

from __future__ import annotations

import asyncio
import enum
from http import HTTPStatus
from typing import Any, ClassVar, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from aggregator.response_writes import HeadWithBody
from shared.config import AggregatorSettings
from shared.protocol.errors import InvalidRequest
from shared.protocol.jsonrpc import error_response

__all__ = ["BoundedHttpToolsProtocol", "bounded_protocol"]


class _Reading(enum.Enum):
    HEAD = "head"
    BODY = "body"
    NOTHING = "nothing"


class _ReadState:
    """What the deadlines track, in one slotted object: uvicorn's protocol already has 27
    attributes, and past 30 an instance's dict stops sharing its keys (about 1.3 KB more for
    every connection, idle streams included)."""

    __slots__ = ("head_began", "head_bytes", "reading", "timer")

    def __init__(self) -> None:
        self.reading = _Reading.HEAD
        self.head_bytes = 0
        self.head_began = False  # a later request's head began inside the current read
        self.timer: asyncio.TimerHandle | None = None


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline, a header size limit and a body deadline."""

    settings: ClassVar[AggregatorSettings] = AggregatorSettings()

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._read = _ReadState()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(cast(asyncio.Transport, transport))
        self._arm()  # the first head is timed from connecting: a silent connection is a slow head

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._read.head_began = False
        super().data_received(data)
        if self._read.reading is _Reading.NOTHING or self.transport.is_closing():
            return
        if self._read.reading is _Reading.HEAD and not self._read.head_began:  # else counted from the next read
            self._read.head_bytes += len(data)
            if self._read.head_bytes > self.settings.max_header_bytes:
                self._refuse(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    f"Request line and headers larger than {self.settings.max_header_bytes} bytes "
                    "(aggregator.maxHeaderBytes); send smaller headers",
                )
                return
        if self._read.timer is None:
            self._arm()

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        # The first head is counted from the connection's first byte; a later one may begin
        # after another request's bytes in the same read, which are not its own.
        self._read.head_began = self._read.reading is _Reading.NOTHING
        self._read.reading = _Reading.HEAD
        self._read.head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._read.reading = _Reading.BODY
        super().on_headers_complete()
        if self.cycle is not None:  # the cycle just made for this request: answer in one write
            self.cycle.transport = HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._disarm()
        self._read.reading = _Reading.NOTHING
        super().on_message_complete()
        if self.cycle.response_complete and not self.pipeline and not self.transport.is_closing():
            # Answered before its body was in (413, say): the body's bytes stopped uvicorn's
            # keep-alive timer, which only a response starts. Start it, or the connection idles forever.
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    # deadlines

    def _arm(self) -> None:
        reading_head = self._read.reading is _Reading.HEAD
        delay = self.settings.header_timeout if reading_head else self.settings.body_timeout
        self._read.timer = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._read.timer is not None:
            self._read.timer.cancel()
            self._read.timer = None

    def _expired(self) -> None:
        self._read.timer = None
        if self._read.reading is _Reading.HEAD:
            what, seconds, key = "line and headers", self.settings.header_timeout, "headerTimeout"
        elif self._read.reading is _Reading.BODY:
            what, seconds, key = "body", self.settings.body_timeout, "bodyTimeout"
        else:
            return
        self._refuse(
            HTTPStatus.REQUEST_TIMEOUT,
            f"Request {what} did not arrive within {seconds:g}s (aggregator.{key}); send requests whole and promptly",
        )

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer `status` with a JSON-RPC error and close, unless a response is under way (then just close)."""
        reading, self._read.reading = self._read.reading, _Reading.NOTHING
        self._disarm()
        cycle = self.cycle
        if reading is _Reading.HEAD:  # any cycle is an earlier request's
            answer = not self.pipeline and (cycle is None or cycle.response_complete)
        else:  # the cycle is this request's: the app may be waiting for the body
            answer = not self.pipeline and not cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
        if answer:
            body = error_response(None, InvalidRequest(message))
            head = (
                f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head.encode("latin-1") + body)
        self.transport.close()


def bounded_protocol(settings: AggregatorSettings) -> type[BoundedHttpToolsProtocol]:
    """The class to pass as uvicorn's `http=`, enforcing these settings' header and body bounds."""

    class Configured(BoundedHttpToolsProtocol):
        pass

    Configured.settings = settings
    return Configured
