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
from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from aggregator.handlers import AggregatorServer
from aggregator.input_required import InputBroker
from aggregator.notifications import NotificationHub
from aggregator.protocol.sessions import SessionManager
from aggregator.registry import ServerRegistry
from aggregator.registry_sync import RegistrySync
from aggregator.replica_link import LinkMessage, ReplicaLink
from aggregator.router import Router
from shared.backends.base import BackendConnection
from shared.config import Config
from shared.pool import SessionConnectionPool
from shared.protocol.errors import GatewayError
from shared.protocol.jsonrpc import Message, Notification, Params, Request, RequestId, decode_message, encode
from shared.store.protocols import Stores
from shared.telemetry import Telemetry
from worker.supervisor import BackendSupervisor

__all__ = ["Gateway"]

log = logging.getLogger("aggregator.gateway")

_READY_WAIT = 15.0
_CLIENT_ANSWER_TIMEOUT = 300.0  # a person may be answering an elicitation


def _withdraw(deliver: Callable[[bytes], None], request_id: str, reason: str) -> None:
    """Tell the client to stop working on a request of ours nobody waits for any more."""
    with contextlib.suppress(Exception):
        params = msgspec.json.encode({"requestId": request_id, "reason": reason})
        deliver(encode(Notification(method="notifications/cancelled", params=Raw(params))))


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
        self.server.on_subscriptions = self.session_subscriptions
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
        self.link = ReplicaLink(stores.messages)
        self.link.on("answer", self._answer_arrived)
        self.link.on("session", self._session_message)
        self.link.on("resource", self._resource_message)
        self.link.on("subscriptions", self._subscriptions_message)
        self.link.on("session_ended", self._session_ended)
        self._request_counter = itertools.count(1)
        self.closing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self.telemetry.watch_backends(self._backend_states)

    async def start(self) -> None:
        """Start syncing (and, embedded, supervising); wait until the first backends answered."""
        self._tasks.append(asyncio.create_task(self.sync.run(), name="registry-sync"))
        self._tasks.append(asyncio.create_task(self.link.run(), name="replica-link"))
        if self.supervisor is not None:
            self._tasks.append(asyncio.create_task(self.supervisor.run(), name="supervisor"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(self.sync.ready.wait(), self.link.connected.wait()), _READY_WAIT)
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

    # -- reaching clients wherever their stream is ----------------------------------------------

    def next_request_id(self) -> str:
        """An id for a request to a client; it names this replica so the answer finds its way back."""
        return f"gw-{self.link.tag}-{next(self._request_counter)}"

    async def ask_client(self, session_id: str, method: str, params: Raw, deliver: Callable[[bytes], None]) -> Raw:
        """Send a request to a client with `deliver` and wait (bounded) for its answer, from any replica."""
        request_id = self.next_request_id()
        key = (session_id, request_id)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.client_requests[key] = future
        try:
            deliver(encode(Request(id=request_id, method=method, params=params)))
            answer = await asyncio.wait_for(future, _CLIENT_ANSWER_TIMEOUT)
        except TimeoutError:
            _withdraw(deliver, request_id, "timed out")
            raise GatewayError(f"the client did not answer {method} within {_CLIENT_ANSWER_TIMEOUT:.0f}s") from None
        except asyncio.CancelledError:
            _withdraw(deliver, request_id, "the backend withdrew the request")
            raise
        finally:
            self.client_requests.pop(key, None)
        if answer.error is not UNSET:
            error = msgspec.json.decode(answer.error)
            raise GatewayError(str(error.get("message", "client error")), error.get("data"), code=error.get("code"))
        assert answer.result is not UNSET
        return answer.result

    async def client_answered(self, session_id: str, message: Message) -> None:
        """A client's answer to one of our requests arrived here; resolve it here or where it was asked."""
        if (session_id, message.id) in self.client_requests or self.link.mine(message.id):
            self.resolve_answer(session_id, message)
            return
        await self.link.send(message.id, LinkMessage(kind="answer", session=session_id, body=encode(message)))

    async def notify_session(self, session_id: str, data: bytes) -> None:
        """Put a message on a 2025-11-25 session's GET stream, on whichever replica holds it."""
        listener = self.hub.session_listener(session_id)
        if listener is not None:
            listener.push(data)
        else:
            await self.link.broadcast(LinkMessage(kind="session", session=session_id, body=data))

    async def session_subscriptions(self, session_id: str, uris: set[str]) -> None:
        self.hub.session_uris[session_id] = set(uris)
        await self.link.broadcast(LinkMessage(kind="subscriptions", session=session_id, uris=sorted(uris)))

    async def end_session(self, session_id: str) -> bool:
        existed = await self.sessions.delete(session_id)
        await self.link.broadcast(LinkMessage(kind="session_ended", session=session_id))
        return existed

    def resolve_answer(self, session_id: str, message: Message) -> None:
        future = self.client_requests.get((session_id, message.id))  # type: ignore[arg-type]
        if future is not None and not future.done():
            future.set_result(message)

    def _answer_arrived(self, message: LinkMessage) -> None:
        decoded = decode_message(message.body)
        assert isinstance(decoded, Message) and message.session is not None
        self.resolve_answer(message.session, decoded)

    def _session_message(self, message: LinkMessage) -> None:
        listener = self.hub.session_listener(message.session or "")
        if listener is not None:
            listener.push(message.body)

    def _resource_message(self, message: LinkMessage) -> None:
        for uri in message.uris:
            self.hub.resource_updated(uri)

    def _subscriptions_message(self, message: LinkMessage) -> None:
        listener = self.hub.session_listener(message.session or "")
        if listener is not None:
            listener.uris.clear()
            listener.uris.update(message.uris)

    def _session_ended(self, message: LinkMessage) -> None:
        session_id = message.session or ""
        self.sessions.forget(session_id)
        self.hub.session_uris.pop(session_id, None)
        listener = self.hub.session_listener(session_id)
        if listener is not None:
            self.hub.remove(listener)

    # -- backends -------------------------------------------------------------------------------

    def _backend_notification(self, conn: BackendConnection, method: str, params: Params) -> None:
        if method.endswith("/list_changed"):
            if self.supervisor is not None:
                self.supervisor.list_changed(conn.server, method)
        elif method == "notifications/resources/updated" and "uri" in params:
            exposed = self._exposed_uri(conn.server, msgspec.json.decode(params["uri"]))
            if exposed is not None:
                task = asyncio.ensure_future(self.link.broadcast(LinkMessage(kind="resource", uris=[exposed])))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def _exposed_uri(self, server: str, original: str) -> str | None:
        for exposed, route in self.registry.catalog.resource_routes.items():
            if route.server == server and route.original == original:
                return exposed
        for template in self.registry.catalog.template_routes:
            if template.server == server and template.pattern.fullmatch(template.strip + original):
                return template.strip + original
        return None

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
        """Whether this replica can serve, and its state: store, registry, each backend.

        A replica that lost its store keeps serving what it knows and reports `degraded`
        (still ready: taking every replica out of rotation would turn a store outage into a
        full one). It is not ready before its first registry load.
        """
        store_error = None
        try:
            await asyncio.wait_for(self.stores.ping(), 2.0)
        except Exception as exc:
            store_error = str(exc) or type(exc).__name__
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
        reasons = [
            r
            for r in (
                store_error and f"store: {store_error}",
                self.sync.last_error and f"registry sync: {self.sync.last_error}",
            )
            if r
        ]
        body: dict[str, Any] = {
            "status": "degraded" if reasons else "ok",
            "replica": self.replica_id,
            "store": {"kind": self.stores.kind, "ok": store_error is None},
            "registry": {"version": self.sync.version, "tools": len(self.registry.catalog.tools)},
            "backends": backends,
        }
        if reasons:
            body["reasons"] = reasons
        return self.sync.ready.is_set(), body
