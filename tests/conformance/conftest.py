"""One store suite, run against every implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.store.memory import MemoryStores
from shared.store.protocols import Stores

IMPLEMENTATIONS = ["memory"]


@pytest.fixture(params=IMPLEMENTATIONS)
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    if request.param == "memory":
        instance: Stores = MemoryStores()
    else:  # pragma: no cover - filled in by the Redis implementation
        raise AssertionError(request.param)
    try:
        yield instance
    finally:
        await instance.aclose()
