"""2026-07-28 request envelopes: `_meta` protocol fields and the mirrored HTTP headers.

Validation follows the spec's order: required `_meta` fields (-32602), then headers agreeing
with the body (-32020), then the version being one served here (-32022).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec
from msgspec import Raw

from shared.protocol import versions as v
from shared.protocol.errors import HeaderMismatch, InvalidParams, UnsupportedProtocolVersion
from shared.protocol.jsonrpc import Params, decode_params

__all__ = ["LOG_LEVELS", "NAMED_METHODS", "SUPPORTED_VERSIONS", "StatelessEnvelope", "decode_header_value", "parse"]

SUPPORTED_VERSIONS = [*v.STATELESS_VERSIONS, *v.HANDSHAKE_VERSIONS]
NAMED_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


@dataclass(slots=True)
class StatelessEnvelope:
    version: str
    meta: Params
    client_capabilities: Raw


def parse(method: str, params: Params, headers: Mapping[str, str] | None) -> StatelessEnvelope:
    """Validate a 2026-07-28 request; `headers` (lower-case names) is None off HTTP."""
    meta = decode_params(params.get("_meta")) if "_meta" in params else {}
    missing = [key for key in (v.PROTOCOL_VERSION, v.CLIENT_CAPABILITIES) if key not in meta]
    if missing:
        raise InvalidParams(
            f"Invalid params: _meta lacks {' and '.join(missing)} (required on every 2026-07-28 request; "
            "a 2025-11-25 client must send initialize first)",
            {"missing": missing},
        )
    version = msgspec.json.decode(meta[v.PROTOCOL_VERSION])
    if not isinstance(version, str):
        raise InvalidParams(f"Invalid params: _meta {v.PROTOCOL_VERSION} must be a string")
    if headers is not None:
        _check_headers(method, params, version, headers)
    if version not in v.STATELESS_VERSIONS:
        raise UnsupportedProtocolVersion(version, SUPPORTED_VERSIONS)
    level = meta.get(v.LOG_LEVEL)
    if level is not None and msgspec.json.decode(level) not in LOG_LEVELS:
        raise InvalidParams(f"Invalid params: {v.LOG_LEVEL} must be one of {', '.join(LOG_LEVELS)}")
    return StatelessEnvelope(version, meta, meta[v.CLIENT_CAPABILITIES])


def _check_headers(method: str, params: Params, version: str, headers: Mapping[str, str]) -> None:
    header_version = headers.get("mcp-protocol-version")
    if header_version is None:
        raise HeaderMismatch("Header mismatch: the MCP-Protocol-Version header is required")
    if header_version != version:
        raise HeaderMismatch(
            f"Header mismatch: MCP-Protocol-Version header {header_version!r} does not match "
            f"_meta protocolVersion {version!r}"
        )
    header_method = headers.get("mcp-method")
    if header_method is None:
        raise HeaderMismatch("Header mismatch: the Mcp-Method header is required")
    if header_method != method:
        raise HeaderMismatch(f"Header mismatch: Mcp-Method header {header_method!r} does not match body {method!r}")
    key = NAMED_METHODS.get(method)
    if key is None:
        return
    header_name = headers.get("mcp-name")
    if header_name is None:
        raise HeaderMismatch(f"Header mismatch: {method} requires the Mcp-Name header")
    body_value = msgspec.json.decode(params[key]) if key in params else None
    if decode_header_value(header_name) != body_value:
        raise HeaderMismatch(
            f"Header mismatch: Mcp-Name header value {header_name!r} does not match body {key} {body_value!r}"
        )


def decode_header_value(value: str) -> str:
    """Undo the `=?base64?...?=` sentinel encoding; plain values pass unchanged."""
    if value.isascii() and value.isprintable() and not value.startswith("=?"):
        return value
    if value.startswith("=?base64?") and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise HeaderMismatch(f"Header mismatch: {value!r} is not valid base64-encoded UTF-8") from None
    if any(not (0x20 <= ord(c) <= 0x7E or c == "\t") for c in value):
        raise HeaderMismatch("Header mismatch: a header value contains characters HTTP does not allow")
    return value
