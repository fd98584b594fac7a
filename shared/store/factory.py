"""Choose the store implementation once, at start-up, from the Redis URL (or its absence)."""

from __future__ import annotations

from shared.store.memory import MemoryStores
from shared.store.protocols import Stores

__all__ = ["open_stores"]


async def open_stores(redis_url: str | None, *, namespace: str = "mcpagg") -> Stores:
    """Embedded memory stores without a URL; Redis stores (pinged once) with one."""
    if not redis_url:
        return MemoryStores()
    from shared.store.redis import open_redis_stores

    return await open_redis_stores(redis_url, namespace=namespace)
