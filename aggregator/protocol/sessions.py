"""2025-11-25 sessions: the initialize handshake, `Mcp-Session-Id`, records in the SessionStore.

Records live in the store so any replica can serve a session; each replica keeps the records
it has seen in a small cache and reads (and touches) each again at most every `touch_interval`,
so the request path does not wait on the store for every message and a change made on another
replica is seen within that interval.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import msgspec

from shared.protocol import versions as v
from shared.protocol.errors import InvalidParams
from shared.protocol.jsonrpc import Params, decode_params
from shared.records import SessionRecord
from shared.store.protocols import SessionStore, StoreUnavailable

__all__ = ["SessionManager", "negotiate_version"]

_CACHE_LIMIT = 10_000


def negotiate_version(requested: Any) -> str:
    """The client's version if the gateway speaks it, else the newest handshake version."""
    return requested if requested in v.HANDSHAKE_VERSIONS else v.LATEST_HANDSHAKE


class SessionManager:
    def __init__(
        self,
        store: SessionStore,
        *,
        idle_timeout: float,
        touch_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.idle_timeout = idle_timeout
        self.touch_interval = touch_interval if touch_interval is not None else min(30.0, idle_timeout / 4)
        self._clock = clock  # measures how long ago each cached session was last seen in the store
        self._cache: dict[str, tuple[SessionRecord, float]] = {}

    async def create(self, params: Params, subject: str | None = None, session_id: str | None = None) -> SessionRecord:
        """A new session from initialize params (>= 128 random bits in its id)."""
        requested = msgspec.json.decode(params["protocolVersion"]) if "protocolVersion" in params else None
        if requested is None:
            raise InvalidParams("Invalid params: initialize needs protocolVersion")
        capabilities = _object(params.get("capabilities"))
        client_info = _object(params.get("clientInfo"))
        record = SessionRecord(
            id=session_id or secrets.token_urlsafe(24),
            protocol_version=negotiate_version(requested),
            client_capabilities=capabilities,
            client_info=client_info,
            subject=subject,
            created_at=time.time(),
        )
        await self.store.create(record, ttl=self.idle_timeout)
        self._remember(record)
        return record

    async def get(self, session_id: str) -> SessionRecord | None:
        """The live session, or None when it never existed, ended or expired."""
        now = self._clock()
        cached = self._cache.get(session_id)
        if cached is not None and now - cached[1] < self.touch_interval:
            return cached[0]
        try:
            record = await self.store.get(session_id)  # read again: another replica may have changed it
            if record is not None:
                await self.store.touch(session_id, ttl=self.idle_timeout)
        except StoreUnavailable:
            if cached is None:
                raise
            return cached[0]  # degraded: keep serving a session this replica already knows
        if record is None:
            self._cache.pop(session_id, None)
            return None
        self._remember(record, now)
        return record

    async def update(self, record: SessionRecord) -> None:
        await self.store.create(record, ttl=self.idle_timeout)
        self._remember(record)

    async def delete(self, session_id: str) -> bool:
        self._cache.pop(session_id, None)
        return await self.store.delete(session_id)

    def forget(self, session_id: str) -> None:
        """Drop the local copy (another replica ended the session)."""
        self._cache.pop(session_id, None)

    def _remember(self, record: SessionRecord, now: float | None = None) -> None:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.pop(next(iter(self._cache)))
        self._cache[record.id] = (record, self._clock() if now is None else now)


def _object(value: msgspec.Raw | None) -> dict[str, Any]:
    if value is None:
        return {}
    decoded = decode_params(value)
    return {key: msgspec.json.decode(item) for key, item in decoded.items()}
