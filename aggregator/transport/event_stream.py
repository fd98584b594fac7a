"""Long-lived server-sent event streams: a listener's queue pumped to one HTTP response.

Used by the 2025-11-25 GET stream, 2026-07-28 `subscriptions/listen` and the legacy `/sse`
stream. The pump ends when the client leaves, when the listener is closed (replaced, or fell
too far behind) or when the gateway stops (it closes every listener); a comment line every
`KEEPALIVE` seconds (the hub's tick) keeps proxies from timing the stream out. Under the
gateway's own server an open stream is one task with one frame and one future, apart from its
connection: the request's handlers have returned, and the connection tells it when its client
leaves (no second task waiting in `receive`). Thousands stay cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from enum import Enum

from aggregator.http_exchange import exchange_of
from aggregator.notifications import Listener
from aggregator.transport.client_watch import ClientWatch
from aggregator.transport.http_common import Receive, Send, sse_event, start_sse

__all__ = ["StreamEnd", "pump"]


class StreamEnd(Enum):
    CLIENT_LEFT = "client left"
    CLOSED = "listener closed"
    GATEWAY_STOPPING = "gateway stopping"


async def pump(
    receive: Receive,
    send: Send,
    listener: Listener,
    closing: asyncio.Event,
    *,
    ended: Callable[[StreamEnd], object],
    headers: list[tuple[bytes, bytes]] | None = None,
    preamble: bytes = b"",
    farewell: bytes = b"",
) -> None:
    """Stream `listener`'s messages until one side ends it, end the response, then call `ended`
    (and await what it returns, if awaitable).

    `preamble` is written first (raw SSE bytes); `farewell` is a last message sent when the
    gateway is stopping (a listen stream's final result). Under the gateway's own server the
    stream is handed to a task of its own and this returns at once, so the request's handlers
    and what they hold are freed while it stays open; elsewhere (an in-process client) it
    streams before returning.
    """
    watch = ClientWatch(receive, listener.wake)
    stream = _stream(send, listener, closing, watch, headers, preamble, farewell, ended)
    if (exchange := exchange_of(receive)) is not None:
        exchange.hand_over(stream)
    else:
        await stream


async def _stream(
    send: Send,
    listener: Listener,
    closing: asyncio.Event,
    watch: ClientWatch,
    headers: list[tuple[bytes, bytes]] | None,
    preamble: bytes,
    farewell: bytes,
    ended: Callable[[StreamEnd], object],
) -> None:
    end = StreamEnd.CLOSED
    try:
        await start_sse(send, headers)
        if preamble:
            await send({"type": "http.response.body", "body": preamble, "more_body": True})
        while True:
            message = await listener.next()
            if message:
                await send({"type": "http.response.body", "body": sse_event(message), "more_body": True})
            elif watch.gone:
                end = StreamEnd.CLIENT_LEFT
                break
            elif listener.closed:  # replaced, too far behind, or closed with every stream on stopping
                end = StreamEnd.GATEWAY_STOPPING if closing.is_set() else StreamEnd.CLOSED
                break
            elif message is not None:  # the hub's keepalive tick
                await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
    finally:
        watch.stop()
        last = sse_event(farewell) if farewell and end is StreamEnd.GATEWAY_STOPPING else b""
        with contextlib.suppress(Exception):  # the client may be gone already
            await send({"type": "http.response.body", "body": last, "more_body": False})
        if inspect.isawaitable(outcome := ended(end)):
            await outcome
