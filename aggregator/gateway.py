"""Gateway: one replica's parts wired together, with a bounded start and stop, and its readiness.

The aggregator manager of the seed. Transports use a few of its parts, each through its own
small interface: `router` (dispatch a request), `sessions` (handshake-era session records),
`requests` (questions to clients, cancellation), `streams` (session streams on any replica),
`hub` (list-change fan-out), `server.watch` (resource subscriptions) and `closing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

import msgspec

from aggregator.auth.sign_in import CORE_RESOURCES, CORE_TOOLS
from aggregator.auth.user_auth import UserAuth
from aggregator.catalog import CoreItems
from aggregator.client_requests import ClientRequests
from aggregator.forwarding import Forwarder
from aggregator.handlers import AggregatorServer
from aggregator.heartbeat import ReplicaBeat
from aggregator.input_required import InputBroker
from aggregator.meta_tool_specs import META_TOOL_NAMES, META_TOOLS
from aggregator.meta_tools import MetaTools
from aggregator.notifications import NotificationHub
from aggregator.protocol.sessions import SessionManager
from aggregator.registry import ServerRegistry
from aggregator.registry_sync import RegistrySync
from aggregator.replica_backends import ReplicaConnections
from aggregator.replica_link import ReplicaLink, SessionStreams
from aggregator.router import Router
from aggregator.state_seal import StateSeal
from aggregator.workflow_specs import CORE_WORKFLOW_TOOLS
from aggregator.workflows import Workflows
from shared.backends.base import BackendConnection
from shared.config import Config
from shared.events import ToolUpdateEvent
from shared.heartbeat import keep_beating
from shared.pool import SessionConnectionPool
from shared.protocol.jsonrpc import Params
from shared.reconnect import follow_reconnects
from shared.store.protocols import Stores
from shared.telemetry import Telemetry
from shared.workflow_files import has_workflows
from worker.supervisor import BackendSupervisor
from worker.workflows import WorkflowPublisher

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
        self.closing = asyncio.Event()
        self.specs = {spec.name: spec for spec in config.mcp_servers}
        self.protected = {name: spec for name, spec in self.specs.items() if spec.auth is not None}
        tools, resources = (CORE_TOOLS, CORE_RESOURCES) if self.protected else ((), ())
        flows = has_workflows(config)
        if flows:
            tools = (*tools, *CORE_WORKFLOW_TOOLS)
        core = CoreItems(tools, resources, meta_tools=META_TOOLS)  # meta-tools listed as aggregator.exposure says
        self.registry = ServerRegistry(config.aggregator, config.mcp_servers, core=core)
        self.hub = NotificationHub(max_streams=self.settings.max_streams)
        self.registry.on_change(self.hub.lists_changed)
        self.link = ReplicaLink(stores.messages)
        self.sessions = SessionManager(
            stores.sessions, idle_timeout=self.settings.session_idle_timeout, epoch=stores.events.epoch
        )
        self.streams = SessionStreams(self.link, self.hub, self.sessions)
        self.requests = ClientRequests(self.link)
        self.pool = SessionConnectionPool(
            self.specs, on_notification=self._backend_notification, on_lost=self._backend_lost
        )
        seal = StateSeal(stores.keys, name="requestState", tag=self.link.tag)
        self.broker = InputBroker(seal=seal, link=self.link)
        self.forwarder = Forwarder(self.pool, self.broker)
        self.server = AggregatorServer(
            config, self.registry, self.pool, self.sessions, self.streams, self.telemetry, self.forwarder
        )
        self.server.internal.register(META_TOOL_NAMES, MetaTools(self.server).call)  # routed unless native
        self.router = Router(self.server)
        self.sync = RegistrySync(self.registry, stores, on_epoch=self.sessions.epoch_seen)
        self.sync.on_recovered = self.sessions.store_recovered
        if flows:
            workflows = Workflows(self.server, stores.workflows, self.settings.workflow_history)
            self.sync.on_workflows = workflows.update  # the definitions the control plane published
        self.publisher = WorkflowPublisher(config, stores, origin=self.replica_id) if flows and control_plane else None
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
        # A cluster replica keeps its own connections (and stdio processes) open from the start.
        shared = [name for name in self.specs if name not in self.protected]  # protected ones: per user
        self.connections = None if control_plane else ReplicaConnections(self.pool, shared)
        self.beat = ReplicaBeat(
            self.replica_id,
            pool=self.pool,
            sessions=self.sessions,
            hub=self.hub,
            sync=self.sync,
            calls=self.telemetry.calls,
        )
        self.user_auth: UserAuth | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self.telemetry.watch_backends(self._backend_states)

    async def start(self) -> None:
        """Start syncing (and, embedded, supervising); wait until the first backends answered."""
        if self.protected:
            await self._start_auth()
        if self.publisher is not None:
            await self.publisher.refresh()  # before the first registry load, which then holds the workflows
            self._tasks.append(asyncio.create_task(self.publisher.run(), name="workflows"))
        self._tasks.append(asyncio.create_task(self.sync.run(), name="registry-sync"))
        self._tasks.append(asyncio.create_task(self.link.run(), name="replica-link"))
        self._tasks.append(asyncio.create_task(self.sessions.keep(), name="sessions"))
        self._tasks.append(asyncio.create_task(keep_beating(self.stores.heartbeats, self.beat), name="heartbeat"))
        self._tasks.append(
            asyncio.create_task(follow_reconnects(self.stores.messages, self._reconnect), name="reconnects")
        )
        if self.supervisor is not None:
            self._tasks.append(asyncio.create_task(self.supervisor.run(), name="supervisor"))
        if self.connections is not None:
            self._tasks.append(asyncio.create_task(self.connections.run(), name="replica-connections"))
        waits = [self.sync.ready.wait(), self.link.connected.wait()]
        if self.connections is not None:
            waits.append(self.connections.warm.wait())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), _READY_WAIT)
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

    def end_streams(self) -> None:
        """Shutdown has begun: every open stream sends its last event and ends."""
        self.closing.set()
        self.hub.close_all()

    async def stop(self) -> None:
        """Stop background work, end open streams, close backend connections and child processes."""
        self.end_streams()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        self.requests.cancel_all()
        await self.broker.aclose()
        await self.pool.drain_all()
        if self.user_auth is not None:
            await self.user_auth.aclose()
        self.telemetry.shutdown()

    async def _start_auth(self) -> None:
        """The parts that give users their own protected backends (see aggregator/auth/)."""
        self.user_auth = auth = await UserAuth.open(
            self.specs,
            self.settings,
            registry=self.registry,
            pool=self.pool,
            stores=self.stores,
            telemetry=self.telemetry,
        )
        auth.users.announce = self._announce_user
        self.sync.on_user_changed = self._user_changed
        self.forwarder.users = auth.users
        self.server.sign_in = sign_in = auth.sign_in
        self.server.internal.register(
            (tool["name"] for tool in CORE_TOOLS),
            lambda ctx, name, arguments, params: sign_in.call(name, ctx.principal, arguments),
        )
        self._tasks.append(asyncio.create_task(self.pool.reap(), name="user-connection-reaper"))

    async def _announce_user(self, key: str) -> None:
        await self.stores.events.publish(ToolUpdateEvent(type="user_changed", user=key, origin=self.replica_id))

    def _user_changed(self, key: str) -> None:
        subject = self.forwarder.users.forget_user(key) if self.forwarder.users is not None else None
        if subject is not None:
            self.hub.lists_changed({"tools", "prompts", "resources"}, subject=subject)

    # -- backends -------------------------------------------------------------------------------

    def _backend_notification(self, conn: BackendConnection, method: str, params: Params) -> None:
        if method.endswith("/list_changed"):
            if self.supervisor is not None:
                self.supervisor.list_changed(conn.server, method)
        elif method == "notifications/resources/updated" and "uri" in params:
            exposed = self.registry.catalog.exposed_uri(conn.server, msgspec.json.decode(params["uri"]))
            if exposed is not None:
                task = asyncio.ensure_future(self.streams.resource_updated(exposed))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def _backend_lost(self, server: str, reason: str) -> None:
        if self.supervisor is not None:
            self.supervisor.connection_lost(server, reason)
        if self.connections is not None:
            self.connections.connection_lost(server)

    def _reconnect(self, server: str) -> None:
        if self.supervisor is not None:
            self.supervisor.reconnect(server)
        if self.connections is not None:
            self.connections.reconnect(server)

    def _backend_states(self) -> list[tuple[str, bool]]:
        live = self.pool.snapshot()
        catalog = self.registry.catalog.servers
        return [
            (name, name in live or (catalog.get(name) is not None and catalog[name].state == "up"))
            for name in sorted(spec.name for spec in self.config.mcp_servers)
        ]

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether this replica can serve, and its state: store, registry, each backend.

        A replica that lost its store, or some of its backends, keeps serving what it can and
        reports `degraded` naming why (still ready: taking every replica out of rotation would
        turn a partial outage into a full one). It is not ready before its first registry
        load, nor (in a cluster) before it tried to open its own backend connections.
        """
        store_error = None
        try:
            await asyncio.wait_for(self.stores.ping(), 2.0)
        except Exception as exc:
            store_error = str(exc) or type(exc).__name__
        reasons = [
            reason
            for reason in (
                store_error and f"store: {store_error}",
                self.sync.last_error and f"registry sync: {self.sync.last_error}",
                self.sessions.local_only
                and f"sessions: {self.sessions.local_only} opened while the store was away live on this replica only",
            )
            if reason
        ]
        backends = {}
        for spec in self.config.mcp_servers:
            entry = self._backend_entry(spec.name, spec.type)
            if entry["state"] == "down":
                where = " on this replica" if entry.get("where") == "replica" else ""
                reasons.append(f"backend {spec.name} is down{where} since {entry['since']}: {entry.get('error')}")
            backends[spec.name] = entry
        body: dict[str, Any] = {
            "status": "degraded" if reasons else "ok",
            "replica": self.replica_id,
            "store": {"kind": self.stores.kind, "ok": store_error is None},
            "registry": {"version": self.sync.version, "tools": len(self.registry.catalog.tools)},
            "sessions": {"local_only": self.sessions.local_only},
            "backends": backends,
        }
        if reasons:
            body["reasons"] = reasons
        warm = self.connections is None or self.connections.warm.is_set()
        return self.sync.ready.is_set() and warm, body

    def _backend_entry(self, name: str, backend_type: str) -> dict[str, Any]:
        """One backend as /readyz shows it: the control plane's record, and this replica's own connection."""
        record = self.registry.catalog.servers.get(name)
        entry: dict[str, Any] = {"state": record.state if record else "starting", "type": backend_type}
        if record is not None:
            if record.since:
                entry["since"] = _timestamp(record.since)
            if record.error:
                entry["error"] = record.error
            if record.attempts:
                entry["attempts"] = record.attempts
            if record.protocol_version:
                entry["protocol"] = record.protocol_version
            entry["tools"] = len(record.tools)
        if self.connections is None:
            return entry
        local = self.pool.health(name)
        if local is None:
            entry["replica"] = {"state": "starting"}
            return entry
        entry["replica"] = {"state": local.state, "since": _timestamp(local.since)}
        if local.state == "down":
            entry["replica"].update(error=local.error, attempts=local.attempts)
            if entry["state"] != "down":
                # The control plane reaches it, this replica does not (its own stdio process, say).
                entry.update(state="down", where="replica", since=_timestamp(local.since), error=local.error)
        return entry


def _timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
