"""Plain ASGI middleware: reject requests from browser origins that are not allowed.

Protects a gateway on localhost from DNS rebinding: a page on another site cannot drive it.
Requests without an Origin header (non-browser clients) pass. Loopback origins are always
allowed; others must be listed in aggregator.allowedOrigins ("*" allows any).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aggregator.transport.http_common import Receive, Scope, Send, send_error
from shared.protocol.errors import InvalidRequest

__all__ = ["OriginCheck"]

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class OriginCheck:
    def __init__(self, app, allowed: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.allowed = {origin.rstrip("/").lower() for origin in allowed}

    def permits(self, origin: str) -> bool:
        origin = origin.rstrip("/").lower()
        if "*" in self.allowed or origin in self.allowed:
            return True
        return urlsplit(origin).hostname in _LOOPBACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"origin":
                    origin = value.decode("latin-1")
                    if not self.permits(origin):
                        await send_error(
                            send,
                            InvalidRequest(f"Origin {origin!r} is not allowed; add it to aggregator.allowedOrigins"),
                            status=403,
                        )
                        return
                    break
        await self.app(scope, receive, send)
