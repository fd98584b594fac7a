"""Pick a protocol version with a backend: 2026-07-28 first, then the initialize handshake.

The probe is `server/discover`. A discover result, or a recognised 2026-07-28 error, means a
stateless server; anything else (another error, an HTTP 4xx without a JSON-RPC body, silence)
means a handshake-era server, which gets `initialize` with the newest handshake version.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from msgspec import UNSET

from shared.backends.base import BackendConnection
from shared.protocol import versions as v
from shared.protocol.errors import (
    UNSUPPORTED_PROTOCOL_VERSION,
    BackendError,
    BackendTimeout,
    GatewayError,
    error_from_wire,
)

__all__ = ["NotStateless", "negotiate"]

log = logging.getLogger("aggregator.backend")

_PROBE_TIMEOUT = 10.0  # a stdio server may still be starting (imports) when the probe arrives
_HANDSHAKE_TIMEOUT = 30.0

# What the gateway declares to handshake-era backends: it relays these to the calling client.
CAPABILITIES_DECLARED_TO_BACKENDS: dict[str, Any] = {
    "sampling": {},
    "elicitation": {"form": {}, "url": {}},
    "roots": {"listChanged": False},
}


class NotStateless(Exception):
    """The transport saw an answer that no 2026-07-28 server gives (e.g. HTTP 400 without JSON-RPC)."""


async def negotiate(conn: BackendConnection) -> None:
    """Set conn.protocol_version, capabilities, server_info and instructions."""
    for version in v.STATELESS_VERSIONS if conn.speaks_stateless else ():
        try:
            outcome = await _probe(conn, version)
        except (NotStateless, BackendTimeout) as exc:
            log.debug("backend %s is not stateless (%s); falling back to initialize", conn.server, exc)
            break
        if outcome == "retry":
            continue
        if outcome == "handshake":
            break
        return
    await _initialize(conn)


async def _probe(conn: BackendConnection, version: str) -> str:
    meta = {v.PROTOCOL_VERSION: version, v.CLIENT_INFO: v.GATEWAY_INFO, v.CLIENT_CAPABILITIES: {}}
    conn.protocol_version = version  # HTTP transports send it as MCP-Protocol-Version
    reply = await conn.send("server/discover", {"_meta": meta}, timeout=max(_PROBE_TIMEOUT, conn.spec.timeout))
    if reply.error is not UNSET:
        error = error_from_wire(reply.error, who=f"backend {conn.server!r}")
        conn.protocol_version = None
        if error.code == UNSUPPORTED_PROTOCOL_VERSION:
            supported = _supported(error)
            if not set(supported) & set(v.STATELESS_VERSIONS):
                log.info("backend %s speaks only %s; trying initialize", conn.server, supported)
                return "handshake"
            return "retry"
        return "handshake"
    result = _decode(reply.result)
    conn.capabilities = result.get("capabilities") or {}
    conn.server_info = (result.get("_meta") or {}).get(v.SERVER_INFO) or {}
    conn.instructions = result.get("instructions")
    supported = result.get("supportedVersions") or [version]
    if version not in supported:
        common = [s for s in v.STATELESS_VERSIONS if s in supported]
        if not common:
            conn.protocol_version = None
            return "handshake"
        conn.protocol_version = common[0]
    return "stateless"


async def _initialize(conn: BackendConnection) -> None:
    conn.protocol_version = None
    params = {
        "protocolVersion": v.LATEST_HANDSHAKE,
        "capabilities": CAPABILITIES_DECLARED_TO_BACKENDS,
        "clientInfo": v.GATEWAY_INFO,
    }
    reply = await conn.send("initialize", params, timeout=max(_HANDSHAKE_TIMEOUT, conn.spec.timeout))
    if reply.error is not UNSET:
        error = error_from_wire(reply.error, who=f"backend {conn.server!r}")
        stateless = [version for version in v.STATELESS_VERSIONS if version in _supported(error)]
        # The probe's answer came too late, and the server settled on 2026-07-28 meanwhile.
        late_stateless = error.code == UNSUPPORTED_PROTOCOL_VERSION and stateless
        if late_stateless and await _probe(conn, stateless[0]) == "stateless":
            return
        raise BackendError(
            conn.server,
            f"backend {conn.server!r} refused initialize: {error.message}"
            " (it speaks neither 2026-07-28 nor an initialize-based version the gateway knows)",
        )
    result = _decode(reply.result)
    version = result.get("protocolVersion")
    if version not in v.HANDSHAKE_VERSIONS:
        raise BackendError(
            conn.server,
            f"backend {conn.server!r} answered initialize with protocol version {version!r}, "
            f"which the gateway does not speak ({', '.join(v.HANDSHAKE_VERSIONS)})",
        )
    conn.protocol_version = version
    conn.capabilities = result.get("capabilities") or {}
    conn.server_info = result.get("serverInfo") or {}
    conn.instructions = result.get("instructions")
    await conn.notify("notifications/initialized")


def _decode(value: Any) -> dict[str, Any]:
    try:
        decoded = msgspec.json.decode(value)
    except (msgspec.DecodeError, TypeError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _supported(error: GatewayError) -> list[str]:
    """The versions an UnsupportedProtocolVersion error says the peer speaks."""
    data = error.data if isinstance(error.data, dict) else {}
    supported = data.get("supported")
    return [s for s in supported if isinstance(s, str)] if isinstance(supported, list) else []
