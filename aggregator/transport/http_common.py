"""Small ASGI helpers shared by the HTTP transports: headers, bodies, JSON and SSE replies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from typing import Any

from shared.protocol.errors import GatewayError, InvalidRequest, http_status
from shared.protocol.jsonrpc import RequestId, error_response

__all__ = [
    "ASGIApp",
    "BodyTooLarge",
    "Receive",
    "Scope",
    "Send",
    "accepts",
    "header_map",
    "read_body",
    "send_accepted",
    "send_bytes",
    "send_error",
    "sse_event",
    "start_sse",
    "wait_disconnect",
]

Scope = dict[str, Any]
Receive = Any
Send = Any
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = b"application/json"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client disconnected while its request body was arriving."""


_NAMES: dict[bytes, str] = {}  # header names seen, decoded once and shared by every request
_NONE_REPEATED: frozenset[str] = frozenset()


def header_map(scope: Scope) -> tuple[dict[str, str], AbstractSet[str]]:
    """Headers by lower-case name (first value wins) and the names that appeared more than once."""
    headers: dict[str, str] = {}
    repeated: AbstractSet[str] = _NONE_REPEATED
    for raw_name, raw_value in scope["headers"]:
        name = _NAMES.get(raw_name)
        if name is None:
            name = raw_name.decode("latin-1").lower()
            if len(_NAMES) < 512:  # clients choose names: remember only the first few hundred
                _NAMES[raw_name] = name
        if name in headers:
            repeated = {*repeated, name}
            continue
        headers[name] = raw_value.decode("latin-1")
    return headers, repeated


async def read_body(receive: Receive, limit: int, declared: str | None) -> bytes:
    """The whole request body, or BodyTooLarge as soon as it passes `limit` bytes."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = JSON,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    response_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        response_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})


async def send_accepted(send: Send) -> None:
    """202 with no body: a notification or a response was received."""
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def accepts(accept: str, media_type: str) -> bool:
    """Whether an Accept header value admits `media_type` (exactly, or through `*/*`)."""
    return media_type in accept or "*/*" in accept


async def send_error(
    send: Send,
    exc: GatewayError,
    *,
    request_id: RequestId | None = None,
    status: int | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A JSON-RPC error response; the HTTP status follows the error code unless given."""
    code_status = http_status(exc.code, 400 if isinstance(exc, InvalidRequest) else 200)
    await send_bytes(send, status or code_status, error_response(request_id, exc), headers=headers)


async def start_sse(send: Send, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + (extra or [])})


def sse_event(data: bytes) -> bytes:
    return b"event: message\ndata: " + data + b"\n\n"


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client disconnects (the request body must have been read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
