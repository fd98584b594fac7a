"""Server-Sent Events parsing for backend streams (the WHATWG event-stream format)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NamedTuple

__all__ = ["SseEvent", "iter_events"]


class SseEvent(NamedTuple):
    event: str
    data: bytes
    id: str | None


async def iter_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[SseEvent]:
    """Yield complete events from a byte stream; comments and retry fields are skipped."""
    event, data, event_id = "message", bytearray(), None
    has_data = False
    async for raw_line in _lines(chunks):
        line = raw_line.rstrip(b"\r")
        if not line:
            if has_data:
                yield SseEvent(event, bytes(data), event_id)
            event, data, has_data = "message", bytearray(), False
            continue
        if line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            if has_data:
                data += b"\n"
            data += value
            has_data = True
        elif field == b"event":
            event = value.decode("utf-8", "replace")
        elif field == b"id":
            event_id = value.decode("utf-8", "replace")
    if has_data:
        yield SseEvent(event, bytes(data), event_id)


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line
    if buffer:
        yield buffer
