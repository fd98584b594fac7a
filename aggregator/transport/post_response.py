"""The response to one POST on `/mcp`: JSON by default, upgraded to SSE when messages must stream.

The choice is made lazily: a plain call costs one JSON write; the first progress notification
or server-to-client request of a call switches its response to an event stream. A
2026-07-28 client that hangs up cancels its call (`ClientWatch`, in streamable_http.py).
"""

from __future__ import annotations

import asyncio

from msgspec import Raw

from aggregator.client_requests import ClientRequests
from aggregator.replica_link import SessionStreams
from aggregator.transport.http_common import Send, send_bytes, sse_event, start_sse
from shared.protocol.errors import MissingClientCapability
from shared.protocol.jsonrpc import Notification, encode

__all__ = ["SESSION_HEADER", "PostChannel"]

SESSION_HEADER = b"mcp-session-id"


class PostChannel:
    """A ClientChannel for one POST's response."""

    def __init__(
        self,
        send: Send,
        *,
        sse: bool,
        session_id: str | None,
        requests: ClientRequests,
        streams: SessionStreams,
    ) -> None:
        self.send = send
        self.sse = sse
        self.session_id = session_id
        self.requests = requests
        self.streams = streams
        self._queue: asyncio.Queue[bytes | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._done = False

    async def notify(self, method: str, params: Raw) -> None:
        data = encode(Notification(method=method, params=params))
        if not self.sse and self.session_id is not None:
            await self.streams.notify(self.session_id, data)  # JSON-only POST: the session's GET stream
            return
        self._enqueue(data)

    async def request(self, method: str, params: Raw) -> Raw:
        if not self.sse or self.session_id is None:
            raise MissingClientCapability(
                f"the client accepts no event stream on this request, so {method} cannot reach it"
            )
        return await self.requests.ask(self.session_id, method, params, self._enqueue)

    def _enqueue(self, data: bytes) -> None:
        if self._done or not self.sse:
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._writer = asyncio.ensure_future(self._write())
        self._queue.put_nowait(data)

    async def _write(self) -> None:
        assert self._queue is not None
        extra = [(SESSION_HEADER, self.session_id.encode())] if self.session_id else None
        await start_sse(self.send, extra)
        while (data := await self._queue.get()) is not None:
            await self.send({"type": "http.response.body", "body": sse_event(data), "more_body": True})
        await self.send({"type": "http.response.body", "body": b""})

    async def finish(self, body: bytes, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """Send the final response: as the JSON body, or as the stream's last event."""
        self._done = True
        if self._writer is None:
            await send_bytes(self.send, status, body, headers=headers)
            return
        assert self._queue is not None
        self._queue.put_nowait(body)
        self._queue.put_nowait(None)
        await self._writer

    def abandon(self) -> None:
        """Nothing more will be sent (the call was cancelled)."""
        self._done = True
        if self._writer is not None:
            self._writer.cancel()
