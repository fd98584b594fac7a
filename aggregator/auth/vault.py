"""TokenVault: each user's tokens for each backend, sealed, in the ValueStore every replica shares.

A token set is kept under `tokens:{user key}:{server}` (a digest of the subject), so user ids never
appear in key names; that key is also the cipher's context, so a value copied under another
user or backend does not open. A value that does not open (the token key changed, or it was
tampered with) reads as absent and is logged: the user signs in again and the new tokens
replace it. Refreshing and locking are the caller's (see `ValueStore.put_if_absent`).
"""

from __future__ import annotations

import logging

import msgspec

from aggregator.auth.user_records import user_key
from shared.crypto import TokenCipher, TokenCipherError
from shared.oauth.tokens import TokenSet
from shared.store.protocols import ValueStore

__all__ = ["TokenVault"]

log = logging.getLogger("aggregator.auth")


_encode = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(TokenSet)


class TokenVault:
    def __init__(self, values: ValueStore, cipher: TokenCipher) -> None:
        self.values = values
        self.cipher = cipher

    async def put(self, subject: str, server: str, tokens: TokenSet, *, ttl: float) -> None:
        """Keep `tokens` for (subject, server) for `ttl` seconds, replacing any there were."""
        key = _key(subject, server)
        await self.values.put(key, self.cipher.seal(_encode(tokens), context=key), ttl=ttl)

    async def get(self, subject: str, server: str) -> TokenSet | None:
        """The tokens kept for (subject, server); None when there are none or they do not open."""
        key = _key(subject, server)
        sealed = await self.values.get(key)
        if sealed is None:
            return None
        try:
            return _decoder.decode(self.cipher.unseal(sealed, context=key))
        except TokenCipherError as exc:
            log.warning("a user's stored tokens for backend %r do not open (%s); they sign in again", server, exc)
            return None

    async def forget(self, subject: str, server: str) -> bool:
        """Drop the tokens kept for (subject, server); False when there were none."""
        return await self.values.delete(_key(subject, server))


def _key(subject: str, server: str) -> str:
    return f"tokens:{user_key(subject)}:{server}"
