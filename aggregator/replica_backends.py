"""ReplicaConnections: a cluster replica's own connections to every backend, open from its start.

In a cluster the worker supervises backends and announces what they offer, but each replica
calls them over connections of its own, and runs its own copy of every stdio backend. Opening
them when the replica starts means no first call waits for a process start or a handshake,
and the replica's readiness can say whether its own copies work (the worker's may, while a
replica's do not). A lost connection is reopened with backoff. On the embedded store the
in-process supervisor keeps the same pool's connections open, and this is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from shared.pool import SessionConnectionPool
from shared.protocol.errors import GatewayError
from shared.retry import backoff_delay

__all__ = ["ReplicaConnections"]

log = logging.getLogger("aggregator.replica")

_BACKOFF_BASE = 2.0  # at least the pool's memory of a failed connect, so each retry really tries


class ReplicaConnections:
    def __init__(self, pool: SessionConnectionPool, servers: Iterable[str]) -> None:
        self.pool = pool
        self.servers = tuple(servers)
        self._wake = {name: asyncio.Event() for name in self.servers}
        """Set when a connection was lost, or an operator asked for a fresh one."""
        self._fresh: set[str] = set()
        self._tried: set[str] = set()
        self.warm = asyncio.Event()
        """Set once every backend had its first connection attempt (whatever its outcome)."""
        if not self.servers:
            self.warm.set()

    async def run(self) -> None:
        """Keep every connection open until cancelled."""
        async with asyncio.TaskGroup() as group:
            for name in self.servers:
                group.create_task(self._keep(name), name=f"replica-connection-{name}")

    def connection_lost(self, server: str) -> None:
        event = self._wake.get(server)
        if event is not None:
            event.set()

    def reconnect(self, server: str) -> None:
        """Open a fresh connection now (shared/reconnect.py): replace a live one, or end a backoff wait."""
        if server in self._wake:
            self._fresh.add(server)
            self._wake[server].set()

    async def _keep(self, server: str) -> None:
        failures = 0
        while True:
            self._wake[server].clear()
            fresh = server in self._fresh
            self._fresh.discard(server)
            try:
                await (self.pool.connect(server) if fresh else self.pool.get(server))
            except GatewayError as exc:
                failures += 1
                delay = backoff_delay(failures, base=_BACKOFF_BASE)
                log.warning(
                    "this replica cannot reach backend %s (%s); retrying in %.1fs",
                    server,
                    exc.message,
                    delay,
                    extra={"server": server},
                )
                self._attempted(server)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake[server].wait(), delay)
                continue
            failures = 0
            self._attempted(server)
            await self._wake[server].wait()

    def _attempted(self, server: str) -> None:
        self._tried.add(server)
        if len(self._tried) == len(self.servers):
            self.warm.set()
