"""2026-07-28 requests: `_meta` protocol fields, the mirrored HTTP headers, the listen filter.

Validation follows the spec's order: required `_meta` fields (-32602), then headers agreeing
with the body (-32020), then the version being one served here (-32022).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from msgspec import Raw

from shared.protocol import versions as v
from shared.protocol.errors import HeaderMismatch, InvalidParams, UnsupportedProtocolVersion
from shared.protocol.jsonrpc import Params, decode_params, param_str
from shared.protocol.vocabulary import LIST_KINDS, LOG_LEVELS, NAMED_METHODS, decode_header_value

__all__ = ["SUPPORTED_VERSIONS", "ListenFilter", "StatelessEnvelope", "parse", "parse_listen_filter"]

SUPPORTED_VERSIONS = [*v.STATELESS_VERSIONS, *v.HANDSHAKE_VERSIONS]
_LIST_FLAGS = {kind.listen_flag: kind.key for kind in LIST_KINDS if kind.key != "resourceTemplates"}
_object_decoder = msgspec.json.Decoder(dict[str, Any])


@dataclass(slots=True)
class StatelessEnvelope:
    version: str
    meta: Params
    client_capabilities: Raw


def parse(method: str, params: Params, headers: Mapping[str, str] | None) -> StatelessEnvelope:
    """Validate a 2026-07-28 request; `headers` (lower-case names) is None off HTTP."""
    meta = decode_params(params["_meta"]) if "_meta" in params else {}
    missing = [key for key in (v.PROTOCOL_VERSION, v.CLIENT_CAPABILITIES) if key not in meta]
    if missing:
        raise InvalidParams(
            f"Invalid params: _meta lacks {' and '.join(missing)} (required on every 2026-07-28 request; "
            "a 2025-11-25 client must send initialize first)",
            {"missing": missing},
        )
    version = param_str(meta, v.PROTOCOL_VERSION)
    assert version is not None
    if headers is not None:
        _check_headers(method, params, version, headers)
    if version not in v.STATELESS_VERSIONS:
        raise UnsupportedProtocolVersion(version, SUPPORTED_VERSIONS)
    level = param_str(meta, v.LOG_LEVEL, required=False)
    if level is not None and level not in LOG_LEVELS:
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
    body_value = param_str(params, key, required=False)
    if decode_header_value(header_name) != body_value:
        raise HeaderMismatch(
            f"Header mismatch: Mcp-Name header value {header_name!r} does not match body {key} {body_value!r}"
        )


@dataclass(slots=True)
class ListenFilter:
    """What a `subscriptions/listen` request asked to hear about."""

    kinds: frozenset[str] = frozenset()
    uris: set[str] = field(default_factory=set)
    granted: dict[str, Any] = field(default_factory=dict)
    """The filter as acknowledged: the members the gateway honours, as the client sent them."""


def parse_listen_filter(params: Params) -> ListenFilter:
    """The filter of a `subscriptions/listen` request, or InvalidParams naming what is wrong."""
    if "notifications" not in params:
        return ListenFilter()
    try:
        wanted = _object_decoder.decode(params["notifications"])
    except msgspec.ValidationError as exc:
        raise InvalidParams(f"Invalid params: notifications must be an object ({exc})") from None
    uris = wanted.get("resourceSubscriptions")
    if uris is not None and not (isinstance(uris, list) and all(isinstance(u, str) for u in uris)):
        raise InvalidParams("Invalid params: resourceSubscriptions must be a list of URIs")
    granted = {key: value for key, value in wanted.items() if (key in _LIST_FLAGS or key == "resourceSubscriptions")}
    granted = {key: value for key, value in granted.items() if value}
    return ListenFilter(
        kinds=_interned(frozenset(kind for flag, kind in _LIST_FLAGS.items() if granted.get(flag))),
        uris=set(uris or ()),
        granted=granted,
    )


_KIND_SETS: dict[frozenset[str], frozenset[str]] = {}


def _interned(kinds: frozenset[str]) -> frozenset[str]:
    """One object per combination of list kinds (at most eight), shared by every listen stream."""
    return _KIND_SETS.setdefault(kinds, kinds)
