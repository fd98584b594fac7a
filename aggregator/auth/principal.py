"""Principal: who a request comes from, as the gateway's own access token says."""

from __future__ import annotations

import msgspec

__all__ = ["Principal"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The verified bearer of a request: its subject, scopes, and the token itself (to forward or exchange).

    `token` is a secret: it is never logged, shown or put into an error; repr() leaves it out.
    """

    subject: str
    token: str = msgspec.field(default="")
    scopes: frozenset[str] = frozenset()
    expires_at: float = 0.0
    """Wall-clock expiry of the token (its `exp`)."""
    client_id: str | None = None

    def __repr__(self) -> str:
        return f"Principal(subject={self.subject!r}, scopes={sorted(self.scopes)!r}, expires_at={self.expires_at})"
