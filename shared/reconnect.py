"""Reconnect now: an operator's request that every process reopen its connection to one backend.

It travels on the MessageBus channel `reconnect` (fire and forget, every process that listens
gets it): the worker that leads, or an embedded gateway's supervisor, reconnects, rediscovers and
re-announces the backend at once instead of waiting out its backoff; each cluster replica reopens
its own connection. Calls in flight on a connection being replaced fail, as on any lost connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from shared.retry import backoff_delay
from shared.store.protocols import MessageBus

__all__ = ["CHANNEL", "follow_reconnects", "request_reconnect"]

log = logging.getLogger("shared.reconnect")

CHANNEL = "reconnect"


async def request_reconnect(bus: MessageBus, server: str) -> None:
    await bus.publish(CHANNEL, server.encode())


async def follow_reconnects(bus: MessageBus, handle: Callable[[str], None]) -> None:
    """Call `handle(server)` for every request until cancelled; resubscribe after store failures."""
    failures = 0
    while True:
        try:
            async with bus.subscribe(CHANNEL) as requests:
                failures = 0
                async for _, payload in requests:
                    server = payload.decode(errors="replace")
                    log.info("reconnecting backend %s on request", server, extra={"server": server})
                    handle(server)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            delay = backoff_delay(failures, cap=10.0)
            log.warning("cannot hear reconnect requests (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
