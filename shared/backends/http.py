"""The seam between backend HTTP and the rest of the gateway: one pool per backend, errors translated."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from shared.backends.http_client import HttpPool, Response, WireError
from shared.config import ServerSpec
from shared.protocol.errors import BackendAuthRequired, BackendError, BackendUnavailable
from shared.redact import redact_url

__all__ = ["auth_required", "new_pool", "translate_errors", "unexpected_status"]


def new_pool(spec: ServerSpec) -> HttpPool:
    """Keep-alive connections to one backend, carrying its configured headers, at most maxConnections of them."""
    assert spec.url is not None
    return HttpPool(spec.url, headers=spec.headers, max_connections=spec.max_connections)


@contextlib.contextmanager
def translate_errors(server: str, url: str | None) -> Iterator[None]:
    """Turn transport failures into BackendUnavailable naming the server and URL."""
    try:
        yield
    except (WireError, OSError) as exc:
        shown = redact_url(url or "")
        raise BackendUnavailable(server, f"backend {server!r} is unreachable at {shown}: {exc}") from exc


def auth_required(server: str, response: Response) -> BackendAuthRequired:
    """The error for a 401: the backend needs a user's token; its challenge says where to get one."""
    return BackendAuthRequired(
        server,
        f"backend {server!r} needs a user's token (it answered HTTP 401)",
        challenge=response.headers.get("www-authenticate", ""),
    )


def unexpected_status(server: str, status: int, body: bytes) -> BackendError:
    """A BackendError for an HTTP answer that is neither JSON-RPC nor success."""
    text = body[:200].decode("utf-8", "replace").strip()
    return BackendError(server, f"backend {server!r} answered HTTP {status}" + (f": {text}" if text else ""))
