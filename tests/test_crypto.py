"""TokenCipher: what one replica seals every replica opens, for the same context only, and the key never shows."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest

from shared.crypto import TokenCipher, TokenCipherError, TokenKeyInvalid
from shared.store.memory import MemoryKeyStore
from shared.store.redis import open_redis_stores
from tests.redis_server import RedisServer

ENV_KEY = "correct horse battery staple, thirty-two+"


async def test_a_sealed_value_opens_again_and_two_seals_differ() -> None:
    cipher = await TokenCipher.open(MemoryKeyStore(), None)
    sealed = cipher.seal(b"access-token-123", context="tokens:alice:kube")
    assert b"access-token-123" not in sealed
    assert cipher.seal(b"access-token-123", context="tokens:alice:kube") != sealed  # a fresh nonce each time
    assert cipher.unseal(sealed, context="tokens:alice:kube") == b"access-token-123"


async def test_any_changed_byte_or_a_cut_makes_unseal_fail() -> None:
    cipher = await TokenCipher.open(MemoryKeyStore(), None)
    sealed = cipher.seal(b"secret", context="c")
    for position in (0, 1, 5, 17, len(sealed) - 1):  # version, key id, nonce, ciphertext, tag
        tampered = bytearray(sealed)
        tampered[position] ^= 0x01
        with pytest.raises(TokenCipherError):
            cipher.unseal(bytes(tampered), context="c")
    for cut in (sealed[:-1], sealed[:10], b""):
        with pytest.raises(TokenCipherError):
            cipher.unseal(cut, context="c")


async def test_a_value_sealed_for_one_context_does_not_open_in_another() -> None:
    cipher = await TokenCipher.open(MemoryKeyStore(), None)
    sealed = cipher.seal(b"alice's token", context="tokens:alice:kube")
    with pytest.raises(TokenCipherError, match="another context"):
        cipher.unseal(sealed, context="tokens:mallory:kube")


async def test_two_replicas_over_one_redis_share_the_generated_key(redis_server: RedisServer) -> None:
    namespace = f"crypto-{uuid.uuid4().hex[:6]}"
    one = await open_redis_stores(redis_server.url, namespace=namespace)
    two = await open_redis_stores(redis_server.url, namespace=namespace)
    try:
        sealed = (await TokenCipher.open(one.keys, None)).seal(b"token", context="c")
        assert (await TokenCipher.open(two.keys, None)).unseal(sealed, context="c") == b"token"
    finally:
        await one.aclose()
        await two.aclose()


async def test_the_env_key_is_used_instead_of_the_store_s() -> None:
    sealed = (await TokenCipher.open(MemoryKeyStore(), ENV_KEY)).seal(b"token", context="c")
    elsewhere = await TokenCipher.open(MemoryKeyStore(), ENV_KEY)  # another store, the same env key
    assert elsewhere.unseal(sealed, context="c") == b"token"
    with pytest.raises(TokenCipherError, match="another key"):
        (await TokenCipher.open(MemoryKeyStore(), ENV_KEY + "!")).unseal(sealed, context="c")
    with pytest.raises(TokenCipherError, match="another key"):
        (await TokenCipher.open(MemoryKeyStore(), None)).unseal(sealed, context="c")


@pytest.mark.parametrize("env_key", ["", "hunter2", "x" * 31])
async def test_a_short_env_key_is_refused_naming_the_variable_and_the_rule(env_key: str) -> None:
    with pytest.raises(TokenKeyInvalid) as caught:
        await TokenCipher.open(MemoryKeyStore(), env_key)
    message = str(caught.value)
    assert "AGGREGATOR_TOKEN_KEY" in message and "at least 32 characters" in message and "SHA-256" in message
    assert env_key == "" or env_key not in message


async def test_the_key_never_shows_in_the_cipher_or_its_errors() -> None:
    keys = MemoryKeyStore()
    from_store = await TokenCipher.open(keys, None)
    from_env = await TokenCipher.open(MemoryKeyStore(), ENV_KEY)
    store_key = await keys.shared_key("token-encryption", "v1", ttl=60)
    secrets = [ENV_KEY, store_key, hashlib.sha256(ENV_KEY.encode()).digest()]
    errors: list[Exception] = []
    for cipher in (from_store, from_env):
        sealed = cipher.seal(b"t", context="c")
        for attempt in (sealed[:-1] + bytes([sealed[-1] ^ 1]), sealed):
            with pytest.raises(TokenCipherError) as caught:
                cipher.unseal(attempt, context="other")
            errors.append(caught.value)
    with pytest.raises(TokenCipherError) as foreign:
        from_store.unseal(from_env.seal(b"t", context="c"), context="c")
    errors.append(foreign.value)
    shown = " ".join(text for thing in (from_store, from_env, *errors) for text in (repr(thing), str(thing)))
    for secret in secrets:
        forms = [secret] if isinstance(secret, str) else [secret.hex(), base64.b64encode(secret).decode(), repr(secret)]
        for form in forms:
            assert form not in shown
