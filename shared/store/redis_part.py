"""RedisPart: what every Redis store holds, so each store class says only what it adds."""

from __future__ import annotations

from shared.store.redis_keys import RedisKeys
from shared.store.redis_url import RedisClient

__all__ = ["RedisPart"]


class RedisPart:
    def __init__(self, client: RedisClient, keys: RedisKeys, where: str, fence: tuple[str, str] | None = None) -> None:
        self.client = client
        self.keys = keys
        self.where = where
        """Where Redis is, for error messages (never its password)."""
        self.fence = fence
        """(lock key, our lock value): a control plane's writes check it holds the leader lock."""
