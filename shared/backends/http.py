"""The seam between backend HTTP and the rest of the gateway: pools, errors, header values."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator

from shared.backends.http_client import HttpPool, WireError
from shared.config import ServerSpec
from shared.protocol.errors import BackendUnavailable

__all__ = ["encode_header_value", "new_pool", "translate_errors"]


def new_pool(spec: ServerSpec) -> HttpPool:
    """Keep-alive connections to one backend, carrying its configured headers."""
    assert spec.url is not None
    return HttpPool(spec.url, headers=spec.headers)


@contextlib.contextmanager
def translate_errors(server: str, url: str | None) -> Iterator[None]:
    """Turn transport failures into BackendUnavailable naming the server and URL."""
    try:
        yield
    except (WireError, OSError) as exc:
        raise BackendUnavailable(server, f"backend {server!r} is unreachable at {url}: {exc}") from exc


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
