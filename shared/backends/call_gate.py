"""CallGate: at most `maxInFlight` calls to one backend at once, and at most `maxQueued` waiting.

A call that finds every slot taken waits its turn in arrival order; one that finds the queue
full too fails at once with BackendBusy naming the backend and the keys that set the bounds,
so a flood of calls costs the backend nothing and the caller learns to retry. A waiting call
whose deadline passes fails with BackendBusy as well: it never reached the backend.
"""

from __future__ import annotations

import asyncio

from shared.protocol.errors import BackendBusy

__all__ = ["CallGate"]


class CallGate:
    def __init__(self, server: str, *, max_in_flight: int, max_queued: int) -> None:
        self.server = server
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.in_flight = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(max_in_flight)

    async def enter(self, deadline: float) -> None:
        """Take a slot, waiting until `deadline` (event loop time) if need be; BackendBusy if none is had."""
        if self._slots.locked():
            if self.waiting >= self.max_queued:
                raise BackendBusy(
                    self.server,
                    f"backend {self.server!r} is busy: {self.in_flight} calls in flight and {self.waiting} waiting "
                    "(mcpServers[].maxInFlight / maxQueued); retry shortly",
                )
            self.waiting += 1
            try:
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            except TimeoutError:
                raise BackendBusy(
                    self.server,
                    f"backend {self.server!r} is busy: no call slot came free within the call's timeout "
                    f"({self.in_flight} calls in flight, mcpServers[].maxInFlight); retry shortly",
                ) from None
            finally:
                self.waiting -= 1
        else:
            await self._slots.acquire()
        self.in_flight += 1

    def leave(self) -> None:
        """Give the slot back; the longest-waiting call takes it."""
        self.in_flight -= 1
        self._slots.release()
