"""The embedded stores: plain dicts in one process. The default when no Redis URL is given."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import msgspec

from shared.events import ToolUpdateEvent
from shared.records import Heartbeat, ServerRecord, SessionRecord
from shared.store.memory_workflows import MemoryWorkflowStore
from shared.store.protocols import AUTH_COUNTERS, AUTH_TIMESTAMPS, GLOBAL_SCOPE, AuthEvent, AuthServerMetrics

__all__ = [
    "MemoryAuthMetrics",
    "MemoryBlockStore",
    "MemoryCapabilityStore",
    "MemoryEventBus",
    "MemoryHeartbeatStore",
    "MemoryKeyStore",
    "MemoryMessageBus",
    "MemoryRateLimiter",
    "MemorySessionStore",
    "MemoryStores",
    "MemoryValueStore",
]

Clock = Callable[[], float]
K = TypeVar("K")
V = TypeVar("V")
S = TypeVar("S", bound=msgspec.Struct)

_SWEEP_FLOOR = 1024
"""Writes between sweeps at least, so a small store is not swept on every write."""


class _Expiring(Generic[K, V]):
    """A dict whose entries may carry a deadline; expired entries read as missing and are swept.

    An entry nobody reads again is dropped by a sweep over all entries, which runs once the
    writes since the last sweep outnumber the entries it kept (and `_SWEEP_FLOOR`): each write
    pays O(1) on average, and the dict holds at most what the last sweep kept plus as many
    again (or `_SWEEP_FLOOR`).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._items: dict[K, tuple[V, float | None]] = {}
        self._writes = 0
        self._kept = 0

    def set(self, key: K, value: V, ttl: float | None) -> None:
        self._items[key] = (value, None if ttl is None else self._clock() + ttl)
        self._writes += 1
        if self._writes > self._kept and self._writes > _SWEEP_FLOOR:
            self._sweep()

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        value, deadline = item
        if deadline is not None and deadline <= self._clock():
            del self._items[key]
            return None
        return value

    def pop(self, key: K) -> V | None:
        value = self.get(key)
        self._items.pop(key, None)
        return value

    def live_keys(self) -> list[K]:
        return [k for k in list(self._items) if self.get(k) is not None]

    def __len__(self) -> int:
        return len(self._items)

    def _sweep(self) -> None:
        now = self._clock()
        self._items = {key: item for key, item in self._items.items() if item[1] is None or item[1] > now}
        self._kept = len(self._items)
        self._writes = 0


class MemoryCapabilityStore:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._data: _Expiring[tuple[str, str], ServerRecord] = _Expiring(clock)

    async def put(self, record: ServerRecord, *, scope: str = GLOBAL_SCOPE, ttl: float | None = None) -> None:
        self._data.set((scope, record.server), _copy(record), None if scope == GLOBAL_SCOPE else ttl)

    async def get(self, server: str, *, scope: str = GLOBAL_SCOPE) -> ServerRecord | None:
        record = self._data.get((scope, server))
        return _copy(record) if record is not None else None

    async def list(self, *, scope: str = GLOBAL_SCOPE) -> list[ServerRecord]:
        names = sorted(k[1] for k in self._data.live_keys() if k[0] == scope)
        return [r for r in [await self.get(n, scope=scope) for n in names] if r is not None]

    async def delete(self, server: str, *, scope: str = GLOBAL_SCOPE) -> None:
        self._data.pop((scope, server))

    def __len__(self) -> int:
        """Records held, expired ones not yet swept included."""
        return len(self._data)


class MemorySessionStore:
    """Records kept as their JSON (about 190 bytes for a typical session; a decoded copy takes 520),
    decoded on each read, which the SessionManager's cache makes rare."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._data: _Expiring[str, bytes] = _Expiring(clock)

    async def create(self, record: SessionRecord, *, ttl: float) -> None:
        self._data.set(record.id, _session_encoder.encode(record), ttl)

    async def restore(self, record: SessionRecord, *, ttl: float) -> bool:
        if self._data.get(record.id) is not None:
            return False
        self._data.set(record.id, _session_encoder.encode(record), ttl)
        return True

    async def get(self, session_id: str) -> SessionRecord | None:
        data = self._data.get(session_id)
        return _session_decoder.decode(data) if data is not None else None

    async def touch(self, session_id: str, *, ttl: float) -> bool:
        record = self._data.get(session_id)
        if record is None:
            return False
        self._data.set(session_id, record, ttl)
        return True

    async def delete(self, session_id: str) -> bool:
        return self._data.pop(session_id) is not None

    def __len__(self) -> int:
        """Sessions held, expired ones not yet swept included."""
        return len(self._data)


class MemoryBlockStore:
    def __init__(self) -> None:
        self._overrides: dict[str, bool] = {}

    async def set(self, tool: str, blocked: bool | None) -> None:
        if blocked is None:
            self._overrides.pop(tool, None)
        else:
            self._overrides[tool] = blocked

    async def all(self) -> dict[str, bool]:
        return dict(self._overrides)


class MemoryRateLimiter:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def _window(self, key: str, window: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        floor = self._clock() - window
        while hits and hits[0] <= floor:
            hits.popleft()
        return hits

    async def allow(self, key: str, *, limit: int, window: float) -> bool:
        hits = self._window(key, window)
        if len(hits) >= limit:
            return False
        hits.append(self._clock())
        return True

    async def remaining(self, key: str, *, limit: int, window: float) -> int:
        return max(0, limit - len(self._window(key, window)))

    async def reset(self, key: str) -> None:
        self._hits.pop(key, None)


class MemoryAuthMetrics:
    def __init__(self) -> None:
        self._servers: dict[str, AuthServerMetrics] = {}

    async def record(self, server: str, event: AuthEvent, *, at: float | None = None) -> None:
        metrics = self._servers.setdefault(server, AuthServerMetrics(server_name=server))
        field = AUTH_COUNTERS[event]
        setattr(metrics, field, getattr(metrics, field) + 1)
        if event in AUTH_TIMESTAMPS:
            setattr(metrics, AUTH_TIMESTAMPS[event], time.time() if at is None else at)

    async def server(self, server: str) -> AuthServerMetrics | None:
        metrics = self._servers.get(server)
        return _copy(metrics) if metrics is not None else None

    async def all(self) -> list[AuthServerMetrics]:
        return [_copy(self._servers[name]) for name in sorted(self._servers)]


class MemoryEventBus:
    """In-process fan-out; every subscriber gets its own unbounded queue."""

    def __init__(self) -> None:
        self._version = 0
        self._epoch = uuid.uuid4().hex
        self._queues: list[asyncio.Queue[ToolUpdateEvent]] = []

    async def publish(self, event: ToolUpdateEvent) -> ToolUpdateEvent:
        self._version += 1
        delivered = msgspec.structs.replace(event, version=self._version)
        for queue in self._queues:
            queue.put_nowait(delivered)
        return delivered

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[ToolUpdateEvent]]:
        queue: asyncio.Queue[ToolUpdateEvent] = asyncio.Queue()
        self._queues.append(queue)

        async def events() -> AsyncIterator[ToolUpdateEvent]:
            while True:
                yield await queue.get()

        try:
            yield events()
        finally:
            self._queues.remove(queue)

    async def version(self) -> int:
        return self._version

    async def epoch(self) -> str:
        return self._epoch


class MemoryMessageBus:
    """In-process delivery: one replica, so every channel is local."""

    def __init__(self) -> None:
        self._queues: dict[str, list[asyncio.Queue[tuple[str, bytes]]]] = {}

    async def publish(self, channel: str, payload: bytes) -> None:
        for queue in self._queues.get(channel, []):
            queue.put_nowait((channel, payload))

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[AsyncIterator[tuple[str, bytes]]]:
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        for channel in channels:
            self._queues.setdefault(channel, []).append(queue)

        async def messages() -> AsyncIterator[tuple[str, bytes]]:
            while True:
                yield await queue.get()

        try:
            yield messages()
        finally:
            for channel in channels:
                self._queues[channel].remove(queue)
                if not self._queues[channel]:
                    del self._queues[channel]


class MemoryKeyStore:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._keys: _Expiring[tuple[str, str], bytes] = _Expiring(clock)

    async def shared_key(self, name: str, key_id: str, *, ttl: float) -> bytes:
        key = self._keys.get((name, key_id))
        if key is None:
            key = secrets.token_bytes(32)
            self._keys.set((name, key_id), key, ttl)
        return key


class MemoryValueStore:
    """One process: no await between a read and a write, so `take` and `put_if_absent` are atomic.

    Values are copied in (`bytes(value)`): a caller's bytearray, which the types admit as bytes, stays theirs.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._data: _Expiring[str, bytes] = _Expiring(clock)

    async def put(self, key: str, value: bytes, *, ttl: float) -> None:
        self._data.set(key, bytes(value), ttl)

    async def get(self, key: str) -> bytes | None:
        return self._data.get(key)

    async def take(self, key: str) -> bytes | None:
        return self._data.pop(key)

    async def delete(self, key: str) -> bool:
        return self._data.pop(key) is not None

    async def put_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        if self._data.get(key) is not None:
            return False
        self._data.set(key, bytes(value), ttl)
        return True


class MemoryHeartbeatStore:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._beats: _Expiring[str, Heartbeat] = _Expiring(clock)

    async def beat(self, record: Heartbeat, *, ttl: float) -> None:
        self._beats.set(record.id, _copy(record), ttl)

    async def all(self) -> list[Heartbeat]:
        found = [self._beats.get(beat_id) for beat_id in sorted(self._beats.live_keys())]
        return [_copy(record) for record in found if record is not None]

    async def remove(self, beat_id: str) -> None:
        self._beats.pop(beat_id)


class MemoryStores:
    kind = "memory"

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.capabilities = MemoryCapabilityStore(clock)
        self.sessions = MemorySessionStore(clock)
        self.blocks = MemoryBlockStore()
        self.rate_limiter = MemoryRateLimiter(clock)
        self.auth_metrics = MemoryAuthMetrics()
        self.events = MemoryEventBus()
        self.messages = MemoryMessageBus()
        self.keys = MemoryKeyStore(clock)
        self.values = MemoryValueStore(clock)
        self.heartbeats = MemoryHeartbeatStore(clock)
        self.workflows = MemoryWorkflowStore(clock)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


_session_encoder = msgspec.json.Encoder()
_session_decoder = msgspec.json.Decoder(SessionRecord)


def _copy(value: S) -> S:
    """A detached copy, so callers cannot mutate what the store holds (as with Redis)."""
    return msgspec.convert(msgspec.to_builtins(value), type(value))
