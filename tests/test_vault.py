"""TokenVault: each user's tokens per backend, sealed in the shared store, readable only where they were put."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
import redis.asyncio as aioredis

from aggregator.auth.user_records import user_key
from aggregator.auth.vault import TokenVault
from shared.crypto import TokenCipher
from shared.oauth.tokens import TokenSet
from shared.store.protocols import Stores
from shared.store.redis import open_redis_stores
from tests.redis_server import RedisServer

ALICE = "alice@example.com"
TOKENS = TokenSet(
    access_token="at-secret-1",
    refresh_token="rt-secret-1",
    expires_at=1_900_000_000.0,
    scope="read write",
    issuer="https://as.example",
    client_id="client-1",
)


async def vault_over(stores: Stores) -> TokenVault:
    return TokenVault(stores.values, await TokenCipher.open(stores.keys, None))


async def test_tokens_come_back_for_their_user_and_backend_only(stores: Stores) -> None:
    vault = await vault_over(stores)
    await vault.put(ALICE, "kube", TOKENS, ttl=60)
    assert await vault.get(ALICE, "kube") == TOKENS
    assert await vault.get(ALICE, "git") is None
    assert await vault.get("bob@example.com", "kube") is None


async def test_forget_removes_the_tokens_and_says_whether_there_were_any(stores: Stores) -> None:
    vault = await vault_over(stores)
    await vault.put(ALICE, "kube", TokenSet(access_token="at"), ttl=60)
    assert await vault.forget(ALICE, "kube")
    assert await vault.get(ALICE, "kube") is None
    assert not await vault.forget(ALICE, "kube")


async def test_tokens_expire_with_their_ttl(stores: Stores) -> None:
    vault = await vault_over(stores)
    await vault.put(ALICE, "kube", TOKENS, ttl=0.2)
    await asyncio.sleep(0.35)
    assert await vault.get(ALICE, "kube") is None


async def test_another_replica_over_the_same_redis_reads_the_tokens(redis_server: RedisServer) -> None:
    namespace = f"vault-{uuid.uuid4().hex[:8]}"
    one = await open_redis_stores(redis_server.url, namespace=namespace)
    two = await open_redis_stores(redis_server.url, namespace=namespace)
    try:
        await (await vault_over(one)).put(ALICE, "kube", TOKENS, ttl=60)
        assert await (await vault_over(two)).get(ALICE, "kube") == TOKENS
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_holds_neither_the_user_id_nor_the_tokens_in_clear(redis_server: RedisServer) -> None:
    namespace = f"vault-{uuid.uuid4().hex[:8]}"
    stores = await open_redis_stores(redis_server.url, namespace=namespace)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        await (await vault_over(stores)).put(ALICE, "kube", TOKENS, ttl=60)
        [key] = await raw.keys(f"{namespace}:val:*")
        assert key.startswith(f"{namespace}:val:".encode()) and key.endswith(b":kube")
        assert b"alice" not in key
        value = await raw.get(key)
        for clear in (b"alice", b"at-secret-1", b"rt-secret-1", b"client-1"):
            assert clear not in value
        assert 0 < await raw.pttl(key) <= 60_000
    finally:
        await stores.aclose()
        await raw.aclose()


async def test_tokens_copied_under_another_user_do_not_open_there(stores: Stores) -> None:
    vault = await vault_over(stores)
    await vault.put(ALICE, "kube", TOKENS, ttl=60)
    await vault.put("mallory", "kube", TokenSet(access_token="mallory's own"), ttl=60)
    alices, mallorys = (f"tokens:{user_key(user)}:kube" for user in (ALICE, "mallory"))
    sealed = await stores.values.get(alices)
    assert sealed is not None
    await stores.values.put(mallorys, sealed, ttl=60)
    assert await vault.get("mallory", "kube") is None


async def test_tokens_sealed_under_another_key_read_as_absent_and_say_so_without_secrets(
    stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    await TokenVault(stores.values, await TokenCipher.open(stores.keys, "an old key of at least thirty-two chars")).put(
        ALICE, "kube", TOKENS, ttl=60
    )
    with caplog.at_level(logging.WARNING):
        assert await (await vault_over(stores)).get(ALICE, "kube") is None
    assert "kube" in caplog.text and "another key" in caplog.text
    for secret in ("alice", "at-secret-1", "rt-secret-1", "thirty-two"):
        assert secret not in caplog.text
