"""The embedded stores' own behaviour beyond the shared conformance suite: expired entries are freed."""

from __future__ import annotations

from shared.records import ServerRecord, SessionRecord
from shared.store.memory import MemoryCapabilityStore, MemorySessionStore

ROUND = 5_000
TTL = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def session(session_id: str) -> SessionRecord:
    return SessionRecord(id=session_id, protocol_version="2025-11-25")


async def test_expired_sessions_are_freed_while_new_ones_arrive() -> None:
    clock = FakeClock()
    store = MemorySessionStore(clock)
    for round_ in range(6):
        for n in range(ROUND):
            await store.create(session(f"{round_}-{n}"), ttl=TTL)
        clock.now += TTL + 1  # every session of this round expires, none is ever read again
    assert len(store) <= 2 * ROUND  # never more than twice what was live at once (6 * ROUND without sweeping)


async def test_a_sweep_keeps_sessions_that_are_still_in_use() -> None:
    clock = FakeClock()
    store = MemorySessionStore(clock)
    await store.create(session("kept"), ttl=TTL)
    await store.create(session("forever-young"), ttl=10 * TTL)
    for round_ in range(4):
        for n in range(ROUND):
            await store.create(session(f"{round_}-{n}"), ttl=TTL)
        clock.now += TTL - 1
        assert await store.touch("kept", ttl=TTL)
    assert await store.get("kept") is not None
    assert await store.get("forever-young") is not None
    assert await store.get("0-0") is None


async def test_records_without_a_ttl_survive_sweeps() -> None:
    clock = FakeClock()
    store = MemoryCapabilityStore(clock)
    await store.put(ServerRecord(server="global"))
    for n in range(3 * ROUND):
        await store.put(ServerRecord(server=f"s{n}"), scope=f"session-{n}", ttl=1.0)
        clock.now += 0.01
    assert len(store) < 3 * ROUND
    assert await store.get("global") is not None
