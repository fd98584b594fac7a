"""One write per response: a response head waits for its body, so both leave in one syscall.

uvicorn writes a response's head and its body in two `transport.write` calls; the gateway sends
both in the same turn of the event loop, so each small JSON answer cost two writes to the socket
(about a tenth of a forwarded call's CPU). `HeadWithBody` is the transport a request's cycle
writes through: it holds the first write (the head) and sends it with the next one, or on its
own at the end of the loop turn (a stream whose first event comes later, a head-only answer),
or before a close. Ordering is unchanged: nothing else writes to the connection while its
cycle answers.
"""

from __future__ import annotations

import asyncio

__all__ = ["HeadWithBody"]


class HeadWithBody:
    """What uvicorn's RequestResponseCycle uses of a transport: write, close, is_closing."""

    __slots__ = ("_flush", "_held", "_loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._held: bytes | None = None
        self._flush: asyncio.Handle | None = None
        self._loop = loop

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif self._flush is None:  # the cycle's first write: its head
            self._held = data
            self._flush = self._loop.call_soon(self.flush)
            return
        self.transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()
