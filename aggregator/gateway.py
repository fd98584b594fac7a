"""Gateway: one replica's parts wired together, with a bounded start and stop.

The aggregator manager of the seed. It owns the registry, the connection pool, the session
manager, the notification hub and the background tasks (registry sync, and in embedded mode
the control plane itself); transports get everything they need from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
from typing import Any

import msgspec

from aggregator.backends.base import BackendConnection
from aggregator.mrtr import InputBroker
from aggregator.notify import NotificationHub
from aggregator.pool import SessionConnectionPool
from aggregator.protocol.jsonrpc import Params, RequestId
from aggregator.protocol.sessions import SessionManager
from aggregator.registry import ServerRegistry
from aggregator.router import Router
from aggregator.server import AggregatorServer
from aggregator.sync import RegistrySync
from shared.config import Config
from shared.store.protocols import Stores
from shared.telemetry import Telemetry
from worker.supervisor import BackendSupervisor

__all__ = ["Gateway"]

log = logging.getLogger("aggregator.gateway")

_READY_WAIT = 15.0


class Gateway:
    def __init__(
        self,
        config: Config,
        stores: Stores,
        *,
        control_plane: bool = True,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.config = config
        self.settings = config.aggregator
        self.stores = stores
        self.replica_id = f"{socket.gethostname()}-{os.getpid()}"
        self.telemetry = telemetry or Telemetry()
        self.registry = ServerRegistry(config.aggregator, config.mcp_servers)
        self.hub = NotificationHub()
        self.registry.on_change(self.hub.lists_changed)
        specs = {spec.name: spec for spec in config.mcp_servers}
        self.pool = SessionConnectionPool(specs, on_notification=self._backend_notification, on_lost=self._backend_lost)
        self.sessions = SessionManager(stores.sessions, idle_timeout=self.settings.session_idle_timeout)
        self.broker = InputBroker()
        self.server = AggregatorServer(
            config, self.registry, self.pool, self.sessions, self.hub, self.telemetry, self.broker
        )
        self.router = Router(self.server)
        self.sync = RegistrySync(self.registry, stores)
        self.supervisor = (
            BackendSupervisor(
                config.mcp_servers,
                self.pool,
                stores,
                health_interval=self.settings.health_check_interval,
                origin=self.replica_id,
            )
            if control_plane
            else None
        )
        self.client_requests: dict[tuple[str, RequestId], asyncio.Future[Any]] = {}
        self.inflight: dict[tuple[str, RequestId], asyncio.Task[Any]] = {}
        self.request_ids = itertools.count(1)
        self.closing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.telemetry.watch_backends(self._backend_states)

    async def start(self) -> None:
        """Start syncing (and, embedded, supervising); wait until the first backends answered."""
        self._tasks.append(asyncio.create_task(self.sync.run(), name="registry-sync"))
        if self.supervisor is not None:
            self._tasks.append(asyncio.create_task(self.supervisor.run(), name="supervisor"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.sync.ready.wait(), _READY_WAIT)
        if self.supervisor is not None:
            await self._settle()

    async def _settle(self) -> None:
        """Give configured backends a moment to come up so the first tools/list is complete."""
        deadline = asyncio.get_running_loop().time() + _READY_WAIT
        while asyncio.get_running_loop().time() < deadline:
            states = {r.server: r.state for r in await self.stores.capabilities.list()}
            if all(spec.name in states for spec in self.config.mcp_servers):
                return
            await asyncio.sleep(0.05)
        log.warning("some backends did not answer within %.0fs; they will join when they do", _READY_WAIT)

    async def stop(self) -> None:
        """Stop background work, end open streams, close backend connections and child processes."""
        self.closing.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        for task in list(self.inflight.values()):
            task.cancel()
        await self.broker.aclose()
        await self.pool.drain_all()
        self.telemetry.shutdown()

    def _backend_notification(self, conn: BackendConnection, method: str, params: Params) -> None:
        if method.endswith("/list_changed"):
            if self.supervisor is not None:
                self.supervisor.list_changed(conn.server, method)
        elif method == "notifications/resources/updated" and "uri" in params:
            original = msgspec.json.decode(params["uri"])
            for exposed, route in self.registry.catalog.resource_routes.items():
                if route.server == conn.server and route.original == original:
                    self.hub.resource_updated(exposed)
                    return
            for template in self.registry.catalog.template_routes:
                if template.server == conn.server and template.pattern.fullmatch(template.strip + original):
                    self.hub.resource_updated(template.strip + original)
                    return

    def _backend_lost(self, server: str, reason: str) -> None:
        if self.supervisor is not None:
            self.supervisor.connection_lost(server, reason)

    def _backend_states(self) -> list[tuple[str, bool]]:
        live = self.pool.snapshot()
        catalog = self.registry.catalog.servers
        return [
            (name, name in live or (catalog.get(name) is not None and catalog[name].state == "up"))
            for name in sorted(spec.name for spec in self.config.mcp_servers)
        ]

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether this replica can serve, and why not: store reachable, each backend's state."""
        store_ok, store_error = True, None
        try:
            await asyncio.wait_for(self.stores.ping(), 2.0)
        except Exception as exc:
            store_ok, store_error = False, str(exc) or type(exc).__name__
        backends = {}
        for spec in self.config.mcp_servers:
            record = self.registry.catalog.servers.get(spec.name)
            entry: dict[str, Any] = {"state": record.state if record else "starting", "type": spec.type}
            if record is not None:
                if record.error:
                    entry["error"] = record.error
                if record.protocol_version:
                    entry["protocol"] = record.protocol_version
                entry["tools"] = len(record.tools)
            backends[spec.name] = entry
        status = "ok" if store_ok and self.sync.last_error is None else "degraded"
        body = {
            "status": status,
            "replica": self.replica_id,
            "store": {"kind": self.stores.kind, "ok": store_ok, **({"error": store_error} if store_error else {})},
            "registry": {"version": self.sync.version, "tools": len(self.registry.catalog.tools)},
            "backends": backends,
        }
        return store_ok, body
