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

    def __repr__(self) -> str:
        refresh = "***" if self.refresh_token else None
        return (
            f"TokenSet(access_token='***', refresh_token={refresh!r}, expires_at={self.expires_at!r}, "
            f"scope={self.scope!r}, token_type={self.token_type!r}, issuer={self.issuer!r}, "
            f"client_id={self.client_id!r})"
        )
