"""Heartbeats: each replica and worker writes a Heartbeat every BEAT_INTERVAL, alive for three of them.

The admin console lists the processes alive from them (any replica reads every process's), and
charts the cluster's tool calls from the counters replicas include. A process that stops in
order removes its record at once; one that dies lapses within BEAT_TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from importlib import metadata

from shared.records import Heartbeat
from shared.store.protocols import HeartbeatStore, StoreUnavailable

__all__ = ["BEAT_INTERVAL", "BEAT_TTL", "VERSION", "keep_beating"]

log = logging.getLogger("shared.heartbeat")

BEAT_INTERVAL = 2.0
BEAT_TTL = 3 * BEAT_INTERVAL

try:
    VERSION = metadata.version("mcp-aggregator")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "unknown"


async def keep_beating(
    store: HeartbeatStore, make: Callable[[], Heartbeat], *, interval: float = BEAT_INTERVAL
) -> None:
    """Write `make()` every `interval` until cancelled, then remove it. A store that is away is retried quietly."""
    beat_id = make().id
    failing = False
    try:
        while True:
            try:
                await store.beat(make(), ttl=3 * interval)
                if failing:
                    log.info("heartbeats are written again")
                failing = False
            except (StoreUnavailable, TimeoutError) as exc:
                if not failing:
                    log.warning("could not write this process's heartbeat (%s); retrying every %.0fs", exc, interval)
                failing = True
            await asyncio.sleep(interval)
    finally:
        with contextlib.suppress(StoreUnavailable, TimeoutError):
            await asyncio.wait_for(store.remove(beat_id), 1.0)
