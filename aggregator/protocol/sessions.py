"""2025-11-25 sessions: the initialize handshake, `Mcp-Session-Id`, records in the SessionStore.

Records live in the store so any replica can serve a session; each replica keeps the records
it has seen in a small cache and reads (and touches) each again at most every `touch_interval`,
so the request path does not wait on the store for every message and a change made on another
replica is seen within that interval.

The store may be away, or come back empty (Redis restarted without persistence), or come back
without its latest writes (a failover promoted a Redis replica that had not yet received them).
A session opened while it is away lives on this replica only and is written to the store by
`keep` once it is back. When the store lost its data (its epoch changed) or recovered from an
outage, every session this replica served recently is restored (written only where missing, so
a newer copy from another replica wins), and so clients keep their sessions on any replica.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from shared.protocol import versions as v
from shared.protocol.errors import InvalidParams
from shared.protocol.jsonrpc import Params, param_str
from shared.records import SessionRecord
from shared.store.protocols import SessionStore, StoreUnavailable

__all__ = ["SessionManager", "negotiate_version"]

log = logging.getLogger("aggregator.sessions")

_CACHE_LIMIT = 10_000
_RETRY_UNSAVED = 1.0  # seconds between attempts to write sessions opened while the store was away
_object_decoder = msgspec.json.Decoder(dict[str, Any])
_VERSIONS = {version: version for version in v.HANDSHAKE_VERSIONS}

Epoch = Callable[[], Awaitable[str]]


def negotiate_version(requested: Any) -> str:
    """The client's version if the gateway speaks it, else the newest handshake version.

    Always one of the gateway's own strings, so the many session records share it.
    """
    return _VERSIONS.get(requested, v.LATEST_HANDSHAKE) if isinstance(requested, str) else v.LATEST_HANDSHAKE


@dataclass(slots=True)
class _Cached:
    record: SessionRecord
    checked: float
    """When the store last confirmed the session (monotonic)."""


class SessionManager:
    def __init__(
        self,
        store: SessionStore,
        *,
        idle_timeout: float,
        touch_interval: float | None = None,
        epoch: Epoch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.idle_timeout = idle_timeout
        self.touch_interval = touch_interval if touch_interval is not None else min(30.0, idle_timeout / 4)
        self._epoch_of_store = epoch
        self._clock = clock  # measures how long ago each cached session was last seen in the store
        self.epoch: str | None = None
        """The store's epoch when this replica last looked; a different one means it lost its data."""
        self._cache: dict[str, _Cached] = {}
        self._unsaved: dict[str, SessionRecord] = {}
        self._unsaved_added = asyncio.Event()
        self._trouble_at = float("-inf")
        """When the store last failed or recovered from an outage: writes confirmed before may be lost."""

    @property
    def local_only(self) -> int:
        """Sessions that exist only on this replica until the store is back."""
        return len(self._unsaved)

    @property
    def served(self) -> int:
        """Sessions this replica served lately (those it keeps cached)."""
        return len(self._cache)

    async def create(self, params: Params, subject: str | None = None, session_id: str | None = None) -> SessionRecord:
        """A new session from initialize params (>= 128 random bits in its id)."""
        requested = param_str(params, "protocolVersion", required=False) if "protocolVersion" in params else None
        if requested is None:
            raise InvalidParams("Invalid params: initialize needs protocolVersion (a string such as 2025-11-25)")
        record = SessionRecord(
            id=session_id or secrets.token_urlsafe(24),
            protocol_version=negotiate_version(requested),
            client_capabilities=_object(params, "capabilities"),
            client_info=_object(params, "clientInfo"),
            subject=subject,
            created_at=time.time(),
        )
        await self._save(record)
        return record

    async def get(self, session_id: str, *, subject: str | None) -> SessionRecord | None:
        """The live session of `subject`; None when it never existed, ended, expired, or is someone else's.

        A session belongs to whoever created it: another subject presenting its id learns nothing.
        """
        record = await self._find(session_id)
        return record if record is not None and record.subject == subject else None

    async def _find(self, session_id: str) -> SessionRecord | None:
        unsaved = self._unsaved.get(session_id)
        if unsaved is not None:
            return unsaved
        now = self._clock()
        cached = self._cache.get(session_id)
        if cached is not None and now - cached.checked < self.touch_interval:
            return cached.record
        try:
            record = await self.store.get(session_id)  # read again: another replica may have changed it
            if record is None and cached is not None:
                if await self.store_lost_data():
                    record = cached.record  # the store came back empty; write_back put it back
                elif cached.checked <= self._trouble_at:  # confirmed before an outage that may have lost it
                    await self.store.restore(cached.record, ttl=self.idle_timeout)
                    record = cached.record
            if record is not None:
                await self.store.touch(session_id, ttl=self.idle_timeout)
        except StoreUnavailable:
            self._trouble_at = self._clock()
            if cached is not None:
                return cached.record  # degraded: keep serving a session this replica already knows
            raise
        if record is None:
            self._cache.pop(session_id, None)
            return None
        self._remember(record, now)
        return record

    async def update(self, record: SessionRecord) -> None:
        await self._save(record)

    async def delete(self, session_id: str) -> bool:
        self._cache.pop(session_id, None)
        if self._unsaved.pop(session_id, None) is not None:
            return True
        return await self.store.delete(session_id)

    def forget(self, session_id: str) -> None:
        """Drop the local copy (another replica ended the session)."""
        self._cache.pop(session_id, None)
        self._unsaved.pop(session_id, None)

    async def store_lost_data(self) -> bool:
        """Whether the store lost its data since this replica last looked (then sessions were written back)."""
        if self._epoch_of_store is None:
            return False
        return await self.epoch_seen(await self._epoch_of_store())

    async def epoch_seen(self, current: str) -> bool:
        """Note the store's epoch; a new one means it lost its data, and this replica's sessions go back in."""
        previous, self.epoch = self.epoch, current
        if previous is None or previous == current:
            return False
        await self.write_back("the store lost its data")
        return True

    async def store_recovered(self) -> None:
        """The store is back after an outage (perhaps a failover that lost recent writes): restore ours."""
        self._trouble_at = self._clock()
        await self.write_back("the store recovered from an outage")

    async def write_back(self, why: str) -> None:
        """Restore every session this replica served within the idle timeout where the store lacks it."""
        horizon = self._clock() - self.idle_timeout
        recent = [cached.record for cached in list(self._cache.values()) if cached.checked > horizon]
        restored = 0
        for record in recent:
            restored += await self.store.restore(record, ttl=self.idle_timeout)
        if restored:
            log.warning("%s; restored %d of the %d session(s) this replica serves", why, restored, len(recent))

    async def keep(self) -> None:
        """Write sessions opened while the store was away once it is back (runs until cancelled)."""
        while True:
            await self._unsaved_added.wait()
            for record in list(self._unsaved.values()):
                try:
                    await self.store.create(record, ttl=self.idle_timeout)
                except StoreUnavailable:
                    break
                if self._unsaved.get(record.id) is record:
                    del self._unsaved[record.id]
                    self._remember(record)
            if not self._unsaved:
                self._unsaved_added.clear()
                log.info("every session opened while the store was away is now in the store")
            else:
                await asyncio.sleep(_RETRY_UNSAVED)

    async def _save(self, record: SessionRecord) -> None:
        try:
            await self.store.create(record, ttl=self.idle_timeout)
        except StoreUnavailable as exc:
            if record.id not in self._unsaved:
                log.warning("the store is unavailable (%s); session kept on this replica until it is back", exc)
            self._unsaved[record.id] = record
            self._unsaved_added.set()
            return
        self._unsaved.pop(record.id, None)
        self._remember(record)

    def _remember(self, record: SessionRecord, now: float | None = None) -> None:
        if record.id not in self._cache and len(self._cache) >= _CACHE_LIMIT:
            self._cache.pop(next(iter(self._cache)))
        self._cache[record.id] = _Cached(record, self._clock() if now is None else now)


def _object(params: Params, key: str) -> dict[str, Any]:
    if key not in params:
        return {}
    try:
        return _object_decoder.decode(params[key])
    except msgspec.ValidationError as exc:
        raise InvalidParams(f"Invalid params: {key} must be a JSON object ({exc})") from None
