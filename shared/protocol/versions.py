"""Protocol versions the gateway speaks, and the reserved `_meta` keys of 2026-07-28."""

from __future__ import annotations

from typing import Final

__all__ = [
    "CLIENT_CAPABILITIES",
    "CLIENT_INFO",
    "GATEWAY_INFO",
    "HANDSHAKE_VERSIONS",
    "LATEST_HANDSHAKE",
    "LATEST_STATELESS",
    "LOG_LEVEL",
    "PROGRESS_TOKEN",
    "PROTOCOL_VERSION",
    "SERVER_INFO",
    "STATELESS_VERSIONS",
    "SUBSCRIPTION_ID",
    "is_stateless",
]

GATEWAY_INFO: Final = {"name": "mcp-aggregator", "version": "0.1.0"}
"""How the gateway names itself to clients and to backends."""

STATELESS_VERSIONS: Final = ("2026-07-28",)
"""Stateless versions: every request carries its version and capabilities in `_meta`."""
HANDSHAKE_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
"""Versions negotiated by `initialize`, newest first."""
LATEST_STATELESS: Final = STATELESS_VERSIONS[0]
LATEST_HANDSHAKE: Final = HANDSHAKE_VERSIONS[0]

PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
LOG_LEVEL: Final = "io.modelcontextprotocol/logLevel"
SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"
SUBSCRIPTION_ID: Final = "io.modelcontextprotocol/subscriptionId"
PROGRESS_TOKEN: Final = "progressToken"

RESERVED_META_PREFIX: Final = "io.modelcontextprotocol/"


def is_stateless(version: str | None) -> bool:
    return version in STATELESS_VERSIONS
