"""One call in flight on a backend connection: where its messages go, and the envelope it carries.

The connection (base.py) only multiplexes; what a call needs on the way out (`stamp_meta`: the
`_meta` its backend's protocol version wants) and on the way back (`CallSink`: progress, log
messages and the backend's questions for the calling client) is here.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from msgspec import Raw

from shared.protocol import versions as v
from shared.protocol.jsonrpc import Message, Params, encode, raw

__all__ = ["CallSink", "PendingCall", "stamp_meta"]

_GATEWAY_INFO_RAW = raw(v.GATEWAY_INFO)
_EMPTY_CAPS = raw({})


class CallSink(Protocol):
    """Where a backend's messages about one in-flight call go (the calling client)."""

    wants_progress: bool

    async def notify(self, method: str, params: Params) -> None:
        """Deliver a request-scoped notification (progress, log message) to the caller."""

    async def ask(self, method: str, params: Raw) -> Raw:
        """Put a backend's request (sampling, elicitation, roots) to the caller; return its result."""


class PendingCall:
    """A request sent and not yet answered: the future its response resolves, and its sink."""

    __slots__ = ("future", "sink")

    def __init__(self, sink: CallSink | None) -> None:
        self.future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.sink = sink


def stamp_meta(
    protocol_version: str | None, client_meta: Params | None, token: str | None, client_capabilities: Raw | None
) -> Raw:
    """The `_meta` of a request to a backend speaking `protocol_version`, from the client's `_meta`.

    The client's own members pass on; its protocol fields are replaced by the gateway's (a
    2026-07-28 backend gets version, client info and the calling client's capabilities); the
    progress token is the gateway's own, mapped back by the connection.
    """
    stateless = v.is_stateless(protocol_version)
    meta: dict[str, Raw] = {}
    if client_meta:
        for key, value in client_meta.items():
            if key != v.PROGRESS_TOKEN and not key.startswith(v.RESERVED_META_PREFIX):
                meta[key] = value
        if stateless and v.LOG_LEVEL in client_meta:
            meta[v.LOG_LEVEL] = client_meta[v.LOG_LEVEL]
    if token is not None:
        meta[v.PROGRESS_TOKEN] = raw(token)
    if stateless:
        meta[v.PROTOCOL_VERSION] = raw(protocol_version)
        meta[v.CLIENT_INFO] = _GATEWAY_INFO_RAW
        meta[v.CLIENT_CAPABILITIES] = client_capabilities or _EMPTY_CAPS
    return Raw(encode(meta))
