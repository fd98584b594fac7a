"""Long-lived server-sent event streams: a listener's queue pumped to one HTTP response.

Used by the 2025-11-25 GET stream, 2026-07-28 `subscriptions/listen` and the legacy `/sse`
stream. The pump ends when the client leaves, when the listener is closed (replaced, or fell
too far behind) or when the gateway stops (it closes every listener); a comment line every
`KEEPALIVE` seconds (the hub's tick) keeps proxies from timing the stream out. Under the
gateway's own server an idle stream holds its request's task and one future, and learns of its
client leaving from the connection (no second task waiting in `receive`): thousands stay cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
from enum import Enum

from aggregator.http_exchange import exchange_of
from aggregator.notifications import Listener
from aggregator.transport.http_common import Receive, Send, sse_event, start_sse, wait_disconnect

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
    headers: list[tuple[bytes, bytes]] | None = None,
    preamble: bytes = b"",
    farewell: bytes = b"",
) -> StreamEnd:
    """Stream `listener`'s messages until one side ends it, then end the response.

    `preamble` is written first (raw SSE bytes); `farewell` is a last message sent when the
    gateway is stopping (a listen stream's final result).
    """
    exchange = exchange_of(receive)
    gone: asyncio.Future[None] | None = None
    if exchange is not None:
        exchange.on_disconnect = listener.wake
    else:  # another server, or an in-process client: a task waits for the disconnect
        gone = asyncio.ensure_future(wait_disconnect(receive))
        gone.add_done_callback(lambda _: listener.wake())
    end = StreamEnd.CLOSED
    try:
        await start_sse(send, headers)
        if preamble:
            await send({"type": "http.response.body", "body": preamble, "more_body": True})
        while True:
            message = await listener.next()
            if message:
                await send({"type": "http.response.body", "body": sse_event(message), "more_body": True})
            elif exchange.disconnected if exchange is not None else gone is not None and gone.done():
                end = StreamEnd.CLIENT_LEFT
                break
            elif listener.closed:  # replaced, too far behind, or closed with every stream on stopping
                end = StreamEnd.GATEWAY_STOPPING if closing.is_set() else StreamEnd.CLOSED
                break
            elif message is not None:  # the hub's keepalive tick
                await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
        return end
    finally:
        if exchange is not None:
            exchange.on_disconnect = None
        if gone is not None:
            gone.cancel()
        last = sse_event(farewell) if farewell and end is StreamEnd.GATEWAY_STOPPING else b""
        with contextlib.suppress(Exception):  # the client may be gone already
            await send({"type": "http.response.body", "body": last, "more_body": False})
