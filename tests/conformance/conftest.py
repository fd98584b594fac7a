"""One store suite, run against every implementation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from shared.store.memory import MemoryStores
from shared.store.protocols import Stores
from shared.store.redis import open_redis_stores


@pytest.fixture(params=["memory", "redis"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    if request.param == "memory":
        instance: Stores = MemoryStores()
    else:
        server = request.getfixturevalue("redis_server")
        instance = await open_redis_stores(server.url, namespace=f"test-{uuid.uuid4().hex[:8]}")
    try:
        yield instance
    finally:
        await instance.aclose()
