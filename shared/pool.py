"""SessionConnectionPool: the live backend connections of this process.

One long-lived connection per (scope, server), shared by every caller in that scope:
concurrent calls multiplex on it. The shared scope serves every non-OAuth backend. The
pool only holds connections; what a backend offers lives in the CapabilityStore.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from shared.backends.base import BackendConnection, Credentials, NotificationHandler
from shared.backends.factory import connect
from shared.config import ServerSpec
from shared.protocol.errors import BackendUnavailable, GatewayError
from shared.store.protocols import GLOBAL_SCOPE

__all__ = ["ConnectionHealth", "SessionConnectionPool"]

log = logging.getLogger("shared.pool")

_MAX_USER_CONNECTIONS = 2000
_USER_IDLE_TIMEOUT = 3600.0  # an idle per-user connection is closed after an hour
CredentialsFor = Callable[[str, str], Credentials | None]
"""(scope, server) -> the token source of that per-user connection."""
_FAILURE_MEMORY = 2.0  # seconds a failed lazy connect is remembered, so a flood of calls does not respawn


@dataclass(frozen=True, slots=True)
class ConnectionHealth:
    """How this process's connection to one backend is doing."""

    state: Literal["up", "down"]
    since: float
    """Wall-clock time the state began."""
    error: str | None = None
    attempts: int = 0
    """Failed connection attempts in a row (0 while up, or when a live connection was just lost)."""


class SessionConnectionPool:
    def __init__(
        self,
        specs: Mapping[str, ServerSpec],
        *,
        on_notification: NotificationHandler | None = None,
        on_lost: Callable[[str, str], None] | None = None,
    ) -> None:
        self.specs = dict(specs)
        self.on_notification = on_notification
        self.on_lost = on_lost
        self._connections: dict[tuple[str, str], BackendConnection] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._failures: dict[tuple[str, str], tuple[float, GatewayError]] = {}
        self._health: dict[tuple[str, str], ConnectionHealth] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._used: OrderedDict[tuple[str, str], float] = OrderedDict()  # per-user connections, least recent first
        self.credentials: CredentialsFor | None = None
        """Token sources of per-user connections (set by whoever knows the users' tokens)."""
        self.max_user_connections = _MAX_USER_CONNECTIONS
        self.user_idle_timeout = _USER_IDLE_TIMEOUT

    async def get(self, server: str, scope: str = GLOBAL_SCOPE) -> BackendConnection:
        """The live connection, opened on first use (replicas connect lazily)."""
        conn = self._connections.get((scope, server))
        if conn is not None and conn.alive:
            if scope != GLOBAL_SCOPE:
                self._touch((scope, server))
            return conn
        key = (scope, server)
        failure = self._failures.get(key)
        if failure is not None and time.monotonic() - failure[0] < _FAILURE_MEMORY:
            raise failure[1]
        async with self._locks.setdefault(key, asyncio.Lock()):
            conn = self._connections.get(key)
            if conn is not None and conn.alive:
                return conn
            return await self._open(key)

    async def connect(self, server: str, scope: str = GLOBAL_SCOPE) -> BackendConnection:
        """A fresh connection, replacing (and closing) any existing one."""
        key = (scope, server)
        async with self._locks.setdefault(key, asyncio.Lock()):
            await self._discard(key)
            return await self._open(key)

    async def evict(self, server: str, scope: str = GLOBAL_SCOPE) -> None:
        await self._discard((scope, server))

    async def drain_all(self) -> None:
        """Close every connection (graceful shutdown)."""
        keys = list(self._connections)
        await asyncio.gather(*(self._discard(k) for k in keys), return_exceptions=True)

    def health(self, server: str, scope: str = GLOBAL_SCOPE) -> ConnectionHealth | None:
        """The connection's state, or None when this process never tried to connect."""
        return self._health.get((scope, server))

    def snapshot(self) -> dict[str, BackendConnection]:
        """Live shared connections by server name (for /readyz and metrics)."""
        return {k[1]: c for k, c in self._connections.items() if k[0] == GLOBAL_SCOPE and c.alive}

    async def _open(self, key: tuple[str, str]) -> BackendConnection:
        server = key[1]
        spec = self.specs.get(server)
        if spec is None:
            raise BackendUnavailable(server, f"no backend named {server!r} is configured")
        scope = key[0]
        credentials = (
            self.credentials(scope, server) if self.credentials is not None and scope != GLOBAL_SCOPE else None
        )
        try:
            conn = await connect(
                spec, on_notification=self.on_notification, on_lost=self._lost, credentials=credentials
            )
        except GatewayError as exc:
            self._failed(key, exc)
            raise
        except OSError as exc:
            error = BackendUnavailable(server, f"cannot connect to backend {server!r}: {exc}")
            self._failed(key, error)
            raise error from exc
        self._failures.pop(key, None)
        self._health[key] = ConnectionHealth("up", time.time())
        self._connections[key] = conn
        if scope != GLOBAL_SCOPE:
            self._touch(key)
            while len(self._used) > self.max_user_connections:  # the least recently used user's goes
                self._spawn_close(self._used.popitem(last=False)[0])
        log.info(
            "connected to backend %s over %s (protocol %s)",
            server,
            spec.type,
            conn.protocol_version,
            extra={"server": server, "protocol": conn.protocol_version},
        )
        return conn

    def _failed(self, key: tuple[str, str], error: GatewayError) -> None:
        self._failures[key] = (time.monotonic(), error)
        previous = self._health.get(key)
        if previous is not None and previous.state == "down":
            self._health[key] = ConnectionHealth("down", previous.since, error.message, previous.attempts + 1)
        else:
            self._health[key] = ConnectionHealth("down", time.time(), error.message, 1)

    async def reap(self) -> None:
        """Close per-user connections nobody used for `user_idle_timeout` seconds (runs until cancelled)."""
        while True:
            await asyncio.sleep(min(60.0, self.user_idle_timeout / 2))
            horizon = time.monotonic() - self.user_idle_timeout
            while self._used and next(iter(self._used.values())) < horizon:
                self._spawn_close(self._used.popitem(last=False)[0])

    def _touch(self, key: tuple[str, str]) -> None:
        self._used[key] = time.monotonic()
        self._used.move_to_end(key)

    def _spawn_close(self, key: tuple[str, str]) -> None:
        task = asyncio.get_running_loop().create_task(self._discard(key))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _discard(self, key: tuple[str, str]) -> None:
        self._used.pop(key, None)
        conn = self._connections.pop(key, None)
        if conn is not None:
            await conn.aclose()

    def _lost(self, conn: BackendConnection, reason: str) -> None:
        key = next((k for k, c in self._connections.items() if c is conn), None)
        if key is None:
            return
        del self._connections[key]
        self._health[key] = ConnectionHealth("down", time.time(), f"connection lost: {reason}")
        log.warning("lost backend %s: %s", conn.server, reason, extra={"server": conn.server})
        task = asyncio.get_running_loop().create_task(conn.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        if self.on_lost is not None:
            self.on_lost(conn.server, reason)
