"""JSON-RPC error codes and the gateway's exception tree.

Handlers raise; they never build error dicts. The transport turns any GatewayError into a
wire error with `error_body`, and picks the HTTP status with `http_status`.

    GatewayError                 code, message, data
    ├── ParseError               -32700  body is not JSON
    ├── InvalidRequest           -32600  not a JSON-RPC request
    ├── MethodNotFound           -32601
    ├── InvalidParams            -32602
    │   ├── UnknownTool              no such tool (or prompt, or resource)
    │   ├── ToolBlocked              denylisted; says how to allow it
    │   └── InvalidCursor
    ├── InternalError            -32603
    │   └── TooManyStreams           this replica holds aggregator.maxStreams streams already
    ├── BackendError             -32603  a backend failed; names the server
    │   ├── BackendUnavailable       not connected (yet), or died mid-call
    │   ├── BackendTimeout           no answer within the server's timeout
    │   ├── BackendBusy              maxInFlight calls running and maxQueued waiting
    │   └── BackendAuthRequired      the backend wants a user's token (HTTP 401)
    ├── HeaderMismatch           -32020  HTTP headers disagree with the body
    ├── MissingClientCapability  -32021
    └── UnsupportedProtocolVersion -32022
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "HEADER_MISMATCH",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "MISSING_CLIENT_CAPABILITY",
    "PARSE_ERROR",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "BackendAuthRequired",
    "BackendBusy",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "GatewayError",
    "HeaderMismatch",
    "InternalError",
    "InvalidCursor",
    "InvalidParams",
    "InvalidRequest",
    "MethodNotFound",
    "MissingClientCapability",
    "ParseError",
    "TooManyStreams",
    "ToolBlocked",
    "UnknownTool",
    "UnsupportedProtocolVersion",
    "error_body",
    "error_from_wire",
    "http_status",
]

# JSON-RPC 2.0 standard band.
PARSE_ERROR = -32700
"""The body is not valid JSON."""
INVALID_REQUEST = -32600
"""The JSON is not a valid JSON-RPC request."""
METHOD_NOT_FOUND = -32601
"""The method does not exist or is not available in this protocol version."""
INVALID_PARAMS = -32602
"""The params are invalid: unknown tool, bad arguments, bad cursor."""
INTERNAL_ERROR = -32603
"""The gateway or a backend failed while handling a valid request."""

# MCP specification band (-32020..-32099), protocol 2026-07-28.
HEADER_MISMATCH = -32020
"""HTTP headers are missing or disagree with the JSON-RPC body."""
MISSING_CLIENT_CAPABILITY = -32021
"""Serving the request needs a client capability the request did not declare."""
UNSUPPORTED_PROTOCOL_VERSION = -32022
"""The requested protocol version is not served here."""

_HTTP_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}


class GatewayError(Exception):
    """An error that becomes a JSON-RPC error response."""

    code: int = INTERNAL_ERROR

    def __init__(self, message: str, data: Any = None, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        if code is not None:
            self.code = code


class ParseError(GatewayError):
    code = PARSE_ERROR


class InvalidRequest(GatewayError):
    code = INVALID_REQUEST


class MethodNotFound(GatewayError):
    code = METHOD_NOT_FOUND


class InvalidParams(GatewayError):
    code = INVALID_PARAMS


class UnknownTool(InvalidParams):
    pass


class ToolBlocked(InvalidParams):
    pass


class InvalidCursor(InvalidParams):
    pass


class InternalError(GatewayError):
    code = INTERNAL_ERROR


class TooManyStreams(InternalError):
    """A new client stream would pass the replica's cap; open ones are never dropped for it."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Too many open streams: this replica holds {limit} already (aggregator.maxStreams); "
            "retry shortly, close streams you no longer need, or raise the limit"
        )


class BackendError(GatewayError):
    code = INTERNAL_ERROR

    def __init__(self, server: str, message: str, data: Any = None) -> None:
        super().__init__(message, data)
        self.server = server


class BackendUnavailable(BackendError):
    pass


class BackendTimeout(BackendError):
    pass


class BackendBusy(BackendError):
    """The backend's call slots and its wait queue are full, or no slot came free in time."""


class BackendAuthRequired(BackendError):
    """The backend answered 401: it serves only requests that carry a user's token."""

    def __init__(self, server: str, message: str, *, challenge: str = "") -> None:
        super().__init__(server, message)
        self.challenge = challenge
        """Its WWW-Authenticate value (which authorization server, which scope, where its metadata is)."""


class HeaderMismatch(GatewayError):
    code = HEADER_MISMATCH


class MissingClientCapability(GatewayError):
    code = MISSING_CLIENT_CAPABILITY


class UnsupportedProtocolVersion(GatewayError):
    code = UNSUPPORTED_PROTOCOL_VERSION

    def __init__(self, requested: Any, supported: list[str]) -> None:
        super().__init__(
            f"Unsupported protocol version {requested!r}; this gateway serves {', '.join(supported)}",
            {"supported": supported, "requested": requested},
        )


class _ErrorObject(msgspec.Struct, omit_defaults=True):
    code: int
    message: str
    data: Any = None


def error_body(exc: GatewayError) -> _ErrorObject:
    """The `error` member of a JSON-RPC error response."""
    return _ErrorObject(exc.code, exc.message, exc.data)


def http_status(code: int, default: int = 200) -> int:
    """HTTP status for a JSON-RPC error code on the 2026-07-28 transport."""
    return _HTTP_STATUS.get(code, default)


def error_from_wire(error: bytes | None, *, who: str = "the peer") -> GatewayError:
    """The exception for a received JSON-RPC `error` member, with its code, message and data kept.

    A malformed member (not an object, no integer code) still becomes an error, naming `who` sent it.
    """
    try:
        decoded = msgspec.json.decode(error) if error is not None else None
    except msgspec.DecodeError:
        decoded = None
    if not isinstance(decoded, dict):
        return InternalError(f"{who} sent a malformed JSON-RPC error")
    code = decoded.get("code")
    message = decoded.get("message")
    return GatewayError(
        message if isinstance(message, str) else f"{who} sent an error without a message",
        decoded.get("data"),
        code=code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR,
    )
