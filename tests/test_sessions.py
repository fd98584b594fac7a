"""aggregator/protocol/sessions.py: 2025-11-25 sessions over the memory store, on a clock the test moves.

Two SessionManagers over one store stand for two replicas. The store is the real memory store;
`Switchable` puts it behind a switch to play Redis going away, and counts what reaches it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from aggregator.protocol.sessions import SessionManager, negotiate_version
from shared.protocol import versions as v
from shared.protocol.errors import InvalidParams
from shared.protocol.jsonrpc import Params, raw
from shared.records import SessionRecord
from shared.store.memory import MemorySessionStore
from shared.store.protocols import StoreUnavailable

IDLE = 3600.0
TOUCH = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Switchable:
    """A MemorySessionStore that can be made unreachable, counting the calls that reach it."""

    def __init__(self, clock: Clock) -> None:
        self.inner = MemorySessionStore(clock)
        self.down = False
        self.calls: list[str] = []

    def _reach(self, call: str) -> None:
        if self.down:
            raise StoreUnavailable("redis://127.0.0.1:6379: connection refused")
        self.calls.append(call)

    async def create(self, record: SessionRecord, *, ttl: float) -> None:
        self._reach("create")
        await self.inner.create(record, ttl=ttl)

    async def restore(self, record: SessionRecord, *, ttl: float) -> bool:
        self._reach("restore")
        return await self.inner.restore(record, ttl=ttl)

    async def get(self, session_id: str) -> SessionRecord | None:
        self._reach("get")
        return await self.inner.get(session_id)

    async def touch(self, session_id: str, *, ttl: float) -> bool:
        self._reach("touch")
        return await self.inner.touch(session_id, ttl=ttl)

    async def delete(self, session_id: str) -> bool:
        self._reach("delete")
        return await self.inner.delete(session_id)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> Switchable:
    return Switchable(clock)


def replica(store: Switchable, clock: Clock) -> SessionManager:
    return SessionManager(store, idle_timeout=IDLE, touch_interval=TOUCH, clock=clock)


def initialize(version: Any = v.LATEST_HANDSHAKE, **extra: Any) -> Params:
    """initialize params as the transport decodes them."""
    return {"protocolVersion": raw(version), **{key: raw(value) for key, value in extra.items()}}


async def test_a_new_session_keeps_what_the_client_declared_under_an_unguessable_id(
    store: Switchable, clock: Clock
) -> None:
    sessions = replica(store, clock)
    params = initialize(capabilities={"sampling": {}}, clientInfo={"name": "inspector", "version": "1"})
    first = await sessions.create(params, subject="alice")
    second = await sessions.create(params)
    assert first.protocol_version == v.LATEST_HANDSHAKE
    assert first.client_capabilities == {"sampling": {}}
    assert first.client_info == {"name": "inspector", "version": "1"}
    assert first.subject == "alice"
    assert len(first.id) >= 32 and first.id != second.id  # 24 random bytes, URL-safe
    assert await store.inner.get(first.id) == first


async def test_a_session_can_take_the_id_its_transport_already_gave_it(store: Switchable, clock: Clock) -> None:
    record = await replica(store, clock).create(initialize(), session_id="legacy-sse-7")
    assert record.id == "legacy-sse-7"


@pytest.mark.parametrize("params", [{}, {"protocolVersion": raw(None)}], ids=["missing", "null"])
async def test_initialize_without_a_protocol_version_is_invalid_params(
    store: Switchable, clock: Clock, params: Params
) -> None:
    with pytest.raises(InvalidParams, match="initialize needs protocolVersion"):
        await replica(store, clock).create(params)


async def test_initialize_with_a_protocol_version_that_is_not_a_string_is_invalid_params(
    store: Switchable, clock: Clock
) -> None:
    with pytest.raises(InvalidParams, match="'protocolVersion' must be a string"):
        await replica(store, clock).create(initialize(20251125))


async def test_initialize_with_capabilities_that_are_not_an_object_is_invalid_params(
    store: Switchable, clock: Clock
) -> None:
    with pytest.raises(InvalidParams, match="must be a JSON object"):
        await replica(store, clock).create(initialize(capabilities=["sampling"]))


@pytest.mark.parametrize(
    ("requested", "negotiated"),
    [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2024-11-05", "2024-11-05"),
        ("2026-07-28", v.LATEST_HANDSHAKE),  # stateless: no initialize in that version
        ("1999-01-01", v.LATEST_HANDSHAKE),
    ],
)
async def test_the_client_version_is_kept_when_spoken_else_the_newest_handshake_version(
    store: Switchable, clock: Clock, requested: Any, negotiated: str
) -> None:
    assert negotiate_version(requested) == negotiated
    assert (await replica(store, clock).create(initialize(requested))).protocol_version == negotiated


async def test_a_session_used_within_the_touch_interval_is_served_without_the_store(
    store: Switchable, clock: Clock
) -> None:
    sessions = replica(store, clock)
    record = await sessions.create(initialize())
    store.calls.clear()
    clock.advance(TOUCH - 1)
    assert await sessions.get(record.id, subject=None) == record
    assert store.calls == []


async def test_a_session_used_after_the_touch_interval_has_its_life_extended(store: Switchable, clock: Clock) -> None:
    sessions = replica(store, clock)
    record = await sessions.create(initialize())
    clock.advance(TOUCH)
    store.calls.clear()
    assert await sessions.get(record.id, subject=None) == record
    assert "touch" in store.calls
    clock.advance(IDLE - 1)  # past the first deadline, within the extended one
    assert await store.inner.get(record.id) == record


async def test_a_session_in_regular_use_outlives_its_idle_timeout_many_times(store: Switchable, clock: Clock) -> None:
    sessions = replica(store, clock)
    record = await sessions.create(initialize())
    for _ in range(int(3 * IDLE / TOUCH)):
        clock.advance(TOUCH)
        assert await sessions.get(record.id, subject=None) is not None


async def test_an_idle_session_expires(store: Switchable, clock: Clock) -> None:
    sessions = replica(store, clock)
    record = await sessions.create(initialize())
    clock.advance(IDLE)
    assert await sessions.get(record.id, subject=None) is None
    assert await sessions.get(record.id, subject=None) is None  # and is not cached as alive


async def test_an_unknown_session_is_none(store: Switchable, clock: Clock) -> None:
    assert await replica(store, clock).get("never-existed", subject=None) is None


async def test_a_session_created_on_one_replica_is_served_by_another(store: Switchable, clock: Clock) -> None:
    record = await replica(store, clock).create(initialize(clientInfo={"name": "c"}))
    assert await replica(store, clock).get(record.id, subject=None) == record


async def test_delete_ends_the_session(store: Switchable, clock: Clock) -> None:
    sessions = replica(store, clock)
    record = await sessions.create(initialize())
    assert await sessions.delete(record.id)
    assert await sessions.get(record.id, subject=None) is None
    assert not await sessions.delete(record.id)


async def test_a_replica_told_to_forget_a_session_ended_elsewhere_stops_serving_it(
    store: Switchable, clock: Clock
) -> None:
    one, two = replica(store, clock), replica(store, clock)
    record = await one.create(initialize())
    assert await two.get(record.id, subject=None) is not None
    await one.delete(record.id)
    two.forget(record.id)
    assert await two.get(record.id, subject=None) is None


async def test_a_replica_not_told_of_a_deleted_session_drops_it_at_its_next_touch(
    store: Switchable, clock: Clock
) -> None:
    one, two = replica(store, clock), replica(store, clock)
    record = await one.create(initialize())
    assert await two.get(record.id, subject=None) is not None
    await one.delete(record.id)
    clock.advance(TOUCH)
    assert await two.get(record.id, subject=None) is None


async def test_a_change_made_on_one_replica_reaches_another_by_its_next_touch(store: Switchable, clock: Clock) -> None:
    one, two = replica(store, clock), replica(store, clock)
    record = await one.create(initialize())
    assert await two.get(record.id, subject=None) == record
    await one.update(msgspec.structs.replace(record, log_level="debug", subscriptions=["file:///a"]))
    clock.advance(TOUCH)
    seen = await two.get(record.id, subject=None)
    assert seen is not None and (seen.log_level, seen.subscriptions) == ("debug", ["file:///a"])


async def test_while_the_store_is_unavailable_a_known_session_is_still_served(store: Switchable, clock: Clock) -> None:
    sessions = replica(store, clock)
    record = await sessions.create(initialize())
    store.down = True
    clock.advance(TOUCH)
    assert await sessions.get(record.id, subject=None) == record
    clock.advance(TOUCH)
    assert await sessions.get(record.id, subject=None) == record


async def test_while_the_store_is_unavailable_an_unknown_session_fails_naming_the_store(
    store: Switchable, clock: Clock
) -> None:
    record = await replica(store, clock).create(initialize())
    store.down = True
    with pytest.raises(StoreUnavailable, match="connection refused"):
        await replica(store, clock).get(record.id, subject=None)


async def test_once_the_store_is_back_a_session_kept_through_the_outage_is_extended_there(
    store: Switchable, clock: Clock
) -> None:
    sessions = replica(store, clock)
    record = await sessions.create(initialize())
    store.down = True
    clock.advance(TOUCH)
    await sessions.get(record.id, subject=None)
    store.down = False
    clock.advance(TOUCH)
    store.calls.clear()
    assert await sessions.get(record.id, subject=None) == record
    assert "touch" in store.calls


async def test_a_session_opened_while_the_store_is_away_lives_here_until_it_is_back(
    store: Switchable, clock: Clock
) -> None:
    manager = replica(store, clock)
    store.down = True
    record = await manager.create(initialize())
    assert manager.local_only == 1
    assert await manager.get(record.id, subject=None) == record  # served locally meanwhile
    store.down = False
    keeping = asyncio.ensure_future(manager.keep())
    try:
        for _ in range(500):
            if not manager.local_only:
                break
            await asyncio.sleep(0.01)
    finally:
        keeping.cancel()
    assert manager.local_only == 0
    assert await replica(store, clock).get(record.id, subject=None) is not None  # another replica finds it now


async def test_when_the_store_comes_back_empty_sessions_served_here_are_written_back(
    store: Switchable, clock: Clock
) -> None:
    epochs = ["first"]

    async def epoch() -> str:
        return epochs[-1]

    manager = SessionManager(store, idle_timeout=IDLE, touch_interval=TOUCH, clock=clock, epoch=epoch)
    await manager.epoch_seen("first")
    record = await manager.create(initialize())
    store.inner = MemorySessionStore(clock)  # Redis restarted without its data...
    epochs.append("second")  # ...and so has a new epoch
    clock.advance(TOUCH + 1)
    assert await manager.get(record.id, subject=None) == record  # not a 404
    assert await store.inner.get(record.id) is not None  # back in the store for every replica


async def test_a_failover_that_lost_a_session_write_is_repaired_by_the_replica_that_holds_it(
    store: Switchable, clock: Clock
) -> None:
    """A Redis failover may promote a replica that never received the newest writes (same epoch)."""
    holder, other = replica(store, clock), replica(store, clock)
    kept = await holder.create(initialize())
    idle = await holder.create(initialize())
    store.down = True  # the master dies...
    clock.advance(TOUCH + 1)
    assert await holder.get(kept.id, subject=None) == kept  # served from what this replica knows
    store.inner = MemorySessionStore(clock)  # ...and the promoted replica never got either session
    store.down = False
    clock.advance(TOUCH + 1)
    assert await holder.get(kept.id, subject=None) == kept  # restored on its next use
    assert await other.get(kept.id, subject=None) == kept
    assert await other.get(idle.id, subject=None) is None  # not yet: the holder has not looked
    await holder.store_recovered()  # what registry sync tells it when it follows the store again
    assert await other.get(idle.id, subject=None) == idle  # every replica serves it again


async def test_restoring_after_an_outage_never_overwrites_a_newer_copy(store: Switchable, clock: Clock) -> None:
    holder, other = replica(store, clock), replica(store, clock)
    record = await holder.create(initialize())
    newer = msgspec.structs.replace(record, client_info={"name": "changed elsewhere"})
    await other.update(newer)
    await holder.store_recovered()
    assert await store.inner.get(record.id) == newer


async def test_a_session_deleted_elsewhere_is_not_resurrected(store: Switchable, clock: Clock) -> None:
    async def epoch() -> str:
        return "same"

    manager = SessionManager(store, idle_timeout=IDLE, touch_interval=TOUCH, clock=clock, epoch=epoch)
    await manager.epoch_seen("same")
    record = await manager.create(initialize())
    await store.delete(record.id)  # DELETE on another replica
    clock.advance(TOUCH + 1)
    assert await manager.get(record.id, subject=None) is None


async def test_a_session_is_served_only_to_the_subject_that_created_it(store: Switchable, clock: Clock) -> None:
    sessions = replica(store, clock)
    record = await sessions.create(initialize(), subject="alice")
    assert await sessions.get(record.id, subject="alice") == record
    assert await sessions.get(record.id, subject="bob") is None
    assert await sessions.get(record.id, subject=None) is None
    assert await replica(store, clock).get(record.id, subject="bob") is None  # on another replica too
