"""TokenSet: the tokens the gateway holds for one user at one backend, as the OAuth client makes them
and the vault keeps them. Its repr names which tokens are there, never what they are."""

from __future__ import annotations

import msgspec

__all__ = ["TokenSet"]


class TokenSet(msgspec.Struct, kw_only=True, frozen=True):
    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None  # wall clock
    scope: str | None = None
    token_type: str = "Bearer"
    issuer: str | None = None
    client_id: str | None = None  # the client the tokens were issued to (refresh needs it)
    issued_at: float | None = None  # wall clock: with expires_at, the token's lifetime

    def expiring(self, now: float, margin: float = 300.0) -> bool:
        """Whether to replace it now: within `margin` seconds of expiry, or half its lifetime if shorter."""
        if self.expires_at is None:
            return False
        lifetime = self.expires_at - self.issued_at if self.issued_at is not None else 2 * margin
        return self.expires_at - now < min(margin, lifetime / 2)

    def __repr__(self) -> str:
        refresh = "***" if self.refresh_token else None
        return (
            f"TokenSet(access_token='***', refresh_token={refresh!r}, expires_at={self.expires_at!r}, "
            f"scope={self.scope!r}, token_type={self.token_type!r}, issuer={self.issuer!r}, "
            f"client_id={self.client_id!r}, issued_at={self.issued_at!r})"
        )
