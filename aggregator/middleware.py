"""The checks that keep web pages from driving a gateway: Host and Origin.

DNS rebinding points a page's own host name (evil.example) at 127.0.0.1. The browser then sends
`Host: evil.example` and, on same-origin GETs, no Origin at all, so HostCheck refuses host names
a loopback-bound gateway does not answer to; OriginCheck refuses cross-site requests from pages
whose origin is not allowed. Requests without Origin (non-browser clients) or without Host
(HTTP/1.0; browsers always send one) pass. The app runs RequestGuard first on every HTTP request.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

from shared.config import AggregatorSettings
from shared.protocol.errors import InvalidRequest

__all__ = ["HostCheck", "OriginCheck", "Refusal", "RequestGuard"]

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class Refusal(NamedTuple):
    status: int
    error: InvalidRequest


class RequestGuard:
    """Both checks over one pass of the headers; the app calls it before anything else (no ASGI layer)."""

    def __init__(self, settings: AggregatorSettings) -> None:
        self.hosts = HostCheck(bind_host=settings.host, allowed=settings.allowed_hosts)
        self.origins = OriginCheck(settings.allowed_origins)

    def refusal(self, headers: list[tuple[bytes, bytes]]) -> Refusal | None:
        hosts: list[bytes] = []
        origins: list[bytes] = []
        for name, value in headers:
            if name == b"host":
                hosts.append(value)
            elif name == b"origin":
                origins.append(value)
        return self.hosts.refusal(hosts) or self.origins.refusal(origins)


class HostCheck:
    """Loopback binds answer only loopback host names and aggregator.allowedHosts; others any, unless listed."""

    def __init__(self, *, bind_host: str, allowed: tuple[str, ...]) -> None:
        self.bind_host = bind_host
        names = {_allowed_name(entry) for entry in allowed}
        self.any_host = "*" in names or (not names and not _is_loopback(bind_host.strip("[]").lower()))
        self.names = {name for name in names if not name.startswith("*")}
        self.suffixes = tuple(name[1:] for name in names if name.startswith("*."))
        self._verdicts: dict[bytes, str | None] = {}

    def permits(self, host: str) -> bool:
        return self.any_host or host in self.names or host.endswith(self.suffixes) or _is_loopback(host)

    def _refused(self, raw: bytes) -> str | None:
        """The host name of a Host header this gateway refuses, else None; verdicts are remembered per value."""
        if raw in self._verdicts:
            return self._verdicts[raw]
        host = _host_name(raw.decode("latin-1"))
        verdict = None if self.permits(host) else host
        if len(self._verdicts) < 256:  # a client could send endless names; remember the first few
            self._verdicts[raw] = verdict
        return verdict

    def refusal(self, values: list[bytes]) -> Refusal | None:
        """What a request with these Host header values gets instead of an answer, if anything."""
        if len(values) > 1:
            # RFC 9112 section 3.2: a request with more than one Host header gets 400.
            return Refusal(400, InvalidRequest("The request has more than one Host header; send one"))
        host = self._refused(values[0]) if values else None
        if host is None:
            return None
        # 421 Misdirected Request: this server does not answer for that host name (403 is for Origin).
        return Refusal(
            421,
            InvalidRequest(
                f"Host {host!r} is not served by this gateway (bound to {self.bind_host}); "
                "if clients reach it under that name, add it to aggregator.allowedHosts"
            ),
        )


class OriginCheck:
    """Browser origins other than loopback must be listed in aggregator.allowedOrigins ("*" allows any)."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.allowed = {origin.rstrip("/").lower() for origin in allowed}

    def permits(self, origin: str) -> bool:
        origin = origin.rstrip("/").lower()
        if "*" in self.allowed or origin in self.allowed:
            return True
        return urlsplit(origin).hostname in _LOOPBACK

    def refusal(self, values: list[bytes]) -> Refusal | None:
        """What a request with these Origin header values gets instead of an answer, if anything."""
        if len(values) > 1:
            return Refusal(403, InvalidRequest("The request has more than one Origin header; send one"))
        origin = values[0].decode("latin-1") if values else None
        if origin is None or self.permits(origin):
            return None
        return Refusal(403, InvalidRequest(f"Origin {origin!r} is not allowed; add it to aggregator.allowedOrigins"))


def _host_name(value: str) -> str:
    """The host of a Host header value, lower-case, without port or trailing dot: `[::1]:8090` is `::1`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    host, colon, _port = value.rpartition(":")
    return (host if colon else value).rstrip(".")


def _allowed_name(entry: str) -> str:
    """An aggregator.allowedHosts entry as `_host_name` gives hosts; a bare IPv6 address stays whole."""
    entry = entry.strip().lower()
    if entry.count(":") > 1 and not entry.startswith("["):
        return entry.rstrip(".")
    return _host_name(entry)


@lru_cache(maxsize=256)
def _is_loopback(host: str) -> bool:
    """localhost, a name under .localhost, or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
