"""TokenCipher: encryption of what the gateway keeps of users' tokens (AES-256-GCM).

A sealed value is `version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext and tag`.
The key id is a fingerprint of the key (an HMAC of a fixed label, not the key), so a value sealed
under another key is told apart from a tampered one, and a later version can hold several keys
and rotate. The associated data is the header and the caller's `context` (e.g. the store key a
value is kept under): a ciphertext moved to another (user, backend) does not open.

The key: SHA-256 of `AGGREGATOR_TOKEN_KEY` when the caller passes it, else 32 random bytes made
once and kept in the KeyStore, so every replica of a deployment shares it. It appears in no
repr, message or log.

Errors:

    TokenCipherError      a sealed value does not open (tampered, another context, another key)
    TokenKeyInvalid       AGGREGATOR_TOKEN_KEY breaks the rule (at start-up)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.store.protocols import KeyStore

__all__ = ["ENV_VAR", "TokenCipher", "TokenCipherError", "TokenKeyInvalid"]

ENV_VAR = "AGGREGATOR_TOKEN_KEY"
_MIN_ENV_KEY_LENGTH = 32

_VERSION = 1
_KEY_ID_LENGTH = 4
_NONCE_LENGTH = 12
_HEADER_LENGTH = 1 + _KEY_ID_LENGTH
_TAG_LENGTH = 16
_STORE_KEY = ("token-encryption", "v1")
_STORE_KEY_TTL = 10 * 365 * 24 * 3600.0


class TokenCipherError(Exception):
    """A sealed value does not open; the message says why, never what the key is."""


class TokenKeyInvalid(Exception):
    """The configured token key cannot be used; the message names the variable and the rule."""


class TokenCipher:
    """Encrypts what the gateway keeps of users' tokens: AES-256-GCM, a random 96-bit nonce per value,
    the key id and nonce prepended; associated data binds a ciphertext to its context (user, backend)."""

    def __init__(self, key: bytes, *, source: str) -> None:
        self._aead = AESGCM(key)
        self._header = bytes([_VERSION]) + _key_id(key)
        self.source = source

    @classmethod
    async def open(cls, keys: KeyStore, env_key: str | None) -> TokenCipher:
        """The cipher of this deployment: from `env_key` (AGGREGATOR_TOKEN_KEY as set), else the store's key."""
        if env_key is not None:
            if len(env_key) < _MIN_ENV_KEY_LENGTH:
                raise TokenKeyInvalid(
                    f"{ENV_VAR} is too short: it must be at least {_MIN_ENV_KEY_LENGTH} characters (the key is its "
                    f"SHA-256); set a random one, e.g. `openssl rand -base64 32`, or unset it to have a key "
                    "generated once and kept in the store"
                )
            return cls(hashlib.sha256(env_key.encode()).digest(), source=ENV_VAR)
        name, key_id = _STORE_KEY
        return cls(await keys.shared_key(name, key_id, ttl=_STORE_KEY_TTL), source="store")

    @property
    def key_id(self) -> str:
        """The key's fingerprint (hex), the same on every replica sharing the key."""
        return self._header[1:].hex()

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_LENGTH)
        return self._header + nonce + self._aead.encrypt(nonce, plaintext, self._header + context.encode())

    def unseal(self, sealed: bytes, *, context: str) -> bytes:
        """The plaintext, or TokenCipherError (tampered, another context, another key, unknown format)."""
        if len(sealed) < _HEADER_LENGTH + _NONCE_LENGTH + _TAG_LENGTH:
            raise TokenCipherError(f"not a sealed token: {len(sealed)} bytes is shorter than any")
        header, nonce = sealed[:_HEADER_LENGTH], sealed[_HEADER_LENGTH : _HEADER_LENGTH + _NONCE_LENGTH]
        if header[0] != _VERSION:
            raise TokenCipherError(f"sealed in format version {header[0]}, which this gateway does not know")
        if header != self._header:
            raise TokenCipherError(
                f"sealed under another key (key id {header[1:].hex()}, this gateway's is {self.key_id}): "
                f"{ENV_VAR} or the store's key changed since"
            )
        try:
            return self._aead.decrypt(nonce, sealed[_HEADER_LENGTH + _NONCE_LENGTH :], header + context.encode())
        except InvalidTag:
            raise TokenCipherError(
                "the sealed token does not open: tampered with, or sealed for another context"
            ) from None

    def __repr__(self) -> str:
        return f"TokenCipher(key_id={self.key_id!r}, source={self.source!r})"


def _key_id(key: bytes) -> bytes:
    """A fingerprint naming the key without revealing it."""
    return hmac.new(key, b"mcp-aggregator token key id", hashlib.sha256).digest()[:_KEY_ID_LENGTH]
