"""Request checks of the console: same-origin state changes, and whether the browser came over https.

A state-changing request must carry an Origin that is this console's own (scheme and host as
the browser used them: behind a TLS-terminating proxy, X-Forwarded-Proto says https) or one
listed in aggregator.allowedOrigins by name (a "*" there opens MCP to any page, not the console).
Browsers send Origin on every POST, so a request without one is refused too.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request

__all__ = ["client_address", "same_origin", "secure"]


def secure(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def same_origin(request: Request, allowed: Iterable[str]) -> bool:
    origins = request.headers.getlist("origin")
    if len(origins) != 1:
        return False
    origin = origins[0].rstrip("/").lower()
    host = request.headers.get("host", "").lower()
    own = f"{'https' if secure(request) else 'http'}://{host}"
    listed = {entry.rstrip("/").lower() for entry in allowed} - {"*"}
    return (bool(host) and origin == own) or origin in listed


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"
