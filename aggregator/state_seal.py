"""StateSeal: tokens the gateway hands to clients and must recognise later, on any replica.

A sealed token is `{key id}.{message}.{mac}`: an HMAC over the message with a key every replica
shares through the store. Keys rotate every `period` (the key id is the period's number) and
live for three periods, so a token sealed at the end of one period still opens in the next.
While the store is away a replica seals with a key of its own (id `L{tag}`): such tokens open
only on that replica.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time

from shared.store.protocols import KeyStore, StoreUnavailable

__all__ = ["StateSeal"]

log = logging.getLogger("aggregator.seal")

_MAC_LENGTH = 32  # hex characters: 128 bits


class StateSeal:
    def __init__(self, keys: KeyStore, *, name: str, tag: str, period: float = 3600.0) -> None:
        self.keys = keys
        self.name = name
        self.period = period
        self._local_id = f"L{tag}"
        self._local_key = secrets.token_bytes(32)
        self._cache: dict[str, bytes] = {}

    async def seal(self, message: str) -> str:
        key_id, key = await self._current()
        return f"{key_id}.{message}.{_mac(key, message)}"

    async def open(self, token: str) -> str | None:
        """The message inside a token this deployment sealed, or None (tampered, expired, foreign)."""
        key_id, _, rest = token.partition(".")
        message, _, mac = rest.rpartition(".")
        if not key_id or not message or len(mac) != _MAC_LENGTH:
            return None
        key = await self._key(key_id)
        if key is None or not hmac.compare_digest(mac, _mac(key, message)):
            return None
        return message

    async def _current(self) -> tuple[str, bytes]:
        key_id = str(int(time.time() // self.period))
        key = await self._key(key_id)
        return (key_id, key) if key is not None else (self._local_id, self._local_key)

    async def _key(self, key_id: str) -> bytes | None:
        if key_id == self._local_id:
            return self._local_key
        if not key_id.isdigit():
            return None  # another replica's own key, or garbage
        if abs(int(key_id) - time.time() // self.period) > 2:
            return None  # outside the keys' lifetime: expired, or forged
        key = self._cache.get(key_id)
        if key is not None:
            return key
        try:
            key = await self.keys.shared_key(self.name, key_id, ttl=3 * self.period)
        except StoreUnavailable as exc:
            log.warning("sealing keys are in the store, which is unavailable (%s); using this replica's own", exc)
            return None
        if len(self._cache) >= 4:
            self._cache.pop(min(self._cache, key=int))
        self._cache[key_id] = key
        return key


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[:_MAC_LENGTH]
