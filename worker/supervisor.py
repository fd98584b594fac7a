"""BackendSupervisor: keeps every configured backend connected, discovered and announced.

The event-handler semantics of the seed: a backend that connects and answers is registered
(its record stored, a `registered` event published); one that fails, stops answering its
health check or dies is deregistered and retried with capped exponential backoff. A
backend's list_changed triggers a re-read of that list and a `capabilities_changed` event.
The same class runs inside the aggregator (embedded mode) or in `aggregator-worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

import httpx

from shared.backends.base import BackendConnection
from shared.backends.discovery import discover, health_check
from shared.config import ServerSpec
from shared.events import EventType, ToolUpdateEvent
from shared.oauth.discovery import discover_protected_resource
from shared.oauth.http import OAuthError
from shared.pool import SessionConnectionPool
from shared.protocol.errors import BackendAuthRequired, GatewayError
from shared.protocol.vocabulary import LIST_KINDS, kinds_changed_by
from shared.records import AuthChallenge, ServerRecord
from shared.retry import backoff_delay
from shared.store.protocols import FencedOut, Stores

__all__ = ["BackendSupervisor"]

log = logging.getLogger("worker.supervisor")


class _Watch:
    """What one backend's supervision loop waits on."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.refresh: set[str] = set()
        self.reconnect = False
        """An operator asked for a fresh connection (shared/reconnect.py)."""
        self.retry = asyncio.Event()
        """Ends a backoff wait early."""
        self.failures = 0
        self.since = time.time()
        """When the backend's current state (up, or a streak of failures) began."""


class BackendSupervisor:
    def __init__(
        self,
        specs: Iterable[ServerSpec],
        pool: SessionConnectionPool,
        stores: Stores,
        *,
        health_interval: float = 30.0,
        origin: str | None = None,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.pool = pool
        self.stores = stores
        self.health_interval = health_interval
        self.origin = origin
        self._watches = {name: _Watch() for name in self.specs}
        self._up: set[str] = set()
        self._protected: dict[str, AuthChallenge] = {}

    async def run(self) -> None:
        """Supervise every backend until cancelled."""
        async with asyncio.TaskGroup() as group:
            for spec in self.specs.values():
                group.create_task(self._supervise(spec), name=f"supervise-{spec.name}")

    def list_changed(self, server: str, method: str) -> None:
        """A backend said one of its lists changed: re-read it soon."""
        watch = self._watches.get(server)
        kinds = {kind.key for kind in kinds_changed_by(method)}
        if watch is None or not kinds:
            return
        watch.refresh |= kinds
        watch.wake.set()

    def connection_lost(self, server: str, reason: str) -> None:
        watch = self._watches.get(server)
        if watch is not None:
            watch.wake.set()

    def reconnect(self, server: str) -> None:
        """Open a fresh connection to the backend now: drop a live one, or cut a backoff wait short."""
        watch = self._watches.get(server)
        if watch is not None:
            watch.reconnect = True
            watch.retry.set()
            watch.wake.set()

    async def _supervise(self, spec: ServerSpec) -> None:
        watch = self._watches[spec.name]
        while True:
            watch.reconnect = False
            watch.retry.clear()
            try:
                conn = await self.pool.connect(spec.name)
                record = await discover(conn)
                watch.failures, watch.since = 0, time.time()
                record.since = watch.since
                await self._announce(record, "registered")
                await self._watch(spec, conn, record)
                if watch.reconnect:
                    continue
                reason = f"connection lost: {conn.lost_reason}"
            except BackendAuthRequired as exc:
                await self.pool.evict(spec.name)
                await self._announce_protected(spec, exc, watch)
                watch.wake.clear()
                with contextlib.suppress(TimeoutError):  # it stays protected until its configuration changes
                    await asyncio.wait_for(watch.wake.wait(), self.health_interval)
                continue
            except GatewayError as exc:
                reason = exc.message
            except OSError as exc:
                reason = f"cannot reach backend {spec.name!r}: {exc}"
            except FencedOut:
                raise
            except Exception as exc:
                log.exception("supervising backend %s failed unexpectedly", spec.name)
                reason = f"unexpected error: {exc}"
            await self.pool.evict(spec.name)
            if watch.failures == 0:
                watch.since = time.time()
            watch.failures += 1
            delay = backoff_delay(watch.failures)
            await self._announce_down(spec.name, reason, watch)
            log.warning(
                "backend %s is down (%s); retrying in %.1fs (attempt %d)",
                spec.name,
                reason,
                delay,
                watch.failures,
                extra={"server": spec.name},
            )
            watch.wake.clear()
            watch.refresh.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.retry.wait(), delay)

    async def _watch(self, spec: ServerSpec, conn: BackendConnection, record: ServerRecord) -> None:
        """Return when the backend is gone; refresh lists on request; health-check when idle."""
        watch = self._watches[spec.name]
        while True:
            if not conn.alive or watch.reconnect:
                return
            if not watch.refresh:  # a refresh asked for while the last one ran must not wait
                watch.wake.clear()
                try:
                    await asyncio.wait_for(watch.wake.wait(), self.health_interval)
                except TimeoutError:
                    await health_check(conn, timeout=min(spec.timeout, 10.0))
                continue
            kinds, watch.refresh = watch.refresh, set()
            fresh = await discover(conn, only=kinds, base=record)
            fresh.since = record.since
            changed = tuple(
                kind.key for kind in LIST_KINDS if getattr(fresh, kind.field) != getattr(record, kind.field)
            )
            record = fresh
            await self._announce(record, "capabilities_changed", changed)

    async def _announce(self, record: ServerRecord, kind: EventType, changed: tuple[str, ...] = ()) -> None:
        await self.stores.capabilities.put(record)
        self._up.add(record.server)
        self._protected.pop(record.server, None)
        if kind == "capabilities_changed" and not changed:
            return
        await self.stores.events.publish(
            ToolUpdateEvent(type=kind, server=record.server, changed=changed, origin=self.origin)
        )
        log.info(
            "backend %s %s: %d tools, %d prompts, %d resources",
            record.server,
            kind.replace("_", " "),
            len(record.tools),
            len(record.prompts),
            len(record.resources),
            extra={"server": record.server},
        )

    async def _announce_protected(self, spec: ServerSpec, refusal: BackendAuthRequired, watch: _Watch) -> None:
        """A backend that needs a user's token: its tools show per user, once a user has one."""
        assert spec.url is not None
        try:
            async with httpx.AsyncClient(timeout=10.0) as http:
                found = await discover_protected_resource(http, spec.url, refusal.challenge)
            challenge = AuthChallenge(
                resource=found.resource,
                authorization_servers=list(found.authorization_servers),
                scopes=list(found.scopes_supported),
            )
        except OAuthError as exc:
            challenge = AuthChallenge(error=str(exc))
        if self._protected.get(spec.name) == challenge:
            return  # announced already, unchanged
        if spec.name not in self._protected:
            watch.since = time.time()
        record = ServerRecord(
            server=spec.name, state="auth_required", since=watch.since, auth=challenge, updated_at=time.time()
        )
        kind: EventType = "deregistered" if spec.name in self._up else "status_changed"
        await self.stores.capabilities.put(record)
        self._up.discard(spec.name)
        self._protected[spec.name] = challenge
        await self.stores.events.publish(ToolUpdateEvent(type=kind, server=spec.name, origin=self.origin))
        log.info("backend %s needs a user's token; its tools show per user", spec.name, extra={"server": spec.name})

    async def _announce_down(self, server: str, reason: str, watch: _Watch) -> None:
        """Record the failed attempt; every replica shows the error from the first one on."""
        record = ServerRecord(
            server=server,
            state="down",
            since=watch.since,
            error=reason,
            attempts=watch.failures,
            updated_at=time.time(),
        )
        kind: EventType = "deregistered" if server in self._up else "status_changed"
        try:
            await self.stores.capabilities.put(record)
            self._up.discard(server)
            await self.stores.events.publish(ToolUpdateEvent(type=kind, server=server, origin=self.origin))
        except FencedOut:
            raise
        except Exception as exc:  # the store being away must not stop supervision
            log.warning("could not record backend %s as down: %s", server, exc)
