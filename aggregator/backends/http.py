"""The one factory for HTTP clients to backends, and the seam that translates their errors.

aiohttp carries the forwarding path: measured on these machines it costs a forwarding hop a
few percent where httpx costs two thirds (docs/performance.md).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator

import aiohttp

from aggregator.protocol.errors import BackendUnavailable
from shared.config import ServerSpec

__all__ = ["encode_header_value", "new_http_session", "translate_errors"]

_CONNECT_TIMEOUT = 10.0


def new_http_session(spec: ServerSpec) -> aiohttp.ClientSession:
    """A pooled keep-alive client for one backend, carrying the configured headers."""
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=None, connect=_CONNECT_TIMEOUT, sock_connect=_CONNECT_TIMEOUT)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers=dict(spec.headers),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
    )


@contextlib.contextmanager
def translate_errors(server: str, url: str | None) -> Iterator[None]:
    """Turn aiohttp's transport errors into BackendUnavailable naming the server and URL."""
    try:
        yield
    except aiohttp.ClientError as exc:
        detail = str(exc) or type(exc).__name__
        raise BackendUnavailable(server, f"backend {server!r} is unreachable at {url}: {detail}") from exc


def encode_header_value(value: str) -> str:
    """An HTTP header value as 2026-07-28 wants it: plain when safe, else the base64 sentinel."""
    safe = (
        value == value.strip()
        and all(0x20 <= ord(c) <= 0x7E for c in value)
        and not (value.startswith("=?base64?") and value.endswith("?="))
    )
    if safe:
        return value
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="
