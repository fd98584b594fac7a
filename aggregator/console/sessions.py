"""Console sign-in: the admin token once, then a signed session cookie with a CSRF token of its own.

The cookie is `{id}.{expires}.{signature}`, signed with a key derived from AGGREGATOR_ADMIN_TOKEN,
so every replica accepts it without a store lookup (and changing the token ends every session).
Signing out records the id in the ValueStore until the cookie would have expired; a session is
checked against that list, and while the store is away an unexpired cookie is still accepted,
so an operator can read the console during a store outage (changing anything needs the store).
Failed sign-ins count in the store's sliding window per client address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.store.protocols import Stores, StoreUnavailable

__all__ = ["COOKIE", "LIFETIME", "ConsoleSession", "ConsoleSessions"]

COOKIE = "aggregator_console"
LIFETIME = 12 * 3600
"""Seconds a sign-in lasts."""
FAILURES_ALLOWED = 5
FAILURE_WINDOW = 300.0


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    id: str
    expires: int
    csrf: str
    """The token every state-changing request of this session carries (a form field)."""


class ConsoleSessions:
    def __init__(self, token: str, stores: Stores, *, clock: Callable[[], float] = time.time) -> None:
        self._token = token.encode()
        self._key = hmac.new(self._token, b"aggregator console session v1", hashlib.sha256).digest()
        self.stores = stores
        self._clock = clock

    def token_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._token)

    async def may_try(self, client: str) -> bool:
        """False while this client's failed sign-ins fill the window."""
        remaining = await self.stores.rate_limiter.remaining(
            _window(client), limit=FAILURES_ALLOWED, window=FAILURE_WINDOW
        )
        return remaining > 0

    async def failed(self, client: str) -> None:
        await self.stores.rate_limiter.allow(_window(client), limit=FAILURES_ALLOWED, window=FAILURE_WINDOW)

    def issue(self) -> tuple[ConsoleSession, str]:
        """A new session, and the cookie value that carries it."""
        session_id = secrets.token_urlsafe(18)
        expires = int(self._clock()) + LIFETIME
        body = f"{session_id}.{expires}"
        return self._session(session_id, expires), f"{body}.{self._sign(body)}"

    async def find(self, cookie: str | None) -> ConsoleSession | None:
        """The session a cookie carries, if its signature holds, it has not expired and was not signed out."""
        if not cookie or cookie.count(".") != 2:
            return None
        session_id, expires_text, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(f"{session_id}.{expires_text}")):
            return None
        if not expires_text.isdigit() or int(expires_text) <= self._clock():
            return None
        try:
            if await self.stores.values.get(_signed_out(session_id)) is not None:
                return None
        except StoreUnavailable:
            pass  # readable during a store outage; see the module docstring
        return self._session(session_id, int(expires_text))

    async def sign_out(self, session: ConsoleSession) -> None:
        left = max(1.0, session.expires - self._clock())
        await self.stores.values.put(_signed_out(session.id), b"1", ttl=left)

    def csrf_ok(self, session: ConsoleSession, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), session.csrf.encode())

    def _session(self, session_id: str, expires: int) -> ConsoleSession:
        return ConsoleSession(session_id, expires, self._sign(f"csrf.{session_id}"))

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _window(client: str) -> str:
    return f"console-sign-in:{client}"


def _signed_out(session_id: str) -> str:
    return f"console-signed-out:{session_id}"
