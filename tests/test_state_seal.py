"""StateSeal: tokens sealed on one replica open on every replica of the deployment, and nowhere else."""

from __future__ import annotations

import pytest

from aggregator import state_seal
from aggregator.state_seal import StateSeal
from shared.store.memory import MemoryKeyStore
from shared.store.protocols import StoreUnavailable


class AwayKeyStore:
    async def shared_key(self, name: str, key_id: str, *, ttl: float) -> bytes:
        raise StoreUnavailable("Redis at 127.0.0.1:1 is unreachable")


async def test_a_token_sealed_on_one_replica_opens_on_another_sharing_the_store() -> None:
    keys = MemoryKeyStore()
    one, two = StateSeal(keys, name="s", tag="aaaa"), StateSeal(keys, name="s", tag="bbbb")
    token = await one.seal("call-1|tools/call:x|alice")
    assert await two.open(token) == "call-1|tools/call:x|alice"


async def test_tampered_and_foreign_tokens_do_not_open() -> None:
    seal = StateSeal(MemoryKeyStore(), name="s", tag="aaaa")
    token = await seal.seal("call-1|b|s")
    key_id, message, mac = token.split(".")
    assert await seal.open(f"{key_id}.call-2|b|s.{mac}") is None
    assert await seal.open(f"{key_id}.{message}.{'0' * len(mac)}") is None
    assert await seal.open("garbage") is None and await seal.open("1.2.3") is None
    elsewhere = StateSeal(MemoryKeyStore(), name="s", tag="cccc")  # another deployment's store
    assert await elsewhere.open(token) is None


async def test_keys_rotate_and_a_token_still_opens_in_the_next_period(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(state_seal.time, "time", lambda: now[0])
    seal = StateSeal(MemoryKeyStore(), name="s", tag="aaaa", period=60)
    old = await seal.seal("m")
    now[0] += 61
    new = await seal.seal("m")
    assert old.split(".")[0] != new.split(".")[0]  # a new key
    assert await seal.open(old) == "m"
    now[0] += 60 * 5
    assert await seal.open(old) is None  # past its keys' lifetime


async def test_without_the_store_a_replica_seals_with_its_own_key() -> None:
    alone = StateSeal(AwayKeyStore(), name="s", tag="aaaa")
    token = await alone.seal("m")
    assert token.startswith("Laaaa.") and await alone.open(token) == "m"
    assert await StateSeal(AwayKeyStore(), name="s", tag="bbbb").open(token) is None
