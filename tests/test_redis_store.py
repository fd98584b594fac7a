"""What only the Redis stores must show: shared limits across replicas, key hygiene, clear failures."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from shared.records import SessionRecord
from shared.store.protocols import StoreUnavailable
from shared.store.redis import open_redis_stores
from tests.ports import free_port
from tests.redis_server import RedisServer, start_redis


async def test_two_replicas_share_one_rate_limit(redis_server: RedisServer) -> None:
    namespace = f"rl-{uuid.uuid4().hex[:6]}"
    a = await open_redis_stores(redis_server.url, namespace=namespace)
    b = await open_redis_stores(redis_server.url, namespace=namespace)
    try:
        results = await asyncio.gather(*(store.rate_limiter.allow("user", limit=10, window=5) for store in [a, b] * 15))
        assert sum(results) == 10
    finally:
        await a.aclose()
        await b.aclose()


async def test_per_session_and_per_user_keys_expire(redis_server: RedisServer) -> None:
    namespace = f"ttl-{uuid.uuid4().hex[:6]}"
    stores = await open_redis_stores(redis_server.url, namespace=namespace)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        await stores.sessions.create(SessionRecord(id="s", protocol_version="2025-11-25"), ttl=60)
        await stores.rate_limiter.allow("u", limit=3, window=30)
        keys = [key for key in await raw.keys(f"{namespace}:*") if b":session:" in key or b":rl:" in key]
        assert len(keys) == 2, keys
        for key in keys:
            assert 0 < await raw.pttl(key) <= 60_000, key
    finally:
        await stores.aclose()
        await raw.aclose()


async def test_ping_fails_naming_redis_once_it_went_away() -> None:
    server = start_redis()
    stores = await open_redis_stores(server.url, namespace=f"ping-{uuid.uuid4().hex[:6]}", connect_timeout=1)
    try:
        await stores.ping()  # live: no error
        server.stop()
        with pytest.raises(StoreUnavailable, match=rf"Redis at 127\.0\.0\.1:{server.port}"):
            await stores.ping()
    finally:
        await stores.aclose()
        server.stop()


async def test_unreachable_redis_names_where_and_what_to_do() -> None:
    with pytest.raises(StoreUnavailable, match=r"cannot reach Redis at 127\.0\.0\.1:\d+ .*--redis-url"):
        await open_redis_stores(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1)


async def test_a_connection_that_died_with_a_restarted_redis_is_replaced_not_reported() -> None:
    """After Redis restarts, pooled connections are dead; the next command must not fail on one."""
    server = start_redis()
    try:
        stores = await open_redis_stores(server.url, namespace="restart")
        try:
            await stores.blocks.set("x_a_b", True)  # leaves a connection in the pool
            server.restart()
            await stores.blocks.set("x_a_b", False)
            assert await stores.blocks.all() == {"x_a_b": False}
        finally:
            await stores.aclose()
    finally:
        server.stop()
