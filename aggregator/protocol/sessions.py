"""2025-11-25 sessions: the initialize handshake, `Mcp-Session-Id`, records in the SessionStore.

Records live in the store so any replica can serve a session; each replica keeps the records
it has seen in a small cache and touches the store at most every `touch_interval`, so the
request path does not wait on the store for every message.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import msgspec

from shared.protocol import versions as v
from shared.protocol.errors import InvalidParams
from shared.protocol.jsonrpc import Params, param_str
from shared.records import SessionRecord
from shared.store.protocols import SessionStore, StoreUnavailable

__all__ = ["SessionManager", "negotiate_version"]

_CACHE_LIMIT = 10_000
_object_decoder = msgspec.json.Decoder(dict[str, Any])


def negotiate_version(requested: Any) -> str:
    """The client's version if the gateway speaks it, else the newest handshake version."""
    return requested if requested in v.HANDSHAKE_VERSIONS else v.LATEST_HANDSHAKE


class SessionManager:
    def __init__(self, store: SessionStore, *, idle_timeout: float, touch_interval: float | None = None) -> None:
        self.store = store
        self.idle_timeout = idle_timeout
        self.touch_interval = touch_interval if touch_interval is not None else min(30.0, idle_timeout / 4)
        self._cache: dict[str, tuple[SessionRecord, float]] = {}

    async def create(self, params: Params, subject: str | None = None, session_id: str | None = None) -> SessionRecord:
        """A new session from initialize params (>= 128 random bits in its id)."""
        requested = param_str(params, "protocolVersion")
        capabilities = _object(params, "capabilities")
        client_info = _object(params, "clientInfo")
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
        now = time.monotonic()
        cached = self._cache.get(session_id)
        if cached is not None and now - cached[1] < self.touch_interval:
            return cached[0]
        if cached is not None:
            try:
                alive = await self.store.touch(session_id, ttl=self.idle_timeout)
            except StoreUnavailable:
                return cached[0]  # degraded: keep serving a session this replica already knows
            record = cached[0] if alive else None
        else:
            record = await self.store.get(session_id)
            if record is not None:
                await self.store.touch(session_id, ttl=self.idle_timeout)
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
        self._cache[record.id] = (record, time.monotonic() if now is None else now)


def _object(params: Params, key: str) -> dict[str, Any]:
    if key not in params:
        return {}
    try:
        return _object_decoder.decode(params[key])
    except msgspec.ValidationError as exc:
        raise InvalidParams(f"Invalid params: {key} must be a JSON object ({exc})") from None
